//! Authentication on the WebSocket upgrade and the HTTP account endpoints.
mod common;

use common::*;
use serde_json::json;

fn ws_forms(s: &TestServer, token: &str) -> Vec<(&'static str, Result<WsClient, ConnectError>)> {
    let url = s.ws_url();
    let bearer = format!("Bearer {token}");
    let cookie = format!("chat_session={token}");
    vec![
        ("header", WsClient::connect(&url, &[("Authorization", bearer.as_str())])),
        ("query", WsClient::connect(&format!("{url}?token={token}"), &[])),
        ("cookie", WsClient::connect(&url, &[("Cookie", cookie.as_str())])),
    ]
}

#[test]
fn valid_token_in_header_query_and_cookie() {
    let s = TestServer::start_default();
    let t = s.mint("7", "bob", "user", 3600);
    for (form, r) in ws_forms(&s, &t) {
        let mut c = r.unwrap_or_else(|e| panic!("{form}: upgrade refused: {e:?}"));
        c.label = form.into();
        let w = c.expect_welcome(T);
        assert_eq!(id_string(&w["user"]["id"]).as_deref(), Some("7"), "{form}: {w}");
        assert_eq!(w["user"]["name"], "bob");
        c.ping();
    }
}

#[test]
fn expired_and_forged_tokens_get_401_on_upgrade() {
    let s = TestServer::start_default();
    let expired = s.mint("7", "bob", "user", -3600);
    let forged = mint_token_with("not-the-server-secret-at-all-0000000", "7", "bob", "user", 3600);
    let no_exp = mint_claims(TEST_SECRET, &json!({"sub":"7","name":"bob"}));
    let no_sub = mint_claims(TEST_SECRET, &json!({"name":"bob","exp": now_s() + 3600}));
    for (what, tok) in [
        ("expired", &expired),
        ("forged", &forged),
        ("no exp", &no_exp),
        ("no sub", &no_sub),
        ("garbage", &"abc.def.ghi".to_string()),
    ] {
        for (form, r) in ws_forms(&s, tok) {
            match r {
                Ok(_) => panic!("{what} token in {form}: upgrade must be refused with 401, it succeeded"),
                Err(e) => assert_eq!(e.status(), Some(401), "{what} token in {form}: {e:?}"),
            }
        }
    }
    // HTTP API too
    for tok in [&expired, &forged] {
        let (st, body) = s.get("/api/rooms", Some(tok));
        assert_eq!(st, 401, "{body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    }
    let (st, _) = s.get("/api/rooms", None);
    assert_eq!(st, 401, "no token");
}

#[test]
fn first_frame_auth() {
    let s = TestServer::start(Opts::new().env("CHAT_AUTH_TIMEOUT_S", "1"));
    let good = s.mint("11", "frank", "user", 3600);

    // valid token in the first frame -> welcome
    let mut c = WsClient::connect(&s.ws_url(), &[]).expect("upgrade without identity must succeed");
    c.send_json(&json!({"op":"auth","token":good}));
    let w = c.expect_welcome(T);
    assert_eq!(id_string(&w["user"]["id"]).as_deref(), Some("11"));
    c.ok(json!({"op":"join","channel":"room:ffa"}));

    // bad token -> close 4001
    let forged = mint_token_with("wrong-secret-wrong-secret-wrong-secret", "11", "frank", "user", 3600);
    let mut c = WsClient::connect(&s.ws_url(), &[]).expect("upgrade");
    c.send_json(&json!({"op":"auth","token":forged}));
    assert_eq!(c.expect_close(T), Some(4001), "bad first-frame token");
    assert!(
        c.events.iter().all(|e| e["ev"] != "welcome"),
        "no welcome for a bad token"
    );

    // expired token -> close 4001
    let expired = s.mint("11", "frank", "user", -3600);
    let mut c = WsClient::connect(&s.ws_url(), &[]).expect("upgrade");
    c.send_json(&json!({"op":"auth","token":expired}));
    assert_eq!(c.expect_close(T), Some(4001), "expired first-frame token");

    // nothing within CHAT_AUTH_TIMEOUT_S=1 -> close 4001
    let mut c = WsClient::connect(&s.ws_url(), &[]).expect("upgrade");
    assert_eq!(c.expect_close(T), Some(4001), "auth timeout");
    assert!(c.events.iter().all(|e| e["ev"] != "welcome"));
}

#[test]
fn no_identity_with_anonymous_off_is_refused() {
    let s = TestServer::start(Opts::new().env("CHAT_AUTH_TIMEOUT_S", "1"));
    let r = WsClient::connect(&s.ws_url(), &[]);
    let mut c = match r {
        Err(e) => {
            assert_eq!(e.status(), Some(401), "{e:?}");
            return;
        }
        Ok(c) => c,
    };
    // the first frame is not an auth frame: must never be served
    let _ = c.send_text(&json!({"id":1,"op":"join","channel":"room:x"}).to_string());
    let _ = c.send_text(&json!({"id":2,"op":"join","channel":"ticker:ABC"}).to_string());
    let closed = c.wait_closed(T);
    for f in c.events.iter().chain(c.stash.iter()) {
        assert!(f["ev"] != "welcome", "anonymous connection got a welcome: {f}");
        assert!(f.get("ok").is_none(), "anonymous connection was served: {f}");
        if let Some(code) = f["error"]["code"].as_str() {
            assert_eq!(code, "unauthorized", "{f}");
        }
    }
    assert_eq!(
        closed,
        Some(Some(4001)),
        "connection without identity must be closed with 4001"
    );
}

#[test]
fn anonymous_allowed_only_for_feeds() {
    let s = TestServer::start(
        Opts::new()
            .env("CHAT_ALLOW_ANONYMOUS", "true")
            .env("CHAT_AUTH_TIMEOUT_S", "1"),
    );
    let mut c = WsClient::connect(&s.ws_url(), &[]).expect("anonymous upgrade");
    c.label = "anon".into();
    let w = c.expect_welcome(secs(8.0));
    assert!(w["user"].is_object() || w["user"].is_null(), "{w}");
    assert_eq!(c.err(json!({"op":"join","channel":"room:x"})), "forbidden");
    c.ping();
    let j = c.ok(json!({"op":"join","channel":"ticker:ACME"}));
    assert_eq!(j["channel"], "ticker:ACME");
    assert_eq!(
        c.err(json!({"op":"publish","channel":"ticker:ACME","data":{"price":1.0}})),
        "forbidden"
    );
    let code = c.err(json!({"op":"publish","channel":"room:x","data":text_msg("hi")}));
    assert!(code == "forbidden" || code == "unauthorized", "{code}");
    c.ping();
}

#[test]
fn origin_allowlist() {
    let s = TestServer::start_default();
    let t = s.mint("1", "o", "user", 3600);
    let bearer = format!("Bearer {t}");
    let evil = WsClient::connect(
        &s.ws_url(),
        &[("Authorization", &bearer), ("Origin", "http://evil.example")],
    );
    match evil {
        Ok(_) => panic!("foreign Origin must be refused"),
        Err(e) => assert_eq!(e.status(), Some(403), "{e:?}"),
    }
    let own = s.origin();
    let mut c = WsClient::connect(&s.ws_url(), &[("Authorization", &bearer), ("Origin", own.as_str())])
        .unwrap_or_else(|e| panic!("own origin {own} refused: {e:?}"));
    c.expect_welcome(T);
    // no Origin header at all (non-browser client) is fine
    s.ws(&t).ping();

    let s2 = TestServer::start(Opts::new().env("CHAT_ALLOWED_ORIGINS", "http://good.example,https://also.example"));
    let t2 = s2.mint("1", "o", "user", 3600);
    let bearer2 = format!("Bearer {t2}");
    for o in ["http://good.example", "https://also.example"] {
        let mut c = WsClient::connect(&s2.ws_url(), &[("Authorization", &bearer2), ("Origin", o)])
            .unwrap_or_else(|e| panic!("allowed origin {o} refused: {e:?}"));
        c.expect_welcome(T);
    }
    let e = WsClient::connect(
        &s2.ws_url(),
        &[("Authorization", &bearer2), ("Origin", "http://evil.example")],
    );
    assert_eq!(e.err().and_then(|e| e.status()), Some(403));
    let own2 = s2.origin();
    let mut c = WsClient::connect(&s2.ws_url(), &[("Authorization", &bearer2), ("Origin", own2.as_str())])
        .unwrap_or_else(|e| panic!("own origin must always be allowed: {e:?}"));
    c.expect_welcome(T);
}

#[test]
fn register_and_login() {
    let s = TestServer::start_default();
    let (token, id) = s.register("alice", PASSWORD);
    assert!(
        id.chars().all(|c| c.is_ascii_digit()),
        "registered ids are decimal strings: {id}"
    );
    let mut c = s.ws(&token);
    assert_eq!(c.welcome.as_ref().unwrap()["user"]["name"], "alice");
    c.ping();

    // duplicate name
    let r = s.http(
        "POST",
        "/api/register",
        None,
        Some(&json!({"name":"alice","password":"another-pass-1"})),
        &[],
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json["error"]["code"], "bad_request", "{}", r.text);
    // invalid name / short password
    let r = s.http(
        "POST",
        "/api/register",
        None,
        Some(&json!({"name":"bad name!","password":"long-enough-pw"})),
        &[],
    );
    assert_eq!(r.status, 400, "{}", r.text);
    let r = s.http(
        "POST",
        "/api/register",
        None,
        Some(&json!({"name":"shorty","password":"short"})),
        &[],
    );
    assert_eq!(r.status, 400, "{}", r.text);

    // wrong password / unknown user
    let r = s.http(
        "POST",
        "/api/login",
        None,
        Some(&json!({"name":"alice","password":"wrong-password"})),
        &[],
    );
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.json["error"]["code"], "unauthorized", "{}", r.text);
    let r = s.http(
        "POST",
        "/api/login",
        None,
        Some(&json!({"name":"nobody","password":"whatever-pw"})),
        &[],
    );
    assert_eq!(r.status, 401, "{}", r.text);

    // login: token + HttpOnly session cookie
    let r = s.http(
        "POST",
        "/api/login",
        None,
        Some(&json!({"name":"alice","password":PASSWORD})),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(id_string(&r.json["user"]["id"]).as_deref(), Some(id.as_str()));
    let tok = r.json["token"].as_str().expect("token").to_string();
    let cookie = r
        .set_cookies
        .iter()
        .find(|c| c.starts_with("chat_session="))
        .unwrap_or_else(|| panic!("no chat_session cookie in {:?}", r.set_cookies))
        .clone();
    let lower = cookie.to_ascii_lowercase();
    assert!(lower.contains("httponly"), "cookie must be HttpOnly: {cookie}");
    assert!(lower.contains("path=/"), "cookie Path=/: {cookie}");
    let value = cookie["chat_session=".len()..].split(';').next().unwrap().to_string();
    assert!(!value.is_empty());

    // the cookie authenticates HTTP and the WebSocket
    let cookie_hdr = format!("chat_session={value}");
    let r = s.http("GET", "/api/me", None, None, &[("Cookie", &cookie_hdr)]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["user"]["name"], "alice");
    let mut c = WsClient::connect(&s.ws_url(), &[("Cookie", &cookie_hdr), ("Origin", &s.origin())]).expect("cookie ws");
    c.expect_welcome(T);
    let mut c = s.ws(&tok);
    c.ping();

    let (st, me) = s.get("/api/me", Some(&tok));
    assert_eq!(st, 200);
    assert_eq!(me["user"]["role"], "user", "{me}");
}

#[test]
fn token_claims_default_role_and_query_token_not_logged() {
    // RUST_LOG=info: the level a production deployment runs at
    let s = TestServer::start(Opts::new().env("RUST_LOG", "info"));
    // no role claim -> "user"
    let tok = mint_claims(TEST_SECRET, &json!({"sub":"55","name":"norole","exp": now_s() + 600}));
    let (st, me) = s.get("/api/me", Some(&tok));
    assert_eq!(st, 200, "{me}");
    assert_eq!(me["user"]["role"], "user", "{me}");
    let mut c = WsClient::connect(&format!("{}?token={tok}", s.ws_url()), &[]).expect("query token");
    c.expect_welcome(T);
    assert_eq!(
        c.err(json!({"op":"publish","channel":"ticker:x","data":{"price":1}})),
        "forbidden"
    );
    c.ok(json!({"op":"join","channel":"room:logs"}));
    drop(c);
    // also a refused one
    let bad = mint_token_with("some-other-secret-some-other-secret", "55", "x", "user", 600);
    let _ = WsClient::connect(&format!("{}?token={bad}", s.ws_url()), &[]);
    let r = s.http("GET", "/healthz", None, None, &[]);
    assert_eq!(r.status, 200);
    // Wait for the access-log lines of both upgrades rather than a fixed time: the
    // server writes a WebSocket request's line when its connection has ended, after
    // whatever else it logged about it (one stderr pipe, read in order).
    let logged = |status: &str| {
        s.stderr_tail(400)
            .lines()
            .any(|l| l.contains("\"GET /ws\"") && l.contains(&format!(" {status} ")))
    };
    assert!(
        wait_until(T, || logged("101") && logged("401")),
        "no access-log lines for the two upgrades:\n{}",
        s.stderr_tail(40)
    );
    let logs = s.stderr_tail(400) + &s.stdout_lines().join("\n");
    let sig = tok.rsplit('.').next().unwrap();
    let bad_sig = bad.rsplit('.').next().unwrap();
    assert!(!logs.contains(sig), "the ?token= value was written to the logs");
    assert!(
        !logs.contains(bad_sig),
        "a refused ?token= value was written to the logs"
    );
}

#[test]
fn failed_logins_are_rate_limited() {
    let s = TestServer::start(Opts::new().env("CHAT_LOGIN_FAILURES_PER_MIN", "5"));
    s.register("victim", "correct-password");
    for i in 0..5 {
        let (st, j) = s.post(
            "/api/login",
            None,
            json!({"name":"victim","password":format!("wrong-{i}")}),
        );
        assert_eq!(st, 401, "{j}");
    }
    let (st, j) = s.post("/api/login", None, json!({"name":"victim","password":"wrong-again"}));
    assert_eq!((st, j["error"]["code"].as_str()), (429, Some("rate_limited")), "{j}");
    // While limited, even the right password is refused (no oracle for guessing).
    let (st, _) = s.post(
        "/api/login",
        None,
        json!({"name":"victim","password":"correct-password"}),
    );
    assert_eq!(st, 429);
}

#[test]
fn registrations_are_rate_limited_per_address() {
    let s = TestServer::start(Opts::new().env("CHAT_REGISTRATIONS_PER_MIN", "3"));
    for i in 0..3 {
        let (st, j) = s.post(
            "/api/register",
            None,
            json!({"name":format!("u{i}"),"password":"password-123"}),
        );
        assert_eq!(st, 200, "{j}");
    }
    let (st, j) = s.post("/api/register", None, json!({"name":"u9","password":"password-123"}));
    assert_eq!((st, j["error"]["code"].as_str()), (429, Some("rate_limited")), "{j}");
}

#[test]
fn a_short_configured_secret_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatserver"))
        .env_clear()
        .env("CHAT_DATA_DIR", dir.path())
        .env("CHAT_BIND", "127.0.0.1:0")
        .env("CHAT_DEMO", "false")
        .env("CHAT_JWT_SECRET", "12345")
        .output()
        .expect("run the server");
    assert!(!out.status.success(), "started with a 5-byte secret");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CHAT_JWT_SECRET"), "{err}");
    assert!(!err.contains("12345"), "the secret was printed: {err}");
}
