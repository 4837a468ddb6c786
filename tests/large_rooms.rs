//! Large rooms: join replies and presence that do not grow with the room, count-only
//! presence events, and replies bounded in bytes that a client pages through.

mod common;

use std::collections::HashSet;

use common::*;
use serde_json::{json, Value};

/// `n` connections of distinct users joined to `channel`.
fn crowd(s: &TestServer, channel: &str, n: usize, prefix: &str) -> Vec<WsClient> {
    (0..n)
        .map(|i| {
            let tok = s.mint(&format!("{prefix}{i:04}"), &format!("{prefix} {i:04}"), "user", 3600);
            let mut c = s.ws(&tok);
            c.ok(json!({"op":"join","channel":channel}));
            c
        })
        .collect()
}

#[test]
fn join_reply_lists_at_most_100_members_and_the_count() {
    let s = TestServer::start_default();
    let _crowd = crowd(&s, "room:big", 299, "u");
    let tok = s.mint("late", "late joiner", "user", 3600);
    let mut c = s.ws(&tok);
    let j = c.ok(json!({"op":"join","channel":"room:big"}));
    assert_eq!(j["presence_count"], 300, "{}", j["presence_count"]);
    let listed = j["presence"].as_array().expect("presence list");
    assert_eq!(listed.len(), 100);
    // The first 100 by name.
    let names: Vec<&str> = listed.iter().map(|m| m["name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(names[0], "late joiner");
    assert_eq!(names[1], "u 0000");
}

#[test]
fn presence_pages_list_every_member_exactly_once() {
    let s = TestServer::start_default();
    let _crowd = crowd(&s, "room:pages", 230, "p");
    let tok = s.mint("watcher", "watcher", "user", 3600);
    let mut c = s.ws(&tok);
    c.ok(json!({"op":"join","channel":"room:pages"}));
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut op = json!({"op":"presence","channel":"room:pages","limit":70});
        if let Some(a) = &after {
            op["after"] = json!(a);
        }
        let page = c.ok(op);
        pages += 1;
        assert_eq!(page["count"], 231, "{page}");
        let members = page["members"].as_array().unwrap();
        assert!(members.len() <= 70);
        seen.extend(members.iter().map(|m| m["id"].as_str().unwrap().to_string()));
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 4);
    assert_eq!(seen.len(), 231);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 231, "nobody twice");
    // The same through HTTP.
    let (st, page) = s.get("/api/channels/room:pages/presence?limit=500", Some(&tok));
    assert_eq!(st, 200, "{page}");
    assert_eq!(page["members"].as_array().unwrap().len(), 231);
    assert_eq!((page["count"].as_u64(), page.get("next")), (Some(231), None));
    // A bad cursor is a bad request.
    assert_eq!(
        c.err(json!({"op":"presence","channel":"room:pages","after":"nope"})),
        "bad_request"
    );
    assert_eq!(
        c.err(json!({"op":"presence","channel":"room:pages","limit":"x"})),
        "bad_request"
    );
}

#[test]
fn presence_events_carry_the_count() {
    let s = TestServer::start_default();
    let mut a = s.ws(&s.mint("a", "a", "user", 3600));
    a.ok(json!({"op":"join","channel":"room:c"}));
    let mut b = s.ws(&s.mint("b", "b", "user", 3600));
    b.ok(json!({"op":"join","channel":"room:c"}));
    let ev = a.expect_event(
        |v| v["ev"] == "presence" && v["joined"].as_array().is_some_and(|j| !j.is_empty()),
        T,
        "presence",
    );
    assert_eq!(ev["count"], 2, "{ev}");
    drop(b);
    let ev = a.expect_event(
        |v| v["ev"] == "presence" && v["left"].as_array().is_some_and(|l| !l.is_empty()),
        T,
        "presence",
    );
    assert_eq!(ev["count"], 1, "{ev}");
}

#[test]
fn above_1000_present_only_the_count_is_told_at_most_once_a_second() {
    // 1,001 connections from one address: above the default handshake rate.
    let s = TestServer::start(
        Opts::new()
            .env("CHAT_OUTBOX_MAX_FRAMES", "65536")
            .env("CHAT_HANDSHAKES_PER_MIN_PER_ADDRESS", "100000"),
    );
    let mut watcher = s.ws(&s.mint("w", "watcher", "user", 3600));
    watcher.ok(json!({"op":"join","channel":"room:stage"}));
    let _crowd = crowd(&s, "room:stage", 1000, "s");
    // 1,001 present now: changes are told as a count only.
    let is_count = |v: &Value| v["ev"] == "presence" && v.get("joined").is_none() && v.get("left").is_none();
    let first = watcher.expect_event(|v| is_count(v) && v["count"] == 1001, secs(5.0), "count 1001");
    assert_eq!(first["channel"], "room:stage");
    let told = std::time::Instant::now();
    // Five more at once, right after a count was told: told together, a second later.
    let late: Vec<WsClient> = (0..5)
        .map(|i| {
            let mut c = s.ws(&s.mint(&format!("late{i}"), "late", "user", 3600));
            c.ok(json!({"op":"join","channel":"room:stage"}));
            c
        })
        .collect();
    let next = watcher.expect_event(is_count, secs(5.0), "the next count");
    let gap = told.elapsed();
    assert!(gap >= secs(0.8), "two count events {gap:?} apart: {first} then {next}");
    assert_eq!(next["count"], 1006, "{next}");
    drop(late);
}

/// A 60 KB text message.
fn big(i: usize) -> Value {
    json!({"type":"text","text":format!("{i:03}{}", "x".repeat(60_000))})
}

#[test]
fn rejoin_with_since_pages_through_large_messages_exactly_once() {
    let s = TestServer::start(Opts::new().env("CHAT_PUBLISH_RATE", "100000"));
    let u = s.user("writer");
    let mut w = s.ws_user(&u);
    w.ok(json!({"op":"join","channel":"room:heavy"}));
    for i in 0..150 {
        w.ok(json!({"op":"publish","channel":"room:heavy","data":big(i)}));
    }
    let mut r = s.ws(&s.mint("reader", "reader", "user", 3600));
    let j = r.ok(json!({"op":"join","channel":"room:heavy","since":0}));
    assert_eq!(
        (&j["recovered"], &j["more"]),
        (&json!(true), &json!(true)),
        "seq {}",
        j["seq"]
    );
    let mut got = seqs(&j["messages"]);
    assert!(!got.is_empty() && got.len() < 150, "{} in the join reply", got.len());
    let mut pages = 1;
    loop {
        let last = *got.last().unwrap();
        let h = r.ok(json!({"op":"history","channel":"room:heavy","after":last,"limit":200}));
        got.extend(seqs(&h["messages"]));
        pages += 1;
        if h.get("more") != Some(&json!(true)) {
            break;
        }
    }
    assert_eq!(got, (1..=150).collect::<Vec<u64>>(), "every message once, in order");
    assert!(pages >= 9, "a reply carries at most ~1 MiB: {pages} pages");
    // Still connected (never a slow consumer), and live messages follow.
    w.ok(json!({"op":"publish","channel":"room:heavy","data":text_msg("after")}));
    r.expect_event(|v| is_msg_seq("room:heavy", 151)(v), T, "message 151");
    // Scrolling back from the top is bounded the same way.
    let h = r.ok(json!({"op":"history","channel":"room:heavy","before":151,"limit":200}));
    let back = seqs(&h["messages"]);
    assert_eq!(h["more"], true);
    assert_eq!(*back.last().unwrap(), 150, "the page ends next to `before`");
    assert!(back.len() < 30, "{}", back.len());
    assert!(!r.is_closed());
}
