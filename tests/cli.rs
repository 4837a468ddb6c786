//! The command line on a temporary data directory: every subcommand's `--help`,
//! accounts, minted tokens, `config check`, `migrate`, `healthcheck`, `backup` of a
//! running server, and password, role and ban changes reaching a running server.
mod common;

use std::{
    io::Write,
    path::Path,
    process::{Command, Output, Stdio},
};

use common::*;
use serde_json::json;

/// Runs `chatserver <args>` on `dir` (and `env`), with `stdin` as its input.
fn cli(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatserver"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CHAT_") || k == "DATABASE_URL" || k == "REDIS_URL" {
            cmd.env_remove(&k);
        }
    }
    cmd.args(args)
        .env("CHAT_DATA_DIR", dir)
        .env("CHAT_JWT_SECRET", TEST_SECRET)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run chatserver");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(out: Output, what: &str) -> String {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    stdout.into_owned()
}

#[test]
fn every_subcommand_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        "",
        "serve",
        "migrate",
        "user",
        "user add",
        "user passwd",
        "user role",
        "user ban",
        "user unban",
        "user list",
        "token",
        "token mint",
        "config",
        "config check",
        "healthcheck",
        "backup",
    ] {
        let mut a: Vec<&str> = args.split_whitespace().collect();
        a.push("--help");
        let out = ok(cli(dir.path(), &a, &[], ""), &format!("{args} --help"));
        assert!(out.contains("Usage: chatserver"), "{args} --help: {out}");
    }
}

#[test]
fn accounts_and_a_minted_token_work_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(
        cli(dir.path(), &["user", "add", "alice"], &[], "alice-password\n"),
        "user add",
    );
    assert!(out.contains("created user alice"), "{out}");
    let out = cli(dir.path(), &["user", "add", "bob", "--password", "short"], &[], "");
    assert!(!out.status.success(), "a short password is refused");
    let out = cli(
        dir.path(),
        &["user", "add", "alice", "--password", "another-password"],
        &[],
        "",
    );
    assert!(!out.status.success(), "a taken name is refused");
    let list = ok(cli(dir.path(), &["user", "list"], &[], ""), "user list");
    assert!(list.contains("alice") && list.contains("user"), "{list}");
    ok(
        cli(dir.path(), &["user", "role", "alice", "admin"], &[], ""),
        "user role",
    );
    assert!(ok(cli(dir.path(), &["user", "list"], &[], ""), "list").contains("admin"));
    let out = cli(dir.path(), &["user", "role", "alice", "superuser"], &[], "");
    assert!(!out.status.success(), "an unknown role is refused");

    let token = ok(
        cli(
            dir.path(),
            &[
                "token",
                "mint",
                "--sub",
                "42",
                "--name",
                "svc",
                "--role",
                "publisher",
                "--ttl",
                "10m",
            ],
            &[],
            "",
        ),
        "token mint",
    );
    let s = TestServer::start(Opts::new().data_dir(dir.path()));
    let (st, me) = s.get("/api/me", Some(token.trim()));
    assert_eq!(st, 200, "{me}");
    assert_eq!(
        (me["user"]["id"].as_str(), me["user"]["role"].as_str()),
        (Some("42"), Some("publisher"))
    );
    let mut c = s.ws(token.trim());
    c.ok(json!({"op":"publish","channel":"ticker:ACME","data":{"price":1.5}}));
    let (st, body) = s.post("/api/login", None, json!({"name":"alice","password":"alice-password"}));
    assert_eq!((st, body["user"]["role"].as_str()), (200, Some("admin")), "{body}");
}

#[test]
fn config_check_prints_sources_hides_secrets_and_fails_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(
        cli(dir.path(), &["config", "check"], &[("CHAT_HEARTBEAT_S", "7")], ""),
        "config check",
    );
    assert!(out.contains("heartbeat_s = 7.0  # env CHAT_HEARTBEAT_S"), "{out}");
    assert!(out.contains("jwt_secret = \"(hidden"), "{out}");
    assert!(!out.contains(TEST_SECRET), "the secret was printed: {out}");
    let json_out = ok(cli(dir.path(), &["config", "check", "--json"], &[], ""), "--json");
    let v: serde_json::Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(v["bind"]["source"], "default", "{v}");
    let env = [("CHAT_LOG_FORMAT", "json"), ("CHAT_METRICS_BIND", "127.0.0.1:9100")];
    let out = ok(cli(dir.path(), &["config", "check"], &env, ""), "config check");
    assert!(out.contains("log_format = \"json\"  # env CHAT_LOG_FORMAT"), "{out}");
    assert!(
        out.contains("metrics_bind = \"127.0.0.1:9100\"  # env CHAT_METRICS_BIND"),
        "{out}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "heartbeat_s = 5\nno_such_setting = 1\n").unwrap();
    let out = cli(
        dir.path(),
        &["config", "check"],
        &[("CHAT_CONFIG", bad.to_str().unwrap())],
        "",
    );
    assert!(!out.status.success(), "an unknown key must fail");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no_such_setting"),
        "{out:?}"
    );
    let out = cli(dir.path(), &["config", "check"], &[("CHAT_JWT_SECRET", "short")], "");
    assert!(!out.status.success(), "a short secret must fail");
}

#[test]
fn migrate_lists_applied_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(cli(dir.path(), &["migrate"], &[], ""), "migrate");
    assert!(
        out.contains("ran ") && out.contains("[x] 2026-12-06-000002_moderation"),
        "{out}"
    );
    let out = ok(cli(dir.path(), &["migrate", "--status"], &[], ""), "migrate --status");
    assert!(!out.contains("[ ]") && !out.contains("ran "), "{out}");
}

#[test]
fn healthcheck_asks_the_running_server() {
    let s = TestServer::start_default();
    let dir = tempfile::tempdir().unwrap();
    let out = ok(
        cli(dir.path(), &["healthcheck"], &[("CHAT_BIND", &s.addr)], ""),
        "healthcheck",
    );
    assert!(out.contains("healthy"));
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let out = cli(dir.path(), &["healthcheck"], &[("CHAT_BIND", &free)], "");
    assert!(!out.status.success(), "no server there");
}

#[test]
fn ban_closes_connections_and_refuses_login_and_connection_until_unbanned() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(Opts::new().data_dir(dir.path()));
    let (token, _) = s.register("mallory", PASSWORD);
    let mut c = s.ws(&token);
    ok(
        cli(dir.path(), &["user", "ban", "mallory", "--reason", "spam"], &[], ""),
        "ban",
    );
    assert_eq!(c.expect_close(secs(6.0)), Some(4003), "banned user's connection");
    let login = || s.post("/api/login", None, json!({"name":"mallory","password": PASSWORD}));
    assert_eq!(login().0, 403, "a banned user logs in");
    let auth = format!("Bearer {token}");
    match WsClient::connect(&s.ws_url(), &[("Authorization", auth.as_str())]) {
        Ok(_) => panic!("a banned user connected"),
        Err(e) => assert_eq!(e.status(), Some(403), "{e:?}"),
    }
    assert!(ok(cli(dir.path(), &["user", "list"], &[], ""), "list").contains("yes"));
    // Users of an outside identity provider are banned by id.
    let ext = s.mint("ext-7", "ext", "user", 3600);
    let mut e = s.ws(&ext);
    ok(cli(dir.path(), &["user", "ban", "--id", "ext-7"], &[], ""), "ban --id");
    assert_eq!(e.expect_close(secs(6.0)), Some(4003));

    ok(cli(dir.path(), &["user", "unban", "mallory"], &[], ""), "unban");
    let (st, body) = login();
    assert_eq!(st, 200, "{body}");
    let fresh = body["token"].as_str().unwrap().to_string();
    let auth = format!("Bearer {fresh}");
    assert!(
        wait_until(secs(6.0), || WsClient::connect(
            &s.ws_url(),
            &[("Authorization", auth.as_str())]
        )
        .is_ok()),
        "an unbanned user cannot connect"
    );
    let out = cli(dir.path(), &["user", "unban", "mallory"], &[], "");
    assert!(!out.status.success(), "not banned any more");
}

#[test]
fn a_password_changed_on_the_command_line_revokes_older_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(Opts::new().data_dir(dir.path()));
    let (token, _) = s.register("carol", PASSWORD);
    let mut c = s.ws(&token);
    ok(
        cli(dir.path(), &["user", "passwd", "carol"], &[], "brand-new-password\n"),
        "passwd",
    );
    assert_eq!(c.expect_close(secs(6.0)), Some(4001));
    assert_eq!(s.get("/api/me", Some(&token)).0, 401);
    let (st, body) = s.post(
        "/api/login",
        None,
        json!({"name":"carol","password":"brand-new-password"}),
    );
    assert_eq!(st, 200, "{body}");
}

#[test]
fn backup_of_a_running_server_restores_accounts_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(Opts::new().data_dir(dir.path()));
    let dave = s.user("dave");
    let mut c = s.ws_user(&dave);
    for i in 0..20 {
        c.ok(json!({"op":"publish","channel":"room:kept","data":text_msg(&format!("m{i}"))}));
    }
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("chat-backup.db");
    let out = ok(cli(dir.path(), &["backup", file.to_str().unwrap()], &[], ""), "backup");
    assert!(out.contains("database copied"), "{out}");
    c.ok(json!({"op":"publish","channel":"room:kept","data":text_msg("after the backup")}));

    let restored = tempfile::tempdir().unwrap();
    std::fs::copy(&file, restored.path().join("chat.db")).unwrap();
    let r = TestServer::start(Opts::new().data_dir(restored.path()));
    let (st, body) = r.post("/api/login", None, json!({"name":"dave","password": PASSWORD}));
    assert_eq!(st, 200, "{body}");
    let (_, h) = r.get(
        "/api/channels/room:kept/history?limit=100",
        Some(body["token"].as_str().unwrap()),
    );
    assert_eq!(seqs(&h["messages"]), (1..=20).collect::<Vec<u64>>(), "{h}");
}

#[test]
fn commands_work_on_postgresql() {
    let Some(db) = PgDb::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let env = [("DATABASE_URL", db.url.as_str())];
    ok(
        cli(
            dir.path(),
            &["user", "add", "pat", "--password", "pat-password"],
            &env,
            "",
        ),
        "add",
    );
    ok(cli(dir.path(), &["user", "ban", "pat"], &env, ""), "ban");
    let list = ok(cli(dir.path(), &["user", "list"], &env, ""), "list");
    assert!(list.contains("pat") && list.contains("yes"), "{list}");
    let out = ok(cli(dir.path(), &["migrate", "--status"], &env, ""), "migrate");
    assert!(out.contains("storage: postgres") && !out.contains("[ ]"), "{out}");
    let out = cli(dir.path(), &["backup", "/tmp/x.db"], &env, "");
    assert!(!out.status.success(), "backup on PostgreSQL points to pg_dump");
    assert!(String::from_utf8_lossy(&out.stderr).contains("pg_dump"));
}
