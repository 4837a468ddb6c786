//! Signals cannot be abused to ring someone: size- and rate-limited, and never from a
//! user the callee blocked.

mod common;

use common::*;
use serde_json::json;

#[test]
fn signals_are_limited_in_size_and_rings_in_rate() {
    let s = TestServer::start_default();
    let (a, b, c) = (s.user("alice"), s.user("bob"), s.user("carol"));
    let mut ca = s.ws_user(&a);
    let mut cb = s.ws_user(&b);
    let mut cc = s.ws_user(&c);
    for x in [&mut ca, &mut cb, &mut cc] {
        x.ok(json!({"op":"join","channel":"room:calls"}));
    }
    let big = json!({"kind":"offer","sdp":"v".repeat(17 * 1024)});
    assert_eq!(
        ca.err(json!({"op":"signal","to":b.id,"call":"c1","data":big})),
        "too_large"
    );
    let ring = json!({"kind":"ring","media":"audio"});
    for i in 0..6 {
        ca.ok(json!({"op":"signal","to":b.id,"call":format!("r{i}"),"data":ring}));
    }
    assert_eq!(
        ca.err(json!({"op":"signal","to":b.id,"call":"r7","data":ring})),
        "rate_limited"
    );
    // Other kinds go on (an ongoing call), and another callee can still be rung.
    ca.ok(json!({"op":"signal","to":b.id,"call":"r5","data":{"kind":"ice","candidate":"x"}}));
    ca.ok(json!({"op":"signal","to":c.id,"call":"r8","data":ring}));
    cc.expect_event(|v| v["ev"] == "signal" && v["call"] == "r8", T, "ring to carol");
}

#[test]
fn a_blocked_user_cannot_signal() {
    let s = TestServer::start_default();
    let (a, b) = (s.user("alice"), s.user("bob"));
    let mut ca = s.ws_user(&a);
    let mut cb = s.ws_user(&b);
    for x in [&mut ca, &mut cb] {
        x.ok(json!({"op":"join","channel":"room:block"}));
    }
    let ring = json!({"kind":"ring","media":"video"});
    ca.ok(json!({"op":"signal","to":b.id,"call":"before","data":ring}));
    cb.expect_event(
        |v| v["ev"] == "signal" && v["call"] == "before",
        T,
        "ring before the block",
    );
    let r = s.http("PUT", &format!("/api/blocks/{}", a.id), Some(&b.token), None, &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    let (_, list) = s.get("/api/blocks", Some(&b.token));
    assert_eq!(list["users"], json!([a.id]));
    // As if bob did not exist for alice; bob gets nothing.
    assert_eq!(
        ca.err(json!({"op":"signal","to":b.id,"call":"blocked","data":ring})),
        "not_found"
    );
    cb.barrier();
    assert!(cb.buffered_event(|v| v["ev"] == "signal").is_none());
    // Bob can still call alice; after unblocking, alice can call bob again.
    cb.ok(json!({"op":"signal","to":a.id,"call":"other way","data":ring}));
    let r = s.http("DELETE", &format!("/api/blocks/{}", a.id), Some(&b.token), None, &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    ca.ok(json!({"op":"signal","to":b.id,"call":"after","data":ring}));
    cb.expect_event(
        |v| v["ev"] == "signal" && v["call"] == "after",
        T,
        "ring after unblocking",
    );
    let r = s.http("PUT", &format!("/api/blocks/{}", b.id), Some(&b.token), None, &[]);
    assert_eq!(r.status, 400, "blocking oneself: {}", r.text);
}
