//! `cargo xtask run`'s demo: every next step it prints works as printed (the `portfwd-lab
//! demo` driver, which xtask runs after building).

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

#[test]
fn the_demo_next_steps_work_as_printed() {
    assert!(portfwd_tests::is_root(), "the demo needs root");
    let mut demo = Command::new(env!("CARGO_BIN_EXE_portfwd-lab"))
        .arg("demo")
        .env("PORTFWD_BIN", portfwd_tests::portfwd_bin())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("portfwd-lab demo");
    let stdout = demo.stdout.take().expect("stdout");
    let (lines_tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    // The commands: the indented lines after "Try, from another terminal:".
    let deadline = Instant::now() + Duration::from_mins(1);
    let mut steps = Vec::new();
    let mut in_steps = false;
    while Instant::now() < deadline {
        let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if line.starts_with("Try, from another terminal:") {
            in_steps = true;
        } else if in_steps && line.starts_with("  ") {
            steps.push(line.trim().to_owned());
        } else if in_steps {
            break;
        }
    }
    assert!(steps.len() >= 6, "the demo printed its steps: {steps:?}");
    for step in &steps {
        // `events --follow` never ends by itself: it is read for a moment.
        let follow = step.contains("--follow");
        let command = if follow {
            format!("timeout 2 {step}")
        } else {
            step.clone()
        };
        let out = Command::new("sh")
            .args(["-c", &command])
            .output()
            .expect("sh");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        // timeout's 124 is how --follow ends; it must have printed the events so far.
        let worked = out.status.success() || (follow && out.status.code() == Some(124));
        assert!(
            worked && !text.trim().is_empty(),
            "`{step}` failed:\n{text}"
        );
        if step.contains("curl http://198.51.100.1:8081/") {
            assert!(text.contains("second server"), "{text}");
        }
    }
    let pid = i32::try_from(demo.id()).expect("pid");
    // SAFETY: kill(2) on our own child: the demo takes its lab down on SIGINT.
    unsafe { libc::kill(pid, libc::SIGINT) };
    assert!(demo.wait().expect("wait").success());
}
