//! Write budgets per user, shared by every way in: WebSocket and HTTP, all of a user's
//! connections; batches count per item; room creation has its own quota.

mod common;

use std::time::Instant;

use common::*;
use serde_json::{json, Value};

fn items(channel: &str, n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"channel":channel,"data":text_msg(&format!("flood {i}"))}))
            .collect(),
    )
}

#[test]
fn an_http_batch_flood_is_refused_past_the_budget_and_slows_nobody_else() {
    // 50 writes/s per user with bursts of 100 (the default).
    let s = TestServer::start_default();
    let (flooder, other) = (s.user("flooder"), s.user("other"));
    let mut cf = s.ws_user(&flooder);
    cf.ok(json!({"op":"join","channel":"room:flood"}));
    let mut co = s.ws_user(&other);
    co.ok(json!({"op":"join","channel":"room:calm"}));
    let mut stored = 0;
    let mut refused = 0;
    let mut slowest = std::time::Duration::ZERO;
    for round in 0..5 {
        let (st, body) = s.post("/api/publish/batch", Some(&flooder.token), items("room:flood", 1000));
        assert_eq!(st, 200, "{body}");
        for r in body.as_array().unwrap() {
            if r["seq"].is_u64() {
                stored += 1;
            } else {
                assert_eq!(r["error"]["code"], "rate_limited", "{r}");
                refused += 1;
            }
        }
        // Meanwhile someone else publishes as usual.
        let t = Instant::now();
        co.ok(json!({"op":"publish","channel":"room:calm","data":text_msg(&format!("calm {round}"))}));
        slowest = slowest.max(t.elapsed());
    }
    assert!(stored <= 100 + 5 * 60, "{stored} of 5,000 stored past a budget of 50/s");
    assert!(stored >= 100, "the burst is allowed: {stored}");
    assert_eq!(stored + refused, 5000);
    assert!(slowest < secs(0.5), "another user's publish took {slowest:?}");
    // The flooder's connection was not closed.
    cf.ping();
    let (_, h) = s.get("/api/channels/room:flood/history?limit=200", Some(&flooder.token));
    assert!(h["messages"].as_array().unwrap().len() <= 200);
}

#[test]
fn the_budget_is_shared_by_a_users_connections_and_http() {
    // One write a second with bursts of two: the requests below take milliseconds.
    let s = TestServer::start(Opts::new().env("CHAT_PUBLISH_RATE", "1"));
    let (u, owner) = (s.user("multi"), s.user("owner"));
    let (st, body) = s.post("/api/rooms", Some(&owner.token), json!({"name":"m"}));
    assert_eq!(st, 201, "{body}");
    let mut conns: Vec<WsClient> = (0..3).map(|_| s.ws_user(&u)).collect();
    for c in conns.iter_mut() {
        c.ok(json!({"op":"join","channel":"room:m"}));
    }
    let publish = json!({"op":"publish","channel":"room:m","data":text_msg("x")});
    conns[0].ok(publish.clone());
    conns[1].ok(publish.clone());
    let r = conns[2].request(publish.clone());
    assert_eq!(r["error"]["code"], "rate_limited", "a third connection: {r}");
    let (st, body) = s.post(
        "/api/publish",
        Some(&u.token),
        json!({"channel":"room:m","data":text_msg("h")}),
    );
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (429, Some("rate_limited")),
        "{body}"
    );
    // Another user is not affected.
    let mut other = s.ws_user(&owner);
    other.ok(json!({"op":"join","channel":"room:m"}));
    other.ok(publish);
}

#[test]
fn room_creation_has_a_quota_per_user() {
    let s = TestServer::start(Opts::new().env("CHAT_ROOMS_PER_HOUR", "3"));
    let (a, b) = (s.user("maker"), s.user("joiner"));
    let (st, body) = s.post("/api/rooms", Some(&a.token), json!({"name":"made-1"}));
    assert_eq!(st, 201, "{body}");
    let mut ca = s.ws_user(&a);
    ca.ok(json!({"op":"join","channel":"room:made-2"}));
    ca.ok(json!({"op":"join","channel":"room:made-3"}));
    assert_eq!(ca.err(json!({"op":"join","channel":"room:made-4"})), "rate_limited");
    let (st, body) = s.post("/api/rooms", Some(&a.token), json!({"name":"made-5"}));
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (429, Some("rate_limited")),
        "{body}"
    );
    // Joining rooms that exist costs nothing, for anyone.
    ca.ok(json!({"op":"join","channel":"room:made-1"}));
    let mut cb = s.ws_user(&b);
    for i in 1..=3 {
        cb.ok(json!({"op":"join","channel":format!("room:made-{i}")}));
    }
    // The refused room does not exist.
    let (_, rooms) = s.get("/api/rooms", Some(&b.token));
    let names: Vec<&str> = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["made-1", "made-2", "made-3"]);
}
