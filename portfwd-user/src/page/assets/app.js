// portfwd's page, in place: forms post without a reload, and the page is redrawn when the
// event log moves (a long poll on /live) and every 10 s for the counters. Without this
// script every form still posts and every page still loads in full.
"use strict";
(() => {
  document.documentElement.classList.add("js");
  // The page's own requests do not keep a session alive; the owner's do.
  const background = { credentials: "same-origin", headers: { "X-Portfwd-Background": "1" } };
  let dirty = false;
  let busy = false;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const main = () => document.getElementById("main");
  const announce = (text) => {
    const region = document.getElementById("announce");
    if (region) region.textContent = text;
  };

  // Puts the new page's main in place; `focus` after the owner's own action.
  function swap(html, focus) {
    const doc = new DOMParser().parseFromString(html, "text/html");
    const fresh = doc.getElementById("main");
    if (!fresh || !main()) return false;
    main().replaceWith(fresh);
    document.title = doc.title;
    if (!focus) return true;
    const invalid = fresh.querySelector("[aria-invalid=true]");
    const heading = fresh.querySelector("h1");
    if (invalid) invalid.focus();
    else if (heading) heading.focus();
    const notice = fresh.querySelector(".notice, .error");
    if (notice) announce(notice.textContent);
    return true;
  }

  document.addEventListener("input", (e) => { if (e.target.form) dirty = true; });

  document.addEventListener("submit", async (e) => {
    const form = e.target;
    // Logging in and out load a new page anyway.
    if (form.method.toLowerCase() !== "post" || form.classList.contains("whole-page")) return;
    e.preventDefault();
    if (busy) return;
    busy = true;
    const button = e.submitter;
    if (button) button.disabled = true;
    const body = new URLSearchParams(new FormData(form));
    if (button && button.name) body.append(button.name, button.value);
    let r;
    try {
      r = await fetch(form.action, { method: "POST", body, credentials: "same-origin" });
    } catch (err) {
      // Not sent: send it the plain way, with the button pressed.
      if (button && button.name) {
        const pressed = document.createElement("input");
        pressed.type = "hidden";
        pressed.name = button.name;
        pressed.value = button.value;
        form.append(pressed);
      }
      form.submit();
      return;
    }
    try {
      const html = await r.text();
      const doc = new DOMParser().parseFromString(html, "text/html");
      if (doc.getElementById("main")?.dataset.lastEvent !== undefined) {
        // A page of the session: done, or the form back with the reason at its field and
        // what was typed (it stays until sent again).
        swap(html, true);
        if (r.redirected) history.replaceState(null, "", r.url);
        dirty = !r.ok;
      } else {
        // Anything else (the session ended, the form was refused): keep what was typed.
        const reason = doc.querySelector(".error")?.textContent || r.statusText;
        announce(reason);
        let alert = form.querySelector(".error.sent");
        if (!alert) {
          alert = document.createElement("p");
          alert.className = "error sent";
          alert.setAttribute("role", "alert");
          form.prepend(alert);
        }
        alert.textContent = reason + " ";
        const login = document.createElement("a");
        login.href = "/login";
        login.textContent = "Log in again";
        if (r.status === 403) alert.append(login);
      }
    } finally {
      busy = false;
      if (button) button.disabled = false;
    }
  });

  // Redraws the page unless the owner is on a control in it (typing, or about to press);
  // the heading keeps its focus across a redraw.
  async function refresh() {
    const focus = document.activeElement;
    const onHeading = focus?.tagName === "H1";
    if (dirty || busy || (focus && !onHeading && focus !== document.body && main()?.contains(focus))) return;
    try {
      const r = await fetch(location.href, background);
      if (r.redirected && new URL(r.url).pathname === "/login") { location.assign("/login"); return; }
      if (r.ok && !dirty && !busy && swap(await r.text(), false) && onHeading) {
        main().querySelector("h1")?.focus({ preventScroll: true });
      }
    } catch (err) { /* the next round tries again */ }
  }

  async function follow() {
    let after = Number(main()?.dataset.lastEvent || 0);
    for (;;) {
      try {
        const r = await fetch("/live?after=" + after, background);
        if (r.redirected) { location.assign("/login"); return; }
        if (!r.ok) { await sleep(5000); continue; }
        const next = (await r.json()).last_id;
        if (next > after) { after = next; await refresh(); }
      } catch (err) {
        await sleep(5000);
      }
    }
  }

  if (main()?.dataset.lastEvent !== undefined) {
    setInterval(refresh, 10000);
    follow();
  }
})();
