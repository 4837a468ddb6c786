//! Feed namespaces (ticker, sports, loc): publish rights, last value on join, anonymous readers.
mod common;

use common::*;
use serde_json::json;

#[test]
fn ticker_publisher_role_and_last_value() {
    let s = TestServer::start(Opts::new().env("CHAT_ALLOW_ANONYMOUS", "true"));
    let mut p = s.ws(&s.mint("feed-1", "feeder", "publisher", 600));
    let u = s.user("viewer");
    let mut v = s.ws_user(&u);
    let j = v.ok(json!({"op":"join","channel":"ticker:acme"}));
    assert!(
        j.get("presence").is_none_or(|p| p.is_null()),
        "tickers have no presence: {j}"
    );
    assert_eq!(j["messages"], json!([]), "{j}");

    assert_eq!(
        v.err(json!({"op":"publish","channel":"ticker:acme","data":{"price":1.0}})),
        "forbidden"
    );
    v.ping();
    p.ok(json!({"op":"publish","channel":"ticker:acme","data":{"price":10.5}}));
    p.ok(json!({"op":"publish","channel":"ticker:acme","data":{"price":11.25}}));
    let e = v.expect_event(
        |e| e["ev"] == "message" && e["data"]["price"] == 11.25,
        T,
        "latest quote",
    );
    assert_eq!(e["channel"], "ticker:acme");

    // a new subscriber gets the last value only
    let mut v2 = s.ws_user(&u);
    let j = v2.ok(json!({"op":"join","channel":"ticker:acme"}));
    let msgs = j["messages"].as_array().unwrap_or_else(|| panic!("{j}"));
    assert_eq!(msgs.len(), 1, "last value only: {j}");
    assert_eq!(msgs[0]["data"]["price"], 11.25, "{j}");

    // anonymous reader
    let mut anon = WsClient::connect(&s.ws_url(), &[]).expect("anonymous upgrade");
    anon.expect_welcome(secs(8.0));
    let j = anon.ok(json!({"op":"join","channel":"ticker:acme"}));
    assert_eq!(j["messages"][0]["data"]["price"], 11.25, "{j}");
    p.ok(json!({"op":"publish","channel":"ticker:acme","data":{"price":12.0}}));
    anon.expect_event(
        |e| e["ev"] == "message" && e["data"]["price"] == 12.0,
        T,
        "quote at anonymous reader",
    );
}

#[test]
fn sports_events_are_stored_and_replayed() {
    let s = TestServer::start_default();
    let mut p = s.ws(&s.mint("feed-2", "referee", "publisher", 600));
    let u = s.user("fan");
    let mut f = s.ws_user(&u);
    assert_eq!(
        f.err(json!({"op":"publish","channel":"sports:m1","data":{"goal":"x"}})),
        "forbidden"
    );
    let mut seqs_pub = vec![];
    for i in 0..3 {
        let r = p.ok(json!({"op":"publish","channel":"sports:m1","data":{"minute":i,"event":"shot"}}));
        seqs_pub.push(r["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs_pub, vec![1, 2, 3], "sports events get gap-free seqs");
    let j = f.ok(json!({"op":"join","channel":"sports:m1"}));
    let mut got = seqs(&j["messages"]);
    got.dedup();
    assert!(
        got.ends_with(&[1, 2, 3]) || got == vec![1, 2, 3],
        "last value + events: {j}"
    );
    let h = f.ok(json!({"op":"history","channel":"sports:m1"}));
    assert_eq!(seqs(&h["messages"]), vec![1, 2, 3], "{h}");
}

#[test]
fn loc_entity_publishes_only_itself() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let b = s.user("bob");
    let mut ca = s.ws_user(&a);
    let mut cb = s.ws_user(&b);
    let ch = format!("loc:{}", a.id);
    cb.ok(json!({"op":"join","channel":ch}));
    ca.ok(json!({"op":"publish","channel":ch,"data":{"lat":52.52,"lon":13.405,"heading":90}}));
    let e = cb.expect_event(is_msg(&ch), T, "location update");
    assert_eq!(e["data"]["lat"], 52.52);
    assert_eq!(
        cb.err(json!({"op":"publish","channel":ch,"data":{"lat":1.0,"lon":1.0}})),
        "forbidden"
    );
    for bad in [
        json!({"lat":91.0,"lon":0.0}),
        json!({"lat":0.0,"lon":181.0}),
        json!({"lat":"x","lon":0.0}),
        json!({"lon":0.0}),
    ] {
        assert_eq!(
            ca.err(json!({"op":"publish","channel":ch,"data":bad})),
            "bad_request",
            "{bad}"
        );
        ca.ping();
    }
    // a late joiner gets the last value
    let mut cb2 = s.ws_user(&b);
    let j = cb2.ok(json!({"op":"join","channel":ch}));
    assert_eq!(j["messages"].as_array().map(|m| m.len()), Some(1), "{j}");
    assert_eq!(j["messages"][0]["data"]["lon"], 13.405, "{j}");
    // a publisher-role service may publish any entity
    let mut p = s.ws(&s.mint("fleet", "fleet", "publisher", 600));
    p.ok(json!({"op":"publish","channel":ch,"data":{"lat":48.1,"lon":11.6}}));
}
