//! Chat behaviour: rooms, DMs, private rooms, presence, idempotent publish.
mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Instant;

#[test]
fn two_users_chat_in_a_room() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let b = s.user("bob");
    let mut ca = s.ws_user(&a);
    let mut cb = s.ws_user(&b);
    ca.ok(json!({"op":"join","channel":"room:lobby"}));
    cb.ok(json!({"op":"join","channel":"room:lobby"}));

    let before = now_ms();
    let ack = ca.ok(json!({"op":"publish","channel":"room:lobby","data":text_msg("hi"),"client_id":"c-1"}));
    let seq = ack["seq"].as_u64().expect("seq");
    assert_eq!(seq, 1, "first message in a room has seq 1: {ack}");
    let ts = ack["ts"].as_i64().expect("ts");
    assert!(
        ts >= before - 5000 && ts <= now_ms() + 5000,
        "ts is ms since epoch: {ts}"
    );

    let eb = cb.expect_event(is_msg("room:lobby"), T, "message at bob");
    let ea = ca.expect_event(is_msg("room:lobby"), T, "own message at alice");
    for e in [&ea, &eb] {
        assert_eq!(e["seq"].as_u64(), Some(seq), "{e}");
        assert_eq!(e["ts"].as_i64(), Some(ts), "{e}");
        assert_eq!(id_string(&e["from"]["id"]).as_deref(), Some(a.id.as_str()), "{e}");
        assert_eq!(e["from"]["name"], "alice", "{e}");
        assert_eq!(e["data"], text_msg("hi"), "{e}");
        assert_eq!(e["client_id"], "c-1", "{e}");
    }

    // bob answers; seqs continue gap-free
    let ack2 = cb.ok(json!({"op":"publish","channel":"room:lobby","data":text_msg("hello alice")}));
    assert_eq!(ack2["seq"].as_u64(), Some(2));
    let e = ca.expect_event(is_msg_seq("room:lobby", 2), T, "bob's reply");
    assert_eq!(e["from"]["name"], "bob");
    cb.expect_event(is_msg_seq("room:lobby", 2), T, "bob's own reply");

    // events for a channel arrive in seq order
    for i in 0..10 {
        cb.ok(json!({"op":"publish","channel":"room:lobby","data":text_msg(&format!("n{i}"))}));
    }
    let mut got = vec![];
    while got.len() < 10 {
        let e = ca.expect_event(is_msg("room:lobby"), T, "burst");
        got.push(e["seq"].as_u64().unwrap());
    }
    assert_eq!(got, (3..=12).collect::<Vec<_>>());
}

#[test]
fn image_and_file_messages_round_trip() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let mut ca = s.ws_user(&a);
    ca.ok(json!({"op":"join","channel":"room:media"}));
    let img = json!({"type":"image","url":"/uploads/0123456789abcdef0123456789abcdef.png",
        "name":"cat.png","size":1234,"mime":"image/png"});
    ca.ok(json!({"op":"publish","channel":"room:media","data":img}));
    // A file message points only into the server's own upload space.
    for url in [
        "https://elsewhere.example/cat.png",
        "/uploads/../jwt_secret",
        "/uploads/abc",
    ] {
        let bad = json!({"type":"image","url":url,"name":"cat.png"});
        assert_eq!(
            ca.err(json!({"op":"publish","channel":"room:media","data":bad})),
            "bad_request",
            "{url}"
        );
    }
    let e = ca.expect_event(is_msg("room:media"), T, "image message");
    assert_eq!(e["data"], img);
    let h = ca.ok(json!({"op":"history","channel":"room:media"}));
    assert_eq!(h["messages"][0]["data"], img);
}

#[test]
fn dm_between_two_users_and_third_user_is_kept_out() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let b = s.user("bob");
    let c = s.user("carol");
    let dm = dm_channel(&a.id, &b.id);
    let mut ca = s.ws_user(&a);
    let mut cb = s.ws_user(&b);
    let mut cc = s.ws_user(&c);
    ca.ok(json!({"op":"join","channel":dm}));
    cb.ok(json!({"op":"join","channel":dm}));
    let seq = ca.ok(json!({"op":"publish","channel":dm,"data":text_msg("secret")}))["seq"]
        .as_u64()
        .unwrap();
    cb.expect_event(is_msg_seq(&dm, seq), T, "dm message");

    // carol: WS join / publish / history / presence are forbidden
    assert_eq!(cc.err(json!({"op":"join","channel":dm})), "forbidden");
    cc.ping();
    assert_eq!(
        cc.err(json!({"op":"publish","channel":dm,"data":text_msg("let me in")})),
        "forbidden"
    );
    assert_eq!(cc.err(json!({"op":"history","channel":dm})), "forbidden");
    assert_eq!(cc.err(json!({"op":"presence","channel":dm})), "forbidden");
    cc.ping();
    // unsorted DM name is not an alias for the two users' DM with carol inside
    let unsorted = format!("dm:{},{}", b.id, a.id);
    if unsorted != dm {
        let code = cc.err(json!({"op":"join","channel":unsorted}));
        assert!(code == "forbidden" || code == "bad_request", "{code}");
    }

    // carol via HTTP
    let enc = dm.replace(':', "%3A").replace(',', "%2C");
    let (st, body) = s.get(&format!("/api/channels/{enc}/history"), Some(&c.token));
    assert_eq!(st, 403, "carol reads DM history over HTTP: {body}");
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    let (st, _) = s.get(&format!("/api/channels/{enc}/presence"), Some(&c.token));
    assert_eq!(st, 403, "carol reads DM presence over HTTP");
    let (st, _) = s.post(
        "/api/publish",
        Some(&c.token),
        json!({"channel":dm,"data":text_msg("x")}),
    );
    assert_eq!(st, 403, "carol publishing into the DM over HTTP");
    // unencoded path works too for the members
    let (st, body) = s.get(&format!("/api/channels/{dm}/history"), Some(&b.token));
    assert_eq!(st, 200, "{body}");
    assert_eq!(seqs(&body["messages"]), vec![seq]);
    let (st, body) = s.get(&format!("/api/channels/{enc}/history"), Some(&a.token));
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["messages"][0]["data"], text_msg("secret"));
    // carol may not even type there: what she cannot see does not exist for her
    assert_eq!(cc.err(json!({"op":"typing","channel":dm})), "not_found");
    // no message leaked to carol: the DM's shard fanned "secret" out before a later
    // marker, so once bob has the marker, a ping on carol's connection is the barrier
    let marker = ca.ok(json!({"op":"publish","channel":dm,"data":text_msg("marker")}))["seq"]
        .as_u64()
        .unwrap();
    cb.expect_event(|v| is_msg_seq(&dm, marker)(v), T, "marker");
    cc.barrier();
    assert!(cc.buffered_event(|v| v["ev"] == "message").is_none());
}

#[test]
fn private_room_membership() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let b = s.user("bob");
    let c = s.user("carol");
    let (st, body) = s.post("/api/rooms", Some(&a.token), json!({"name":"secret","private":true}));
    assert!((200..300).contains(&st), "create private room: {st} {body}");
    let (st, body) = s.post("/api/rooms", Some(&a.token), json!({"name":"secret","private":true}));
    assert_eq!(st, 400, "existing room name: {body}");
    let (st, _) = s.post(
        "/api/rooms",
        Some(&a.token),
        json!({"name":"Bad Name!","private":false}),
    );
    assert_eq!(st, 400, "invalid room name");
    let (st, _) = s.post("/api/rooms", None, json!({"name":"anon","private":false}));
    assert_eq!(st, 401, "create room without a token");

    let mut ca = s.ws_user(&a);
    let mut cb = s.ws_user(&b);
    let mut cc = s.ws_user(&c);
    ca.ok(json!({"op":"join","channel":"room:secret"}));
    ca.ok(json!({"op":"publish","channel":"room:secret","data":text_msg("plans")}));

    // non-members: WS and HTTP refused
    assert_eq!(cb.err(json!({"op":"join","channel":"room:secret"})), "forbidden");
    assert_eq!(
        cc.err(json!({"op":"publish","channel":"room:secret","data":text_msg("x")})),
        "forbidden"
    );
    assert_eq!(cc.err(json!({"op":"history","channel":"room:secret"})), "forbidden");
    cc.ping();
    let (st, _) = s.get("/api/channels/room:secret/history", Some(&c.token));
    assert_eq!(st, 403);
    let (st, _) = s.get("/api/channels/room:secret/presence", Some(&c.token));
    assert_eq!(st, 403);
    // a non-member cannot add members (not even themselves)
    let (st, _) = s.post("/api/rooms/secret/members", Some(&c.token), json!({"user": c.id}));
    assert_eq!(st, 403, "non-member adding to a private room");

    // alice adds bob
    let (st, body) = s.post("/api/rooms/secret/members", Some(&a.token), json!({"user": b.id}));
    assert!((200..300).contains(&st), "add member: {st} {body}");
    let j = cb.ok(json!({"op":"join","channel":"room:secret"}));
    assert_eq!(j["messages"][0]["data"], text_msg("plans"), "{j}");
    cb.ok(json!({"op":"publish","channel":"room:secret","data":text_msg("in!")}));
    ca.expect_event(
        |v| v["ev"] == "message" && v["data"] == text_msg("in!"),
        T,
        "bob's message",
    );
    let (st, _) = s.get("/api/channels/room:secret/history", Some(&b.token));
    assert_eq!(st, 200);

    // carol still out
    assert_eq!(cc.err(json!({"op":"join","channel":"room:secret"})), "forbidden");

    // room lists: bob sees it now, carol does not
    let (st, rooms_b) = s.get("/api/rooms", Some(&b.token));
    assert_eq!(st, 200);
    assert!(rooms_b.to_string().contains("secret"), "bob's rooms: {rooms_b}");
    let (st, rooms_c) = s.get("/api/rooms", Some(&c.token));
    assert_eq!(st, 200);
    assert!(
        !rooms_c.to_string().contains("secret"),
        "carol must not see the private room: {rooms_c}"
    );
}

fn ids_of(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("expected a list: {list}"))
        .iter()
        .map(|m| id_string(&m["id"]).unwrap())
        .collect()
}

#[test]
fn presence_events_on_join_and_leave() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let b = s.user("bob");
    let mut ca = s.ws_user(&a);
    let mut cb = s.ws_user(&b);
    ca.ok(json!({"op":"join","channel":"room:p"}));
    let j = cb.ok(json!({"op":"join","channel":"room:p"}));
    let mut members = ids_of(&j["presence"]);
    members.sort();
    let mut want = vec![a.id.clone(), b.id.clone()];
    want.sort();
    assert_eq!(members, want, "presence in join reply: {j}");

    // (alice's own join may be coalesced into the same event)
    let ev = ca.expect_event(
        |v| v["ev"] == "presence" && v["channel"] == "room:p" && ids_of(&v["joined"]).contains(&b.id),
        T,
        "presence joined",
    );
    let bob = ev["joined"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| id_string(&m["id"]).as_deref() == Some(b.id.as_str()))
        .unwrap();
    assert_eq!(bob["name"], "bob", "{ev}");
    assert!(ev["left"].is_array(), "{ev}");
    assert!(!ids_of(&ev["left"]).contains(&b.id), "{ev}");

    // second connection of bob: bob is already present, nobody new joined
    let mut cb2 = s.ws_user(&b);
    cb2.ok(json!({"op":"join","channel":"room:p"}));
    // leaving with one connection: bob still present; leaving with the last: left event
    cb2.ok(json!({"op":"leave","channel":"room:p"}));
    cb.ok(json!({"op":"leave","channel":"room:p"}));
    let ev = ca.expect_event(
        |v| v["ev"] == "presence" && v["channel"] == "room:p" && ids_of(&v["left"]).contains(&b.id),
        T,
        "presence left",
    );
    assert!(!ids_of(&ev["left"]).contains(&a.id), "{ev}");

    // disconnecting (not leaving) also produces a left event
    let mut cb3 = s.ws_user(&b);
    cb3.ok(json!({"op":"join","channel":"room:p"}));
    ca.expect_event(
        |v| v["ev"] == "presence" && ids_of(&v["joined"]).contains(&b.id),
        T,
        "rejoin",
    );
    drop(cb3);
    ca.expect_event(
        |v| v["ev"] == "presence" && ids_of(&v["left"]).contains(&b.id),
        T,
        "left on disconnect",
    );
}

#[test]
fn presence_events_are_coalesced() {
    let s = TestServer::start_default();
    let a = s.user("watcher");
    let mut ca = s.ws_user(&a);
    ca.ok(json!({"op":"join","channel":"room:storm"}));
    const N: usize = 12;
    let users: Vec<User> = (0..N).map(|i| s.user(&format!("u{i}"))).collect();
    let mut conns: Vec<WsClient> = users.iter().map(|u| s.ws_user(u)).collect();

    let start = Instant::now();
    let ids: Vec<i64> = conns
        .iter_mut()
        .map(|c| c.send_request(json!({"op":"join","channel":"room:storm"})))
        .collect();
    for (c, id) in conns.iter_mut().zip(ids) {
        let r = c.wait_reply(id, T);
        assert!(r.get("ok").is_some(), "{r}");
    }
    // collect presence events at the watcher until every user was announced
    let want: std::collections::HashSet<String> = users.iter().map(|u| u.id.clone()).collect();
    let mut seen = std::collections::HashSet::new();
    let mut n_events = 0;
    while !want.is_subset(&seen) {
        let ev = ca
            .next_event(|v| v["ev"] == "presence", T)
            .unwrap_or_else(|| panic!("not all joins announced: seen {seen:?} of {want:?}"));
        n_events += 1;
        for id in ids_of(&ev["joined"]) {
            seen.insert(id);
        }
    }
    let span_ms = start.elapsed().as_millis() as usize;
    // at most one presence event per channel per 100 ms per connection (+1 for window edges)
    let allowed = span_ms / 100 + 2;
    assert!(
        n_events <= allowed,
        "{N} joins produced {n_events} presence events in {span_ms} ms; expected coalescing (<= {allowed})"
    );
}

#[test]
fn idempotent_publish_same_connection() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let b = s.user("bob");
    let mut ca = s.ws_user(&a);
    let mut cb = s.ws_user(&b);
    ca.ok(json!({"op":"join","channel":"room:idem"}));
    cb.ok(json!({"op":"join","channel":"room:idem"}));
    let op = json!({"op":"publish","channel":"room:idem","data":text_msg("once"),"client_id":"cid-1"});
    let r1 = ca.ok(op.clone());
    let r2 = ca.ok(op.clone());
    assert_eq!(r1["seq"], r2["seq"], "resend returns the original seq");
    assert!(r1.get("duplicate").is_none() || r1["duplicate"] == false, "{r1}");
    assert_eq!(r2["duplicate"], true, "{r2}");
    check_delivered_once(&mut ca, &mut cb, "room:idem", r1["seq"].as_u64().unwrap(), "cid-1");
}

#[test]
fn idempotent_publish_across_connections_of_same_user() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let b = s.user("bob");
    let mut ca1 = s.ws_user(&a);
    let mut ca2 = s.ws_user(&a);
    let mut cb = s.ws_user(&b);
    ca1.ok(json!({"op":"join","channel":"room:idem2"}));
    cb.ok(json!({"op":"join","channel":"room:idem2"}));
    let op = json!({"op":"publish","channel":"room:idem2","data":text_msg("once"),"client_id":"cid-x"});
    let r1 = ca1.ok(op.clone());
    // second connection resends (e.g. after a reconnect); it has not even joined
    let r2 = ca2.ok(op.clone());
    assert_eq!(r1["seq"], r2["seq"], "{r1} vs {r2}");
    assert_eq!(r2["duplicate"], true, "{r2}");
    // a different user with the same client_id is a different message
    let r3 = cb.ok(json!({"op":"publish","channel":"room:idem2","data":text_msg("mine"),"client_id":"cid-x"}));
    assert_ne!(r3["seq"], r1["seq"], "client_id is scoped per user: {r3}");
    assert!(r3.get("duplicate").is_none() || r3["duplicate"] == false, "{r3}");
    let seq = r1["seq"].as_u64().unwrap();
    // bob's own message r3 is the marker: it was published after both copies were
    // acknowledged, and one channel's messages reach bob in commit order, so a second
    // delivery of `seq` would arrive before it
    let n = cb
        .events_until(
            is_msg_seq("room:idem2", r3["seq"].as_u64().unwrap()),
            T,
            "bob's own message",
        )
        .iter()
        .filter(|v| v["ev"] == "message" && v["seq"].as_u64() == Some(seq))
        .count();
    assert_eq!(n, 1, "bob received the idempotent message {n} times");
    let h = cb.ok(json!({"op":"history","channel":"room:idem2"}));
    assert_eq!(seqs(&h["messages"]), vec![1, 2], "{h}");
    assert_eq!(
        h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["data"] == text_msg("once"))
            .count(),
        1
    );

    // the HTTP API honours the same client_id space
    let (st, body) = s.post(
        "/api/publish",
        Some(&a.token),
        json!({"channel":"room:idem2","data":text_msg("once"),"client_id":"cid-x"}),
    );
    assert!((200..300).contains(&st), "{st} {body}");
    assert_eq!(
        body["seq"].as_u64(),
        Some(seq),
        "HTTP resend returns the original seq: {body}"
    );
}

fn check_delivered_once(ca: &mut WsClient, cb: &mut WsClient, ch: &str, seq: u64, cid: &str) {
    // a marker published afterwards: everything before it in the channel has been delivered
    let marker = ca.ok(json!({"op":"publish","channel":ch,"data":text_msg("marker")}))["seq"]
        .as_u64()
        .unwrap();
    assert_eq!(marker, seq + 1, "the duplicate must not consume a seq");
    for c in [&mut *cb, &mut *ca] {
        c.expect_event(is_msg_seq(ch, marker), T, "marker");
        let dups = c
            .events
            .iter()
            .filter(|v| v["ev"] == "message" && v["client_id"] == cid)
            .count();
        // the first delivery may have been consumed already; buffered copies + consumed must be 1
        assert_eq!(dups, 1, "{}: message {seq} delivered {dups} times", c.label);
    }
    let h = cb_history(ca, ch);
    assert_eq!(h, vec![seq, marker]);
}

fn cb_history(c: &mut WsClient, ch: &str) -> Vec<u64> {
    let h = c.ok(json!({"op":"history","channel":ch}));
    seqs(&h["messages"])
}

#[test]
fn concurrent_resends_with_same_client_id_store_once() {
    // Both copies are in flight before either is acknowledged (e.g. a reconnecting client
    // resending on its new connection while the old one is still open).
    let s = TestServer::start_default();
    let a = s.user("alice");
    let b = s.user("bob");
    let mut ca1 = s.ws_user(&a);
    let mut ca2 = s.ws_user(&a);
    let mut cb = s.ws_user(&b);
    cb.ok(json!({"op":"join","channel":"room:race-idem"}));
    const K: usize = 30;
    let mut pairs = vec![];
    for k in 0..K {
        let op = json!({"op":"publish","channel":"room:race-idem","data":text_msg(&format!("k{k}")),"client_id":format!("dup-{k}")});
        let i1 = ca1.send_request(op.clone());
        let i2 = ca2.send_request(op);
        pairs.push((i1, i2));
    }
    let mut seqs_seen = std::collections::BTreeSet::new();
    for (k, (i1, i2)) in pairs.into_iter().enumerate() {
        let r1 = ca1.wait_reply(i1, T);
        let r2 = ca2.wait_reply(i2, T);
        let (o1, o2) = (&r1["ok"], &r2["ok"]);
        assert!(o1.is_object() && o2.is_object(), "k{k}: {r1} / {r2}");
        assert_eq!(
            o1["seq"], o2["seq"],
            "k{k}: both copies must get the same seq: {r1} / {r2}"
        );
        let dups = [o1, o2].iter().filter(|o| o["duplicate"] == true).count();
        assert_eq!(
            dups, 1,
            "k{k}: exactly one of the two acks is the duplicate: {r1} / {r2}"
        );
        seqs_seen.insert(o1["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs_seen.len(), K);
    let top = *seqs_seen.iter().max().unwrap();
    assert_eq!(top, K as u64, "one seq per client_id, gap-free");
    let mut got = vec![];
    while got.len() < K {
        let e = cb.expect_event(is_msg("room:race-idem"), T, "message");
        got.push(e["seq"].as_u64().unwrap());
    }
    let marker = cb.ok(json!({"op":"publish","channel":"room:race-idem","data":text_msg("end")}))["seq"]
        .as_u64()
        .unwrap();
    let rest: Vec<u64> = {
        let mut v = vec![];
        loop {
            let e = cb.expect_event(is_msg("room:race-idem"), T, "until marker");
            let sq = e["seq"].as_u64().unwrap();
            if sq == marker {
                break v;
            }
            v.push(sq);
        }
    };
    assert!(rest.is_empty(), "bob got extra copies: {rest:?}");
    assert_eq!(got, (1..=K as u64).collect::<Vec<_>>());
    let h = cb.ok(json!({"op":"history","channel":"room:race-idem","limit":200}));
    assert_eq!(seqs(&h["messages"]), (1..=marker).collect::<Vec<_>>());
}
