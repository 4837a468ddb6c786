//! Calls signalled through the server: relayed to every connection of the callee, only
//! between users who share a conversation and are connected; the server keeps each
//! call's state and writes a call record (answered, declined, missed) into the DM or
//! room when the call ends.
mod common;

use common::*;
use serde_json::{json, Value};

/// Two users who share a DM, each connected and joined to it.
fn pair(s: &TestServer) -> (User, User, WsClient, WsClient, String) {
    let (a, b) = (s.user("alice"), s.user("bob"));
    let dm = dm_channel(&a.id, &b.id);
    let (mut ca, mut cb) = (s.ws_user(&a), s.ws_user(&b));
    ca.ok(json!({"op":"join","channel": dm}));
    cb.ok(json!({"op":"join","channel": dm}));
    ca.ok(json!({"op":"publish","channel": dm,"data":text_msg("hi")}));
    (a, b, ca, cb, dm)
}

fn signal(c: &mut WsClient, to: &str, call: &str, data: Value) -> Value {
    c.request(json!({"op":"signal","to":to,"call":call,"data":data}))
}

/// The call record of `call` arriving on `c` in `channel`.
fn record(c: &mut WsClient, channel: &str, call: &str, timeout: std::time::Duration) -> Value {
    c.expect_event(
        |e| e["ev"] == "message" && e["channel"] == channel && e["data"]["type"] == "call" && e["data"]["call"] == call,
        timeout,
        "call record",
    )
}

#[test]
fn an_answered_call_is_relayed_to_every_tab_and_recorded_with_its_duration() {
    let s = TestServer::start_default();
    let (a, b, mut ca, mut cb, dm) = pair(&s);
    let mut cb2 = s.ws_user(&b);
    assert!(signal(&mut ca, &b.id, "c1", json!({"kind":"ring","media":"video"}))
        .get("ok")
        .is_some());
    for tab in [&mut cb, &mut cb2] {
        let ev = tab.expect_event(|e| e["ev"] == "signal", T, "ring on every tab");
        assert_eq!(
            (ev["call"].as_str(), ev["data"]["kind"].as_str()),
            (Some("c1"), Some("ring")),
            "{ev}"
        );
        assert_eq!(ev["from"]["id"], a.id);
    }
    signal(&mut cb, &a.id, "c1", json!({"kind":"accept"}));
    signal(&mut ca, &b.id, "c1", json!({"kind":"offer","sdp":"v=0"}));
    signal(&mut cb, &a.id, "c1", json!({"kind":"answer","sdp":"v=0"}));
    std::thread::sleep(secs(1.0));
    signal(&mut cb, &a.id, "c1", json!({"kind":"hangup"}));
    for c in [&mut ca, &mut cb] {
        let r = record(c, &dm, "c1", T);
        assert_eq!(r["from"]["id"], a.id, "from the caller: {r}");
        assert_eq!(
            (r["data"]["status"].as_str(), r["data"]["media"].as_str()),
            (Some("answered"), Some("video")),
            "{r}"
        );
        let d = r["data"]["duration_ms"].as_i64().unwrap();
        assert!((900..10_000).contains(&d), "duration {d}");
    }
    // The record is stored: history has it, once.
    let h = ca.ok(json!({"op":"history","channel": dm}));
    let calls: Vec<&Value> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["data"]["type"] == "call")
        .collect();
    assert_eq!(calls.len(), 1, "{h}");
}

#[test]
fn declined_and_cancelled_calls_are_recorded() {
    let s = TestServer::start_default();
    let (a, b, mut ca, mut cb, dm) = pair(&s);
    signal(&mut ca, &b.id, "c2", json!({"kind":"ring","media":"audio"}));
    signal(&mut cb, &a.id, "c2", json!({"kind":"decline"}));
    let r = record(&mut ca, &dm, "c2", T);
    assert_eq!(
        (r["data"]["status"].as_str(), r["data"]["duration_ms"].as_i64()),
        (Some("declined"), Some(0)),
        "{r}"
    );
    signal(&mut ca, &b.id, "c3", json!({"kind":"ring"}));
    signal(&mut ca, &b.id, "c3", json!({"kind":"hangup"}));
    let r = record(&mut cb, &dm, "c3", T);
    assert_eq!(r["data"]["status"], "missed", "a call the caller gave up: {r}");
    assert_eq!(r["data"]["media"], "audio", "the default media: {r}");
}

#[test]
fn a_call_ringing_too_long_is_recorded_as_missed() {
    let s = TestServer::start(Opts::new().env("CHAT_RING_TIMEOUT_S", "1"));
    let (_a, b, mut ca, mut cb, dm) = pair(&s);
    signal(&mut ca, &b.id, "c4", json!({"kind":"ring","media":"video"}));
    let r = record(&mut cb, &dm, "c4", secs(6.0));
    assert_eq!(r["data"]["status"], "missed", "{r}");
    // Too late to accept: nothing more is recorded.
    signal(
        &mut cb,
        r["from"]["id"].as_str().unwrap(),
        "c4",
        json!({"kind":"accept"}),
    );
    cb.barrier();
    assert!(cb.buffered_event(|e| e["data"]["call"] == "c4").is_none());
}

#[test]
fn a_room_call_is_recorded_in_the_room() {
    let s = TestServer::start_default();
    let (a, b, c) = (s.user("ann"), s.user("ben"), s.user("cy"));
    let (mut ca, mut cb, mut cc) = (s.ws_user(&a), s.ws_user(&b), s.ws_user(&c));
    for x in [&mut ca, &mut cb, &mut cc] {
        x.ok(json!({"op":"join","channel":"room:team"}));
    }
    for to in [&b.id, &c.id] {
        let r = signal(
            &mut ca,
            to,
            "r1",
            json!({"kind":"ring","media":"audio","channel":"room:team"}),
        );
        assert!(r.get("ok").is_some(), "{r}");
    }
    signal(&mut cb, &a.id, "r1", json!({"kind":"accept"}));
    signal(&mut cc, &a.id, "r1", json!({"kind":"accept"}));
    // The peers connect to each other too (full mesh): relayed without call state.
    assert!(signal(&mut cb, &c.id, "r1", json!({"kind":"offer","sdp":"v=0"}))
        .get("ok")
        .is_some());
    signal(&mut cb, &a.id, "r1", json!({"kind":"hangup"}));
    signal(&mut cc, &a.id, "r1", json!({"kind":"hangup"}));
    let r = record(&mut ca, "room:team", "r1", T);
    assert_eq!(
        (r["data"]["status"].as_str(), r["from"]["id"].as_str()),
        (Some("answered"), Some(a.id.as_str())),
        "{r}"
    );
    // A room neither shares is refused.
    let r = signal(&mut ca, &b.id, "r2", json!({"kind":"ring","channel":"room:elsewhere"}));
    assert_eq!(r["error"]["code"], "not_found", "{r}");
}

#[test]
fn signals_need_a_connected_peer_and_known_kinds() {
    let s = TestServer::start_default();
    let (a, b, mut ca, mut cb, _dm) = pair(&s);
    let r = signal(&mut ca, &b.id, "c5", json!({"kind":"wave"}));
    assert_eq!(r["error"]["code"], "bad_request", "{r}");
    let r = signal(&mut ca, &b.id, "c5", json!({"kind":"ring","media":"hologram"}));
    assert_eq!(r["error"]["code"], "bad_request", "{r}");
    let stranger = s.user("stranger");
    let _cs = s.ws_user(&stranger);
    let r = signal(&mut ca, &stranger.id, "c6", json!({"kind":"ring"}));
    assert_eq!(r["error"]["code"], "not_found", "strangers: {r}");
    cb.close();
    assert!(
        wait_until(secs(5.0), || signal(&mut ca, &b.id, "c7", json!({"kind":"ring"}))
            ["error"]["code"]
            == "not_found"),
        "a user who is not connected"
    );
    let _ = a;
}
