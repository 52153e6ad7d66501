//! The REST API driven by schemathesis (from the Python Package Index) from the API's own
//! OpenAPI document, as served at `/api/v1/openapi.json`: the real daemon in the netns lab, the bearer token from its state
//! directory, generated and mutated requests on every route, bounded in examples and time.
//! Any 5xx, or an answer whose status, content type, headers or body the document does not
//! describe, fails the test. Needs root, and schemathesis: `cargo xtask test` installs it in a
//! venv under `target/` and names it in `PORTFWD_SCHEMATHESIS`.

use std::{fs, path::PathBuf, process::Stdio, time::Instant};

use portfwd_tests::{Daemon, Lab};

/// The API inside the router namespace.
const OPENAPI: &str = "http://127.0.0.1:9780/api/v1/openapi.json";
/// What must hold of every answer (schemathesis's names): no server error, and status, content
/// type, headers and body as the document says; the token is checked (`ignored_auth`), and
/// requests the document rules out are refused (`negative_data_rejection`).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance,ignored_auth,\
                      negative_data_rejection";
/// Examples per operation and phase, and a bound on the whole run.
const MAX_EXAMPLES: &str = "25";
const MAX_SECONDS: &str = "150";

fn schemathesis() -> PathBuf {
    std::env::var_os("PORTFWD_SCHEMATHESIS").map_or_else(
        || {
            panic!(
                "PORTFWD_SCHEMATHESIS is not set: `cargo xtask test` installs schemathesis and sets it"
            )
        },
        PathBuf::from,
    )
}

#[test]
fn the_api_answers_as_its_openapi_document_says() {
    let schemathesis = schemathesis();
    let lab = Lab::fresh("st");
    // A static share, so that the share routes have something of the owner's to find.
    let daemon = Daemon::in_lab(&lab, "skb", &["--share", "tcp:8080=10.77.0.10:80"]);
    let state = daemon.state_dir().expect("own state dir");
    let token = fs::read_to_string(state.join("api-token")).expect("token");
    let report = state.join("schemathesis");
    let started = Instant::now();
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemathesis.toml");
    let out = lab
        .router
        .command(schemathesis.to_str().expect("utf-8 path"))
        .arg("--config-file")
        .arg(&config)
        .args(["run", OPENAPI, "--checks", CHECKS])
        .args([
            "--header",
            &format!("Authorization: Bearer {}", token.trim()),
        ])
        .args(["--max-examples", MAX_EXAMPLES, "--max-time", MAX_SECONDS])
        .args(["--workers", "1", "--seed", "13", "--request-timeout", "70"])
        .args(["--report", "junit", "--report-dir"])
        .arg(&report)
        // Its caches go with the state directory, not into the repository.
        .current_dir(state)
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}\n({:?})", started.elapsed());
    assert!(
        out.status.success(),
        "schemathesis found answers the OpenAPI document does not allow ({}):\n{stdout}\n{stderr}\ndaemon: {}",
        out.status,
        daemon.stderr()
    );
    assert!(daemon_alive(daemon), "the daemon died under schemathesis");
}

fn daemon_alive(mut daemon: Daemon) -> bool {
    daemon.is_running()
}
