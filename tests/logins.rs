//! Logins under attack: password hashing never holds the storage pool and runs a few
//! at a time, limits are per address and per (name, address), and `X-Forwarded-For` is
//! believed only from trusted proxies.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn login_from(s: &TestServer, name: &str, password: &str, forwarded_for: Option<&str>) -> u16 {
    let body = json!({"name":name,"password":password});
    let headers: Vec<(&str, &str)> = forwarded_for.map(|f| ("X-Forwarded-For", f)).into_iter().collect();
    s.http("POST", "/api/login", None, Some(&body), &headers).status
}

#[test]
fn a_login_flood_from_many_addresses_does_not_slow_other_users() {
    let s = TestServer::start(Opts::new().env("CHAT_TRUSTED_PROXIES", "127.0.0.1"));
    let member = s.user("member");
    s.register("target", "the-right-password");
    let mut c = s.ws_user(&member);
    c.ok(json!({"op":"join","channel":"room:busy"}));
    c.ok(json!({"op":"publish","channel":"room:busy","data":text_msg("hi")}));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let base = s.base();
    // More concurrent guesses than may wait for hashing: some are turned away at once.
    let flood: Vec<_> = (0..48)
        .map(|t| {
            let (stop, base) = (stop.clone(), base.clone());
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(20)).build();
                let (mut n, mut refused, mut busy) = (0u32, 0u32, 0u32);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let r = agent
                        .post(&format!("{base}/api/login"))
                        .set("X-Forwarded-For", &format!("10.{t}.{}.{}", n / 250, n % 250))
                        .send_json(json!({"name":"target","password":format!("guess-{n}")}));
                    match r {
                        Err(ureq::Error::Status(401, _)) => refused += 1,
                        Err(ureq::Error::Status(503, _)) => busy += 1,
                        other => panic!("a guess was answered {:?}", other.map(|r| r.status())),
                    }
                }
                (refused, busy)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut took = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        c.ok(json!({"op":"history","channel":"room:busy"}));
        took.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (refused, busy) = flood
        .into_iter()
        .map(|h| h.join().unwrap())
        .fold((0, 0), |(r, b), (r2, b2)| (r + r2, b + b2));
    took.sort();
    assert!(refused > 0, "guesses were checked");
    assert!(
        busy > 0,
        "the queue for hashing is bounded ({refused} checked, none turned away)"
    );
    assert!(
        took[5] < Duration::from_millis(100),
        "median history {:?} during the flood",
        took[5]
    );
    assert!(
        took[9] < Duration::from_millis(400),
        "slowest history {:?} during the flood",
        took[9]
    );
    // The account was not locked for its owner elsewhere.
    assert_eq!(login_from(&s, "target", "the-right-password", Some("192.0.2.1")), 200);
}

#[test]
fn guessing_from_one_address_does_not_lock_the_account_elsewhere() {
    let s = TestServer::start(
        Opts::new()
            .env("CHAT_TRUSTED_PROXIES", "127.0.0.1/32")
            .env("CHAT_LOGIN_FAILURES_PER_MIN", "5"),
    );
    s.register("victim", "correct-password");
    for i in 0..5 {
        assert_eq!(
            login_from(&s, "victim", &format!("wrong-{i}"), Some("203.0.113.9")),
            401
        );
    }
    assert_eq!(login_from(&s, "victim", "wrong-again", Some("203.0.113.9")), 429);
    assert_eq!(login_from(&s, "victim", "correct-password", Some("203.0.113.9")), 429);
    // The owner, from another address, logs in.
    assert_eq!(login_from(&s, "victim", "correct-password", Some("198.51.100.7")), 200);
}

#[test]
fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let s = TestServer::start(Opts::new().env("CHAT_LOGIN_FAILURES_PER_MIN", "5"));
    s.register("victim", "correct-password");
    // Each attempt claims another address: without a trusted proxy, all are the peer's.
    for i in 0..5 {
        let fake = format!("198.51.100.{i}");
        assert_eq!(login_from(&s, "victim", "wrong", Some(&fake)), 401);
    }
    assert_eq!(login_from(&s, "victim", "wrong", Some("198.51.100.99")), 429);
}
