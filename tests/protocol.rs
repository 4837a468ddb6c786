//! Wire protocol: welcome, every op of the table, every reachable error code.
mod common;

use common::*;
use serde_json::{json, Value};

fn error_code(v: &Value) -> Option<&str> {
    v["error"]["code"].as_str()
}

#[test]
fn welcome_is_first_frame_with_session_user_heartbeat_limits() {
    let s = TestServer::start_default();
    let alice = s.user("alice");
    let c = s.ws_user(&alice);
    let w = c.welcome.clone().unwrap();
    assert_eq!(w["ev"], "welcome");
    assert!(
        w["session"].is_string() && !w["session"].as_str().unwrap().is_empty(),
        "session: {w}"
    );
    assert_eq!(id_string(&w["user"]["id"]).as_deref(), Some(alice.id.as_str()), "{w}");
    assert_eq!(w["user"]["name"], "alice", "{w}");
    assert!(w["heartbeat_s"].is_number(), "heartbeat_s: {w}");
    assert_eq!(w["heartbeat_s"].as_f64(), Some(25.0), "default heartbeat is 25 s: {w}");
    assert_eq!(w["limits"]["max_message_bytes"].as_u64(), Some(65536), "{w}");

    // two connections get distinct sessions
    let c2 = s.ws_user(&alice);
    assert_ne!(c2.welcome.as_ref().unwrap()["session"], w["session"]);
}

#[test]
fn welcome_reflects_settings() {
    let s = TestServer::start(
        Opts::new()
            .env("CHAT_MAX_MESSAGE_BYTES", "2048")
            .env("CHAT_HEARTBEAT_S", "7"),
    );
    let t = s.mint("100", "minty", "user", 600);
    let c = s.ws(&t);
    let w = c.welcome.clone().unwrap();
    assert_eq!(w["limits"]["max_message_bytes"].as_u64(), Some(2048), "{w}");
    assert_eq!(w["heartbeat_s"].as_f64(), Some(7.0), "{w}");
    // a minted token for a user the server never saw is fine
    assert_eq!(id_string(&w["user"]["id"]).as_deref(), Some("100"));
    assert_eq!(w["user"]["name"], "minty");
}

#[test]
fn ping_returns_ts_and_replies_echo_ids() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let mut c = s.ws_user(&a);
    let before = now_ms();
    let r = c.ping();
    let ts = r["ts"].as_i64().expect("ping ts is an integer (ms)");
    assert!(
        ts >= before - 5_000 && ts <= now_ms() + 5_000,
        "ts {ts} is not ms since epoch near now"
    );

    // arbitrary integer ids are echoed, one reply each, in any order
    let ids = [5i64, 1_000_000, 3];
    for id in ids {
        c.send_json(&json!({"id": id, "op": "ping"}));
    }
    for id in ids {
        let r = c.wait_reply(id, T);
        assert!(r["ok"]["ts"].is_number(), "{r}");
    }
    // no extra replies
    c.barrier();
    assert!(c.stash.is_empty(), "unexpected extra replies: {:?}", c.stash);
}

#[test]
fn malformed_frames_get_bad_request_and_connection_survives() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let mut c = s.ws_user(&a);

    // not JSON at all: bad_request without id
    c.send_text("this is not json").unwrap();
    let e = c
        .next_frame(|v| v.get("error").is_some(), T)
        .expect("error reply to non-JSON frame");
    assert_eq!(error_code(&e), Some("bad_request"), "{e}");
    c.ping();

    // JSON but not an object
    c.send_text("[1,2,3]").unwrap();
    let e = c
        .next_frame(|v| v.get("error").is_some(), T)
        .expect("error reply to array frame");
    assert_eq!(error_code(&e), Some("bad_request"), "{e}");
    c.ping();

    // truncated JSON
    c.send_text(r#"{"id":9,"op":"pi"#).unwrap();
    let e = c
        .next_frame(|v| v.get("error").is_some(), T)
        .expect("error reply to truncated frame");
    assert_eq!(error_code(&e), Some("bad_request"), "{e}");
    c.ping();

    // unknown op, id readable -> echoed
    let r = c.request(json!({"op":"frobnicate","channel":"room:x"}));
    assert_eq!(error_code(&r), Some("bad_request"), "{r}");
    c.ping();

    // missing op
    let r = c.request(json!({"channel":"room:x"}));
    assert_eq!(error_code(&r), Some("bad_request"), "{r}");
    c.ping();
}

#[test]
fn wrong_types_get_bad_request_with_id() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let mut c = s.ws_user(&a);
    c.ok(json!({"op":"join","channel":"room:types"}));

    let cases = vec![
        json!({"op":"join","channel":42}),
        json!({"op":"join"}),
        json!({"op":"join","channel":"room:types","since":"ten"}),
        json!({"op":"publish","channel":123,"data":{"type":"text","text":"x"}}),
        json!({"op":"publish","channel":"room:types"}),
        json!({"op":"publish","channel":"room:types","data":{"type":"text","text":"x"},"client_id":17}),
        json!({"op":"history","channel":"room:types","limit":"ten"}),
        json!({"op":"history","channel":"room:types","before":"x"}),
        json!({"op":"read","channel":"room:types","seq":"1"}),
        json!({"op":"read","channel":"room:types"}),
        json!({"op":"edit","channel":"room:types","seq":"1","data":{}}),
        json!({"op":"delete","channel":"room:types"}),
        json!({"op":"signal","to":5,"call":"c1","data":{}}),
        json!({"op":"leave","channel":true}),
        json!({"op":"typing","channel":null}),
    ];
    for op in cases {
        let r = c.request(op.clone());
        assert_eq!(error_code(&r), Some("bad_request"), "op {op} -> {r}");
        assert!(r["id"].is_number(), "reply must echo the id: {r}");
        c.ping();
    }

    // id of the wrong type: still bad_request, connection survives
    c.send_text(r#"{"id":"seven","op":"ping"}"#).unwrap();
    let e = c
        .next_frame(|v| v.get("error").is_some() || v.get("ok").is_some(), T)
        .expect("a reply");
    assert_eq!(error_code(&e), Some("bad_request"), "{e}");
    c.ping();
}

#[test]
fn unknown_namespace_and_bad_channel_names() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let mut c = s.ws_user(&a);
    for ch in ["foo:bar", "nonamespace", "room:", "room:UPPER CASE!", ""] {
        let code = c.err(json!({"op":"join","channel":ch}));
        assert!(
            code == "bad_request" || code == "not_found",
            "join {ch:?}: expected bad_request (or not_found), got {code}"
        );
        c.ping();
    }
    let code = c.err(json!({"op":"publish","channel":"foo:bar","data":{"type":"text","text":"x"}}));
    assert!(
        code == "bad_request" || code == "not_found",
        "publish foo:bar -> {code}"
    );
    c.ping();
}

#[test]
fn publish_data_must_be_object() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let mut c = s.ws_user(&a);
    c.ok(json!({"op":"join","channel":"room:data"}));
    for data in [json!("hi"), json!([1, 2]), json!(3), json!(null), json!(true)] {
        let code = c.err(json!({"op":"publish","channel":"room:data","data":data}));
        assert_eq!(code, "bad_request", "data {data}");
        c.ping();
    }
    // nothing was stored
    let h = c.ok(json!({"op":"history","channel":"room:data"}));
    assert_eq!(h["messages"].as_array().map(|a| a.len()), Some(0), "{h}");
}

#[test]
fn too_large_data_and_oversized_frame() {
    let s = TestServer::start(Opts::new().env("CHAT_MAX_MESSAGE_BYTES", "1024"));
    let a = s.user("alice");
    let mut c = s.ws_user(&a);
    assert_eq!(
        c.welcome.as_ref().unwrap()["limits"]["max_message_bytes"].as_u64(),
        Some(1024)
    );
    c.ok(json!({"op":"join","channel":"room:big"}));

    // data just under the limit is fine
    let ok = c.ok(json!({"op":"publish","channel":"room:big","data":{"type":"text","text":"y".repeat(900)}}));
    assert_eq!(ok["seq"].as_u64(), Some(1));

    // the limit is on the serialized `data` in bytes: exactly 1024 passes, 1025 does not
    let exact = |n: usize| -> Value {
        let base = json!({"type":"text","text":""}).to_string().len();
        let d = json!({"type":"text","text":"e".repeat(n - base)});
        assert_eq!(d.to_string().len(), n);
        d
    };
    let ok = c.ok(json!({"op":"publish","channel":"room:big","data":exact(1024)}));
    assert_eq!(
        ok["seq"].as_u64(),
        Some(2),
        "data of exactly max_message_bytes is allowed"
    );
    assert_eq!(
        c.err(json!({"op":"publish","channel":"room:big","data":exact(1025)})),
        "too_large"
    );
    // bytes, not characters
    assert_eq!(
        c.err(json!({"op":"publish","channel":"room:big","data":text_msg(&"é".repeat(600))})),
        "too_large"
    );
    c.ping();

    // data over the limit but frame under limit + 4 KiB -> too_large reply, connection stays
    let code = c.err(json!({"op":"publish","channel":"room:big","data":{"type":"text","text":"x".repeat(2000)}}));
    assert_eq!(code, "too_large");
    c.ping();
    let code = c.err(json!({"op":"edit","channel":"room:big","seq":1,"data":{"type":"text","text":"x".repeat(2000)}}));
    assert_eq!(code, "too_large", "edit with oversized data");
    c.ping();
    let h = c.ok(json!({"op":"history","channel":"room:big"}));
    assert_eq!(seqs(&h["messages"]), vec![1, 2], "oversized publish must not be stored");

    // a frame above max + 4 KiB closes the connection with 1009
    let huge = json!({"id":999,"op":"publish","channel":"room:big","data":{"type":"text","text":"z".repeat(20_000)}});
    let _ = c.send_text(&huge.to_string());
    let code = c.expect_close(T);
    assert_eq!(code, Some(1009), "frame too big must close with 1009");
}

#[test]
fn client_id_longer_than_64_is_rejected() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let mut c = s.ws_user(&a);
    c.ok(json!({"op":"join","channel":"room:cid"}));
    let code = c.err(json!({"op":"publish","channel":"room:cid","data":text_msg("x"),"client_id":"k".repeat(65)}));
    assert_eq!(code, "bad_request");
    c.ping();
    let ok = c.ok(json!({"op":"publish","channel":"room:cid","data":text_msg("x"),"client_id":"k".repeat(64)}));
    assert_eq!(ok["seq"].as_u64(), Some(1), "{ok}");
    assert!(ok.get("duplicate").is_none() || ok["duplicate"] == false, "{ok}");
}

#[test]
fn publish_rate_limit() {
    let s = TestServer::start(Opts::new().env("CHAT_PUBLISH_RATE", "5"));
    let a = s.user("alice");
    let mut c = s.ws_user(&a);
    c.ok(json!({"op":"join","channel":"room:rl"}));
    let ids: Vec<i64> = (0..50)
        .map(|i| c.send_request(json!({"op":"publish","channel":"room:rl","data":text_msg(&format!("m{i}"))})))
        .collect();
    let mut ok = 0;
    let mut limited = 0;
    for id in ids {
        let r = c.wait_reply(id, T);
        if r.get("ok").is_some() {
            ok += 1;
        } else {
            assert_eq!(error_code(&r), Some("rate_limited"), "{r}");
            limited += 1;
        }
    }
    assert!(ok >= 1, "some publishes must pass (burst)");
    assert!(
        limited >= 1,
        "50 fast publishes at rate 5/s must hit rate_limited (ok={ok})"
    );
    assert!(ok <= 30, "rate 5/s burst 2x: far too many accepted ({ok})");
    // connection still usable for non-publish ops
    c.ping();
    let h = c.ok(json!({"op":"history","channel":"room:rl","limit":200}));
    assert_eq!(
        h["messages"].as_array().unwrap().len(),
        ok,
        "exactly the accepted publishes are stored"
    );
    // the bucket refills: within a few seconds a publish is accepted again
    assert!(
        wait_until(secs(5.0), || c
            .request(json!({"op":"publish","channel":"room:rl","data":text_msg("later")}))
            .get("ok")
            .is_some()),
        "publishing must work again after the bucket refills"
    );
}

#[test]
fn join_leave_and_join_reply_fields() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let b = s.user("bob");
    let mut ca = s.ws_user(&a);
    let mut cb = s.ws_user(&b);
    let j = ca.ok(json!({"op":"join","channel":"room:jl"}));
    assert_eq!(j["channel"], "room:jl", "{j}");
    assert_eq!(j["seq"].as_u64(), Some(0), "empty room top seq is 0: {j}");
    assert!(j.get("epoch").is_some(), "join reply has epoch: {j}");
    assert!(j.get("recovered").is_none(), "recovered only when since given: {j}");
    assert_eq!(j["messages"], json!([]), "{j}");
    let members = j["presence"]
        .as_array()
        .unwrap_or_else(|| panic!("room join has presence: {j}"));
    assert!(
        members
            .iter()
            .any(|m| id_string(&m["id"]).as_deref() == Some(a.id.as_str())),
        "{j}"
    );

    cb.ok(json!({"op":"join","channel":"room:jl"}));
    let p1 = cb.ok(json!({"op":"publish","channel":"room:jl","data":text_msg("one")}));
    ca.expect_event(
        is_msg_seq("room:jl", p1["seq"].as_u64().unwrap()),
        T,
        "message before leave",
    );

    assert_eq!(ca.ok(json!({"op":"leave","channel":"room:jl"})), json!({}));
    cb.ok(json!({"op":"publish","channel":"room:jl","data":text_msg("after leave")}));
    // a later message on another channel arrives; the left channel stays silent (checked
    // behind a barrier through room:jl's shard, which handled the publish before it)
    ca.ok(json!({"op":"join","channel":"room:other"}));
    cb.ok(json!({"op":"join","channel":"room:other"}));
    cb.ok(json!({"op":"publish","channel":"room:other","data":text_msg("elsewhere")}));
    ca.expect_event(is_msg("room:other"), T, "message in room:other");
    ca.hub_barrier("room:jl");
    let stray = ca.buffered_event(is_msg("room:jl"));
    assert!(stray.is_none(), "received a message after leave: {stray:?}");

    // rejoin returns the history with the message sent while away
    let j = ca.ok(json!({"op":"join","channel":"room:jl"}));
    assert_eq!(seqs(&j["messages"]), vec![1, 2], "{j}");
    assert_eq!(j["seq"].as_u64(), Some(2));
}

#[test]
fn history_before_after_limit() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let mut c = s.ws_user(&a);
    c.ok(json!({"op":"join","channel":"room:hist"}));
    for i in 1..=60u64 {
        let r = c.ok(json!({"op":"publish","channel":"room:hist","data":text_msg(&format!("m{i}"))}));
        assert_eq!(r["seq"].as_u64(), Some(i), "seq is gap-free from 1: {r}");
        assert!(r["ts"].is_number());
    }
    let h = |c: &mut WsClient, extra: Value| -> Vec<u64> {
        let mut op = json!({"op":"history","channel":"room:hist"});
        for (k, v) in extra.as_object().unwrap() {
            op[k] = v.clone();
        }
        let r = c.ok(op);
        seqs(&r["messages"])
    };
    assert_eq!(
        h(&mut c, json!({})),
        (11..=60).collect::<Vec<_>>(),
        "default limit 50, latest, ascending"
    );
    assert_eq!(h(&mut c, json!({"limit":3})), vec![58, 59, 60]);
    assert_eq!(h(&mut c, json!({"before":5})), vec![1, 2, 3, 4]);
    assert_eq!(h(&mut c, json!({"before":20,"limit":3})), vec![17, 18, 19]);
    assert_eq!(h(&mut c, json!({"after":2,"limit":3})), vec![3, 4, 5]);
    assert_eq!(h(&mut c, json!({"after":55})), vec![56, 57, 58, 59, 60]);
    assert_eq!(h(&mut c, json!({"after":60})), Vec::<u64>::new());
    assert_eq!(h(&mut c, json!({"limit":200})).len(), 60);

    let r = c.ok(json!({"op":"history","channel":"room:hist","limit":1}));
    let m = &r["messages"][0];
    assert_eq!(m["data"], text_msg("m60"), "{m}");
    assert_eq!(id_string(&m["from"]["id"]).as_deref(), Some(a.id.as_str()), "{m}");
    assert!(m["ts"].is_number(), "{m}");

    // join with a limit
    let j = c.ok(json!({"op":"join","channel":"room:hist","limit":5}));
    assert_eq!(seqs(&j["messages"]), vec![56, 57, 58, 59, 60]);
    let j = c.ok(json!({"op":"join","channel":"room:hist"}));
    assert_eq!(seqs(&j["messages"]).len(), 50, "join default 50");
}

#[test]
fn presence_op_lists_members_with_conns() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let b = s.user("bob");
    let mut a1 = s.ws_user(&a);
    let mut a2 = s.ws_user(&a);
    let mut b1 = s.ws_user(&b);
    for c in [&mut a1, &mut a2, &mut b1] {
        c.ok(json!({"op":"join","channel":"room:pres"}));
    }
    let p = b1.ok(json!({"op":"presence","channel":"room:pres"}));
    let members = p["members"].as_array().unwrap_or_else(|| panic!("{p}"));
    assert_eq!(members.len(), 2, "{p}");
    let find = |id: &str| {
        members
            .iter()
            .find(|m| id_string(&m["id"]).as_deref() == Some(id))
            .cloned()
    };
    let ma = find(&a.id).unwrap_or_else(|| panic!("alice missing: {p}"));
    assert_eq!(ma["name"], "alice");
    assert_eq!(ma["conns"].as_u64(), Some(2), "{p}");
    let mb = find(&b.id).unwrap_or_else(|| panic!("bob missing: {p}"));
    assert_eq!(mb["conns"].as_u64(), Some(1), "{p}");

    // one of alice's connections leaves: still present with 1 conn
    a2.ok(json!({"op":"leave","channel":"room:pres"}));
    let p = b1.ok(json!({"op":"presence","channel":"room:pres"}));
    let ma = p["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| id_string(&m["id"]).as_deref() == Some(a.id.as_str()))
        .cloned();
    assert_eq!(ma.map(|m| m["conns"].clone()), Some(json!(1)), "{p}");

    // alice's other connection disconnects: she is gone
    drop(a1);
    assert!(
        wait_until(T, || {
            let p = b1.ok(json!({"op":"presence","channel":"room:pres"}));
            p["members"].as_array().unwrap().len() == 1
        }),
        "alice must disappear from presence after her last connection closed"
    );
}

#[test]
fn typing_is_relayed_to_others() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let b = s.user("bob");
    let mut ca = s.ws_user(&a);
    let mut cb = s.ws_user(&b);
    ca.ok(json!({"op":"join","channel":"room:typ"}));
    cb.ok(json!({"op":"join","channel":"room:typ"}));
    assert_eq!(ca.ok(json!({"op":"typing","channel":"room:typ"})), json!({}));
    let ev = cb.expect_event(|v| v["ev"] == "typing", T, "typing");
    assert_eq!(ev["channel"], "room:typ");
    assert_eq!(id_string(&ev["user"]["id"]).as_deref(), Some(a.id.as_str()), "{ev}");
    assert_eq!(ev["user"]["name"], "alice");
    // nothing stored
    let h = cb.ok(json!({"op":"history","channel":"room:typ"}));
    assert_eq!(h["messages"], json!([]));
}

#[test]
fn read_markers_and_channels_unread() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let b = s.user("bob");
    // alice creates a public room (she is a member)
    let (st, body) = s.post("/api/rooms", Some(&a.token), json!({"name":"general","private":false}));
    assert!((200..300).contains(&st), "create room: {st} {body}");
    let (st, body) = s.post("/api/rooms", Some(&b.token), json!({"name":"bobsroom","private":false}));
    assert!((200..300).contains(&st), "create room: {st} {body}");
    let mut ca = s.ws_user(&a);
    let mut cb = s.ws_user(&b);
    ca.ok(json!({"op":"join","channel":"room:general"}));
    cb.ok(json!({"op":"join","channel":"room:general"}));
    for i in 0..3 {
        cb.ok(json!({"op":"publish","channel":"room:general","data":text_msg(&format!("g{i}"))}));
    }
    let dm = dm_channel(&a.id, &b.id);
    cb.ok(json!({"op":"join","channel":dm}));
    cb.ok(json!({"op":"publish","channel":dm,"data":text_msg("psst")}));

    let find = |list: &Value, ch: &str| -> Option<Value> {
        list["channels"]
            .as_array()
            .unwrap_or_else(|| panic!("channels: {list}"))
            .iter()
            .find(|c| c["channel"] == ch)
            .cloned()
    };
    let l = ca.ok(json!({"op":"channels"}));
    let g = find(&l, "room:general").unwrap_or_else(|| panic!("room:general missing in {l}"));
    assert_eq!(g["seq"].as_u64(), Some(3), "{g}");
    assert_eq!(g["unread"].as_u64(), Some(3), "{g}");
    assert!(g.get("last").is_some(), "channels entries carry `last`: {g}");
    let d = find(&l, &dm).unwrap_or_else(|| panic!("{dm} missing in {l}"));
    assert_eq!(d["unread"].as_u64(), Some(1), "{d}");
    assert!(find(&l, "room:bobsroom").is_none(), "bob's room is not alice's: {l}");

    assert_eq!(ca.ok(json!({"op":"read","channel":"room:general","seq":2})), json!({}));
    let l = ca.ok(json!({"op":"channels"}));
    assert_eq!(find(&l, "room:general").unwrap()["unread"].as_u64(), Some(1), "{l}");
    ca.ok(json!({"op":"read","channel":"room:general","seq":3}));
    ca.ok(json!({"op":"read","channel":dm,"seq":1}));
    let l = ca.ok(json!({"op":"channels"}));
    assert_eq!(find(&l, "room:general").unwrap()["unread"].as_u64(), Some(0), "{l}");
    assert_eq!(find(&l, &dm).unwrap()["unread"].as_u64(), Some(0), "{l}");

    // read markers are per user, and survive a new connection
    drop(ca);
    let mut ca2 = s.ws_user(&a);
    let l = ca2.ok(json!({"op":"channels"}));
    assert_eq!(find(&l, "room:general").unwrap()["unread"].as_u64(), Some(0), "{l}");
    cb.ok(json!({"op":"publish","channel":"room:general","data":text_msg("g3")}));
    let l = ca2.ok(json!({"op":"channels"}));
    assert_eq!(find(&l, "room:general").unwrap()["unread"].as_u64(), Some(1), "{l}");
}

#[test]
fn edit_own_message_only() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let b = s.user("bob");
    let mut ca = s.ws_user(&a);
    let mut cb = s.ws_user(&b);
    ca.ok(json!({"op":"join","channel":"room:ed"}));
    cb.ok(json!({"op":"join","channel":"room:ed"}));
    let seq = ca.ok(json!({"op":"publish","channel":"room:ed","data":text_msg("tpyo")}))["seq"]
        .as_u64()
        .unwrap();
    cb.expect_event(is_msg_seq("room:ed", seq), T, "message");

    assert_eq!(
        ca.ok(json!({"op":"edit","channel":"room:ed","seq":seq,"data":text_msg("typo")})),
        json!({})
    );
    for c in [&mut cb, &mut ca] {
        let ev = c.expect_event(|v| v["ev"] == "edit", T, "edit");
        assert_eq!(ev["channel"], "room:ed", "{ev}");
        assert_eq!(ev["seq"].as_u64(), Some(seq), "{ev}");
        assert_eq!(ev["data"], text_msg("typo"), "{ev}");
    }
    let code = cb.err(json!({"op":"edit","channel":"room:ed","seq":seq,"data":text_msg("hacked")}));
    assert_eq!(code, "forbidden");
    cb.ping();
    let code = ca.err(json!({"op":"edit","channel":"room:ed","seq":999,"data":text_msg("nope")}));
    assert_eq!(code, "not_found");
    let h = cb.ok(json!({"op":"history","channel":"room:ed"}));
    assert_eq!(
        h["messages"][0]["data"],
        text_msg("typo"),
        "history shows the edit: {h}"
    );
}

#[test]
fn delete_own_admin_and_forbidden() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let b = s.user("bob");
    let mut ca = s.ws_user(&a);
    let mut cb = s.ws_user(&b);
    let admin_token = s.mint("900", "root", "admin", 600);
    let mut cadm = s.ws(&admin_token);
    for c in [&mut ca, &mut cb, &mut cadm] {
        c.ok(json!({"op":"join","channel":"room:del"}));
    }
    let s1 = ca.ok(json!({"op":"publish","channel":"room:del","data":text_msg("one")}))["seq"]
        .as_u64()
        .unwrap();
    let s2 = ca.ok(json!({"op":"publish","channel":"room:del","data":text_msg("two")}))["seq"]
        .as_u64()
        .unwrap();
    let s3 = ca.ok(json!({"op":"publish","channel":"room:del","data":text_msg("three")}))["seq"]
        .as_u64()
        .unwrap();

    // bob may not delete alice's message
    assert_eq!(
        cb.err(json!({"op":"delete","channel":"room:del","seq":s1})),
        "forbidden"
    );
    cb.ping();

    // alice deletes her own
    assert_eq!(ca.ok(json!({"op":"delete","channel":"room:del","seq":s1})), json!({}));
    let ev = cb.expect_event(|v| v["ev"] == "delete", T, "delete");
    assert_eq!(ev["channel"], "room:del");
    assert_eq!(ev["seq"].as_u64(), Some(s1));

    // admin deletes alice's
    assert_eq!(cadm.ok(json!({"op":"delete","channel":"room:del","seq":s2})), json!({}));
    let ev = cb.expect_event(
        |v| v["ev"] == "delete" && v["seq"].as_u64() == Some(s2),
        T,
        "admin delete",
    );
    assert_eq!(ev["channel"], "room:del");
    ca.expect_event(
        |v| v["ev"] == "delete" && v["seq"].as_u64() == Some(s2),
        T,
        "admin delete (author)",
    );

    // unknown seq
    assert_eq!(
        ca.err(json!({"op":"delete","channel":"room:del","seq":12345})),
        "not_found"
    );

    // history no longer shows the deleted messages' content
    let h = cb.ok(json!({"op":"history","channel":"room:del"}));
    let msgs = h["messages"].as_array().unwrap();
    for m in msgs {
        let sq = m["seq"].as_u64().unwrap();
        if sq == s1 || sq == s2 {
            assert_ne!(
                m["data"],
                text_msg(if sq == s1 { "one" } else { "two" }),
                "deleted content still in history: {h}"
            );
        }
    }
    assert!(msgs
        .iter()
        .any(|m| m["seq"].as_u64() == Some(s3) && m["data"] == text_msg("three")));
}

#[test]
fn signal_only_between_users_sharing_a_room_or_dm() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let b = s.user("bob");
    let c = s.user("carol");
    let d = s.user("dave");
    let mut ca = s.ws_user(&a);
    let mut cb1 = s.ws_user(&b);
    let mut cb2 = s.ws_user(&b);
    let mut cc = s.ws_user(&c);
    let mut cd = s.ws_user(&d);
    ca.ok(json!({"op":"join","channel":"room:call"}));
    cb1.ok(json!({"op":"join","channel":"room:call"}));

    let data = json!({"kind":"offer","sdp":"v=0..."});
    assert_eq!(
        ca.ok(json!({"op":"signal","to":b.id,"call":"c-77","data":data})),
        json!({})
    );
    for cb in [&mut cb1, &mut cb2] {
        let ev = cb.expect_event(|v| v["ev"] == "signal", T, "signal on every connection of `to`");
        assert_eq!(id_string(&ev["from"]["id"]).as_deref(), Some(a.id.as_str()), "{ev}");
        assert_eq!(ev["from"]["name"], "alice");
        assert_eq!(ev["call"], "c-77");
        assert_eq!(ev["data"], data);
    }
    // answer back
    cb2.ok(json!({"op":"signal","to":a.id,"call":"c-77","data":{"kind":"answer","sdp":"v=0"}}));
    let ev = ca.expect_event(|v| v["ev"] == "signal", T, "answer");
    assert_eq!(ev["data"]["kind"], "answer");

    // carol shares nothing with alice: as if alice did not exist
    assert_eq!(
        cc.err(json!({"op":"signal","to":a.id,"call":"c-1","data":{"kind":"ring"}})),
        "not_found"
    );
    cc.ping();
    // a signal's events are queued for the recipient before the sender gets its reply,
    // so after carol's reply a ping round trip on alice's connection is the barrier
    ca.barrier();
    assert!(ca.buffered_event(|v| v["ev"] == "signal").is_none());

    // data must be an object
    assert_eq!(
        ca.err(json!({"op":"signal","to":b.id,"call":"c-77","data":"x"})),
        "bad_request"
    );

    // carol and dave share a DM once carol wrote there
    let dm = dm_channel(&c.id, &d.id);
    cc.ok(json!({"op":"join","channel":dm}));
    cc.ok(json!({"op":"publish","channel":dm,"data":text_msg("call me")}));
    cc.ok(json!({"op":"signal","to":d.id,"call":"c-9","data":{"kind":"ring"}}));
    let ev = cd.expect_event(|v| v["ev"] == "signal", T, "signal via DM");
    assert_eq!(ev["call"], "c-9");
    assert_eq!(id_string(&ev["from"]["id"]).as_deref(), Some(c.id.as_str()));
}

#[test]
fn signal_allowed_immediately_after_both_joins_are_acknowledged() {
    // Once both `join` replies arrived the two users share a room; a signal sent right
    // then must be accepted (fresh users and rooms each round, to catch ordering races).
    let s = TestServer::start_default();
    for i in 0..100 {
        let ta = s.mint(&format!("sa{i}"), &format!("sa{i}"), "user", 600);
        let tb = s.mint(&format!("sb{i}"), &format!("sb{i}"), "user", 600);
        let mut ca = s.ws(&ta);
        let mut cb = s.ws(&tb);
        let room = format!("room:sig{i}");
        let ia = ca.send_request(json!({"op":"join","channel":room}));
        let ib = cb.send_request(json!({"op":"join","channel":room}));
        assert!(ca.wait_reply(ia, T).get("ok").is_some());
        assert!(cb.wait_reply(ib, T).get("ok").is_some());
        let r = ca.request(json!({"op":"signal","to":format!("sb{i}"),"call":format!("c{i}"),"data":{"kind":"ring"}}));
        assert!(
            r.get("ok").is_some(),
            "round {i}: both joined {room}, signal refused: {r}"
        );
        cb.expect_event(|v| v["ev"] == "signal", T, "signal");
    }
}
