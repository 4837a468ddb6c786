//! Namespace policies are configurable from the config file (`[policies.<namespace>]`).

mod common;

use common::*;
use serde_json::json;

#[test]
fn config_file_overrides_namespace_policies() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("chat.toml");
    std::fs::write(
        &cfg,
        "[policies.ticker]\nanonymous_read = false\n\n[policies.room]\nhistory_on_join = 3\n",
    )
    .unwrap();
    let s = TestServer::start(
        Opts::new()
            .env("CHAT_CONFIG", cfg.to_str().unwrap())
            .env("CHAT_ALLOW_ANONYMOUS", "true"),
    );

    // ticker: no longer readable anonymously; sports: still is.
    let mut anon = WsClient::connect(&s.ws_url(), &[]).expect("anonymous upgrade");
    anon.expect_welcome(secs(8.0));
    assert_eq!(anon.err(json!({"op":"join","channel":"ticker:ACME"})), "forbidden");
    anon.ok(json!({"op":"join","channel":"sports:final"}));

    // room: joins return the configured 3 newest messages by default.
    let alice = s.user("alice");
    let mut a = s.ws_user(&alice);
    for i in 0..5 {
        a.ok(json!({"op":"publish","channel":"room:cfg","data":{"type":"text","text":format!("m{i}")}}));
    }
    let j = a.ok(json!({"op":"join","channel":"room:cfg"}));
    let seqs: Vec<i64> = j["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![3, 4, 5]);
    // an explicit limit still wins
    let j = a.ok(json!({"op":"join","channel":"room:cfg","limit":5}));
    assert_eq!(j["messages"].as_array().unwrap().len(), 5);
}

#[test]
fn bad_policy_config_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("chat.toml");
    std::fs::write(&cfg, "[policies.room]\nconflate = true\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatserver"))
        .env("CHAT_CONFIG", &cfg)
        .env("CHAT_BIND", "127.0.0.1:0")
        .env("CHAT_DATA_DIR", dir.path())
        .env("CHAT_DEMO", "false")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot be conflated"), "{err}");
}
