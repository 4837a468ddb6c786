//! Connection limits: per user and per client address open connections, and the
//! handshake rate per address (behind a trusted proxy, per forwarded address).
mod common;

use common::*;
use serde_json::json;

fn bearer_connect(s: &TestServer, token: &str, extra: &[(&str, &str)]) -> Result<WsClient, ConnectError> {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    WsClient::connect(&s.ws_url(), &headers)
}

/// Waits until a new connection with `token` is accepted again (the server has seen
/// an earlier one end).
fn accepted_again(s: &TestServer, token: &str) -> WsClient {
    let mut last = None;
    let ok = wait_until(secs(5.0), || match bearer_connect(s, token, &[]) {
        Ok(c) => {
            last = Some(c);
            true
        }
        Err(_) => false,
    });
    assert!(ok, "no connection accepted after one closed");
    let mut c = last.unwrap();
    c.expect_welcome(T);
    c
}

#[test]
fn connections_per_user_are_limited() {
    let s = TestServer::start(Opts::new().env("CHAT_MAX_CONNS_PER_USER", "2"));
    let bob = s.mint("7", "bob", "user", 3600);
    let mut a = s.ws(&bob);
    let _b = s.ws(&bob);
    match bearer_connect(&s, &bob, &[]) {
        Ok(_) => panic!("a third connection of the same user was accepted"),
        Err(e) => assert_eq!(e.status(), Some(429), "{e:?}"),
    }
    // With the token in the first frame, the third connection is closed with 4029.
    let mut c = WsClient::connect(&s.ws_url(), &[]).expect("upgrade without credentials");
    c.send_json(&json!({"id":1,"op":"auth","token": bob}));
    assert_eq!(c.expect_close(T), Some(4029));
    // Another user is not affected.
    s.ws(&s.mint("8", "eve", "user", 3600)).ping();
    // When one closes, a new one is accepted.
    a.close();
    accepted_again(&s, &bob).ping();
}

#[test]
fn connections_per_address_are_limited() {
    let s = TestServer::start(Opts::new().env("CHAT_MAX_CONNS_PER_ADDRESS", "3"));
    let mut open: Vec<WsClient> = (0..3)
        .map(|i| s.ws(&s.mint(&format!("u{i}"), "user", "user", 3600)))
        .collect();
    let t = s.mint("u9", "late", "user", 3600);
    match bearer_connect(&s, &t, &[]) {
        Ok(_) => panic!("a fourth connection from one address was accepted"),
        Err(e) => assert_eq!(e.status(), Some(429), "{e:?}"),
    }
    for c in &mut open {
        c.ping();
    }
    open.pop().unwrap().close();
    accepted_again(&s, &t).ping();
}

#[test]
fn handshakes_per_address_are_rate_limited_per_forwarded_client() {
    let s = TestServer::start(
        Opts::new()
            .env("CHAT_HANDSHAKES_PER_MIN_PER_ADDRESS", "5")
            .env("CHAT_TRUSTED_PROXIES", "127.0.0.1"),
    );
    let t = s.mint("7", "bob", "user", 3600);
    let from = |ip: &'static str| [("X-Forwarded-For", ip)];
    for i in 0..5 {
        let mut c = bearer_connect(&s, &t, &from("203.0.113.5")).unwrap_or_else(|e| panic!("handshake {i}: {e:?}"));
        c.expect_welcome(T);
    }
    match bearer_connect(&s, &t, &from("203.0.113.5")) {
        Ok(_) => panic!("a sixth handshake within the minute was accepted"),
        Err(e) => assert_eq!(e.status(), Some(429), "{e:?}"),
    }
    // Another client behind the same proxy has its own budget.
    bearer_connect(&s, &t, &from("203.0.113.6"))
        .expect("another forwarded client")
        .expect_welcome(T);
}
