//! Token lifetime: a connection ends with 4001 when its token expires unless a fresh
//! token extends it; logout and a password change revoke every older token of the
//! account at once (refused on upgrade and by the HTTP API, open connections closed
//! with 4001), also after a restart.
mod common;

use common::*;
use serde_json::json;

fn login(s: &TestServer, name: &str, pw: &str) -> (u16, serde_json::Value) {
    s.post("/api/login", None, json!({"name": name, "password": pw}))
}

fn upgrade_status(s: &TestServer, token: &str) -> Option<u16> {
    let auth = format!("Bearer {token}");
    match WsClient::connect(&s.ws_url(), &[("Authorization", auth.as_str())]) {
        Ok(_) => Some(101),
        Err(e) => e.status(),
    }
}

#[test]
fn a_connection_is_closed_with_4001_when_its_token_expires() {
    let s = TestServer::start_default();
    let t = s.mint("7", "bob", "user", 2);
    let mut c = s.ws(&t);
    c.ping();
    let started = std::time::Instant::now();
    assert_eq!(c.expect_close(secs(8.0)), Some(4001), "close code on expiry");
    assert!(
        started.elapsed() >= secs(0.5),
        "closed too early: {:?}",
        started.elapsed()
    );
    let ev = c
        .buffered_event(|e| e["ev"] == "disconnect")
        .expect("a disconnect event before the close");
    assert_eq!(ev["code"], 4001, "{ev}");
}

#[test]
fn a_fresh_token_for_the_same_user_extends_the_connection() {
    let s = TestServer::start_default();
    let mut c = s.ws(&s.mint("7", "bob", "user", 2));
    c.ok(json!({"op":"auth","token": s.mint("7", "bob", "user", 3600)}));
    // Another user's token or another role is refused, and the connection goes on.
    let e = c.err(json!({"op":"auth","token": s.mint("8", "eve", "user", 3600)}));
    assert_eq!(e, "bad_request");
    let e = c.err(json!({"op":"auth","token": s.mint("7", "bob", "admin", 3600)}));
    assert_eq!(e, "bad_request");
    let e = c.err(json!({"op":"auth","token": s.mint("7", "bob", "user", -10)}));
    assert_eq!(e, "unauthorized");
    assert_eq!(c.wait_closed(secs(4.0)), None, "closed although the token was extended");
    c.ping();
}

#[test]
fn first_frame_auth_with_a_short_token_also_expires() {
    let s = TestServer::start_default();
    let mut c = WsClient::connect(&s.ws_url(), &[]).expect("upgrade without credentials");
    c.send_json(&json!({"id":1,"op":"auth","token": s.mint("7", "bob", "user", 2)}));
    c.expect_welcome(T);
    let r = c.wait_reply(1, T);
    assert!(r.get("ok").is_some(), "{r}");
    assert_eq!(c.expect_close(secs(8.0)), Some(4001));
}

#[test]
fn logout_revokes_every_token_of_the_account() {
    let s = TestServer::start_default();
    let (t1, _) = s.register("carol", PASSWORD);
    let (st, body) = login(&s, "carol", PASSWORD);
    assert_eq!(st, 200, "{body}");
    let t2 = body["token"].as_str().unwrap().to_string();
    let mut open = s.ws(&t1);
    let mut other = s.ws(&s.mint("99", "dave", "user", 3600));

    let (st, body) = s.post("/api/logout", Some(&t2), json!({}));
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        open.expect_close(T),
        Some(4001),
        "open connection of the logged-out account"
    );
    for (what, t) in [("first token", &t1), ("token used to log out", &t2)] {
        assert_eq!(upgrade_status(&s, t), Some(401), "{what}: upgrade after logout");
        let (st, body) = s.get("/api/me", Some(t));
        assert_eq!(
            (st, body["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{what}: {body}"
        );
    }
    other.ping();

    // Logging in again gives a token that works.
    let (st, body) = login(&s, "carol", PASSWORD);
    assert_eq!(st, 200, "{body}");
    let t3 = body["token"].as_str().unwrap();
    s.ws(t3).ping();
    assert_eq!(s.get("/api/me", Some(t3)).0, 200);
    // Logging out without a valid credential only clears the cookie.
    assert_eq!(s.post("/api/logout", None, json!({})).0, 200);
    assert_eq!(s.get("/api/me", Some(t3)).0, 200);
}

#[test]
fn a_password_change_revokes_older_tokens_and_returns_a_fresh_one() {
    let s = TestServer::start_default();
    let (t1, _) = s.register("erin", PASSWORD);
    let mut open = s.ws(&t1);
    let (st, body) = s.post(
        "/api/password",
        Some(&t1),
        json!({"old":"wrong-password","new":"another-secret-1"}),
    );
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    let (st, body) = s.post("/api/password", Some(&t1), json!({"old": PASSWORD, "new":"short"}));
    assert_eq!(st, 400, "{body}");
    open.ping();

    let (st, body) = s.post(
        "/api/password",
        Some(&t1),
        json!({"old": PASSWORD, "new":"another-secret-1"}),
    );
    assert_eq!(st, 200, "{body}");
    let fresh = body["token"].as_str().expect("a fresh token").to_string();
    assert_eq!(open.expect_close(T), Some(4001));
    assert_eq!(upgrade_status(&s, &t1), Some(401));
    s.ws(&fresh).ping();
    assert_eq!(login(&s, "erin", PASSWORD).0, 401, "old password");
    assert_eq!(login(&s, "erin", "another-secret-1").0, 200, "new password");
    // Without a credential there is nobody to change.
    let (st, _) = s.post(
        "/api/password",
        None,
        json!({"old": PASSWORD, "new":"another-secret-2"}),
    );
    assert_eq!(st, 401);
}

#[test]
fn revocation_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(Opts::new().data_dir(dir.path()));
    let (t1, _) = s.register("frank", PASSWORD);
    assert_eq!(s.post("/api/logout", Some(&t1), json!({})).0, 200);
    s.stop();
    let s = TestServer::start(Opts::new().data_dir(dir.path()));
    assert_eq!(upgrade_status(&s, &t1), Some(401), "revoked token after a restart");
    let (st, body) = login(&s, "frank", PASSWORD);
    assert_eq!(st, 200, "{body}");
    assert_eq!(upgrade_status(&s, body["token"].as_str().unwrap()), Some(101));
}
