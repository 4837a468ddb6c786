//! Runs the JS client's unit tests and the browser tests (`tests/browser/run.sh`:
//! node's test runner, Debian's Chromium driven by playwright-core) against this
//! build's server binary.
//!
//! They need `node` and Chromium. Where either is missing the test says so and
//! passes, unless `E2E_REQUIRED=1` (set by `.ci/run`, which installs both), where it
//! fails. Screenshots go to `target/screenshots` (set `UPDATE_SCREENSHOTS=1` to
//! refresh the ones in `docs/screenshots` shown by the README).

mod common;

use std::{path::Path, process::Command};

#[test]
fn js_client_and_browser_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let required = std::env::var("E2E_REQUIRED").is_ok_and(|v| v == "1");
    let chromium = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let have_node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let have_chromium = Path::new(&chromium).exists();
    if !(required || (have_node && have_chromium)) {
        common::skip(
            "js_client_and_browser_tests",
            &format!(
                "node {}, chromium {}; install both, or set E2E_REQUIRED=1 to make this fail",
                if have_node { "found" } else { "missing" },
                if have_chromium { "found" } else { "missing" },
            ),
        );
        return;
    }
    let shots = if std::env::var("UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        root.join("docs/screenshots")
    } else {
        root.join("target/screenshots")
    };
    let status = Command::new("bash")
        .arg(root.join("tests/browser/run.sh"))
        .current_dir(root)
        // Each browser test starts its own server on a fresh SQLite data dir.
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env("CHAT_SERVER_BIN", env!("CARGO_BIN_EXE_chatserver"))
        .env("E2E_REQUIRED", "1")
        .env("SCREENSHOT_DIR", shots)
        .status()
        .expect("run tests/browser/run.sh");
    assert!(
        status.success(),
        "JS client or browser tests failed (see the output above)"
    );
}
