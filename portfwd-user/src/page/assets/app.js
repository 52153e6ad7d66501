// portfwd's page, in place: forms post without a reload, and the page is redrawn when the
// event log moves (a long poll on /live) and every 10 s for the counters. Without this
// script every form still posts and every page still loads in full.
"use strict";
(() => {
  document.documentElement.classList.add("js");
  let dirty = false;
  let busy = false;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const main = () => document.getElementById("main");

  function swap(html) {
    const doc = new DOMParser().parseFromString(html, "text/html");
    const fresh = doc.getElementById("main");
    if (!fresh || !main()) return false;
    main().replaceWith(fresh);
    document.title = doc.title;
    const invalid = fresh.querySelector("[aria-invalid=true]");
    if (invalid) invalid.focus();
    return true;
  }

  document.addEventListener("input", (e) => { if (e.target.form) dirty = true; });

  document.addEventListener("submit", async (e) => {
    const form = e.target;
    // Logging in and out load a new page anyway.
    if (form.method.toLowerCase() !== "post" || form.classList.contains("whole-page")) return;
    e.preventDefault();
    busy = true;
    try {
      const body = new URLSearchParams(new FormData(form, e.submitter));
      const r = await fetch(form.action, { method: "POST", body, credentials: "same-origin" });
      const path = new URL(r.url).pathname;
      if (path === "/login" || !swap(await r.text())) { location.assign(r.url); return; }
      if (r.redirected) history.replaceState(null, "", r.url);
      // A refused form stays as it is until it is sent again.
      dirty = !r.ok;
    } catch (err) {
      form.submit();
    } finally {
      busy = false;
    }
  });

  async function refresh() {
    if (dirty || busy || document.activeElement?.form) return;
    try {
      const r = await fetch(location.href, { credentials: "same-origin" });
      if (r.ok && !r.redirected && !dirty && !busy) swap(await r.text());
    } catch (err) { /* the next round tries again */ }
  }

  async function follow() {
    let after = Number(main()?.dataset.lastEvent || 0);
    for (;;) {
      try {
        const r = await fetch("/live?after=" + after, { credentials: "same-origin" });
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
