//! Restart on the same data dir; graceful shutdown.
mod common;

use common::*;
use serde_json::json;

#[test]
fn data_survives_restart_with_generated_secret() {
    let dir = tempfile::Builder::new()
        .prefix("chatserver-persist-")
        .tempdir()
        .unwrap();
    let mut s1 = TestServer::start(Opts::new().data_dir(dir.path()).no_secret());
    let (token, id) = s1.register("alice", PASSWORD);
    let (t_bob, bob_id) = s1.register("bob", PASSWORD);
    let (st, body) = s1.post("/api/rooms", Some(&token), json!({"name":"keep","private":false}));
    assert!((200..300).contains(&st), "{st} {body}");
    let (st, body) = s1.post("/api/rooms", Some(&token), json!({"name":"vault","private":true}));
    assert!((200..300).contains(&st), "{st} {body}");
    let mut c = s1.ws(&token);
    c.ok(json!({"op":"join","channel":"room:keep"}));
    let mut cb = s1.ws(&t_bob);
    for i in 1..=3u64 {
        let r = cb.ok(
            json!({"op":"publish","channel":"room:keep","data":text_msg(&format!("p{i}")),"client_id":format!("k{i}")}),
        );
        assert_eq!(r["seq"].as_u64(), Some(i));
    }
    c.ok(json!({"op":"read","channel":"room:keep","seq":2}));
    let dm = dm_channel(&id, &bob_id);
    c.ok(json!({"op":"publish","channel":dm,"data":text_msg("dm before restart")}));
    assert!(
        dir.path().join("jwt_secret").exists() || std::fs::read_dir(dir.path()).unwrap().count() > 0,
        "the generated secret / db must live in the data dir"
    );
    drop(cb);
    drop(c);
    let st = s1.stop();
    assert!(
        st.success() || st.code().is_none(),
        "graceful exit after SIGTERM, got {st:?}"
    );
    drop(s1);

    let s2 = TestServer::start(Opts::new().data_dir(dir.path()).no_secret());
    // old token still valid (same generated secret)
    let mut c = s2.ws(&token);
    assert_eq!(
        id_string(&c.welcome.as_ref().unwrap()["user"]["id"]).as_deref(),
        Some(id.as_str())
    );
    let (st, me) = s2.get("/api/me", Some(&token));
    assert_eq!(st, 200, "{me}");
    assert_eq!(me["user"]["name"], "alice");
    // login still works
    let (st, body) = s2.post("/api/login", None, json!({"name":"alice","password":PASSWORD}));
    assert_eq!(st, 200, "{body}");
    // history and rooms survived
    let j = c.ok(json!({"op":"join","channel":"room:keep"}));
    assert_eq!(seqs(&j["messages"]), vec![1, 2, 3], "{j}");
    assert_eq!(j["messages"][2]["data"], text_msg("p3"));
    let (st, rooms) = s2.get("/api/rooms", Some(&token));
    assert_eq!(st, 200);
    assert!(
        rooms.to_string().contains("keep") && rooms.to_string().contains("vault"),
        "{rooms}"
    );
    let (_, rooms_bob) = s2.get("/api/rooms", Some(&t_bob));
    assert!(
        !rooms_bob.to_string().contains("vault"),
        "private room stays private: {rooms_bob}"
    );
    // recovery across the restart: everything is durable, so `since` can be served
    let mut c_rec = s2.ws(&token);
    let jr = c_rec.ok(json!({"op":"join","channel":"room:keep","since":1}));
    assert_eq!(jr["recovered"], true, "{jr}");
    assert_eq!(seqs(&jr["messages"]), vec![2, 3], "{jr}");
    drop(c_rec);
    // read markers survived (bob wrote 1..3, alice read up to 2)
    let l = c.ok(json!({"op":"channels"}));
    let keep = l["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["channel"] == "room:keep")
        .cloned()
        .unwrap_or_else(|| panic!("room:keep in channels: {l}"));
    assert_eq!(keep["seq"].as_u64(), Some(3), "{keep}");
    assert_eq!(keep["unread"].as_u64(), Some(1), "read marker 2, top 3: {keep}");
    // seq continues
    let r = c.ok(json!({"op":"publish","channel":"room:keep","data":text_msg("p4")}));
    assert_eq!(r["seq"].as_u64(), Some(4), "{r}");
    // a resend of a message acknowledged before the restart is still recognised
    let mut cb = s2.ws(&t_bob);
    let r = cb.ok(json!({"op":"publish","channel":"room:keep","data":text_msg("p3"),"client_id":"k3"}));
    assert_eq!(r["seq"].as_u64(), Some(3), "client_id seen before the restart: {r}");
    assert_eq!(r["duplicate"], true, "{r}");
    let (st, h) = s2.get(&format!("/api/channels/{dm}/history"), Some(&t_bob));
    assert_eq!(st, 200, "{h}");
    assert_eq!(h["messages"][0]["data"], text_msg("dm before restart"));
}

#[test]
fn sigterm_closes_sessions_with_1001() {
    let mut s = TestServer::start_default();
    let a = s.user("alice");
    let mut c = s.ws_user(&a);
    c.ok(json!({"op":"join","channel":"room:bye"}));
    let ack = c.ok(json!({"op":"publish","channel":"room:bye","data":text_msg("last words")}));
    assert_eq!(ack["seq"].as_u64(), Some(1));
    let pid = s.pid;
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let code = c.expect_close(secs(15.0));
    assert_eq!(code, Some(1001), "server shutting down closes sessions with 1001");
    let st = s.stop_after_signal();
    assert!(st.success(), "exit status after SIGTERM: {st:?}");
}

#[test]
fn acknowledged_publishes_survive_sigterm_mid_stream() {
    let dir = tempfile::Builder::new()
        .prefix("chatserver-durable-")
        .tempdir()
        .unwrap();
    let mut s1 = TestServer::start(Opts::new().data_dir(dir.path()).env("CHAT_PUBLISH_RATE", "100000"));
    let a = s1.user("alice");
    let mut c = s1.ws_user(&a);
    c.ok(json!({"op":"join","channel":"room:dur"}));
    const N: usize = 3000;
    for i in 0..N {
        c.send_request(json!({"op":"publish","channel":"room:dur","data":text_msg(&format!("d{i}"))}));
    }
    // collect acks; send SIGTERM once a few hundred are in
    let mut acked: Vec<u64> = vec![];
    let mut signalled = false;
    loop {
        match c.read_frame(secs(15.0)) {
            Frame::Json(v) => {
                if let Some(sq) = v["ok"]["seq"].as_u64() {
                    acked.push(sq);
                }
                if !signalled && acked.len() >= 300 {
                    let _ = std::process::Command::new("kill")
                        .arg("-TERM")
                        .arg(s1.pid.to_string())
                        .status();
                    signalled = true;
                }
            }
            Frame::Closed(_) => break,
            Frame::Timeout => panic!("no close within 15 s after SIGTERM ({} acks)", acked.len()),
        }
        if acked.len() == N && !signalled {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(s1.pid.to_string())
                .status();
            signalled = true;
        }
    }
    s1.stop_after_signal();
    drop(s1);
    let s2 = TestServer::start(Opts::new().data_dir(dir.path()));
    let mut c = s2.ws(&a.token);
    let mut stored: Vec<u64> = vec![];
    let mut before: Option<u64> = None;
    loop {
        let mut op = json!({"op":"history","channel":"room:dur","limit":200});
        if let Some(b) = before {
            op["before"] = json!(b);
        }
        let h = c.ok(op);
        let page = seqs(&h["messages"]);
        if page.is_empty() {
            break;
        }
        before = Some(page[0]);
        stored.splice(0..0, page);
        if before == Some(1) {
            break;
        }
    }
    let top = stored.last().copied().unwrap_or(0);
    assert_eq!(stored, (1..=top).collect::<Vec<_>>(), "stored seqs are gap-free");
    let max_acked = acked.iter().max().copied().unwrap_or(0);
    eprintln!(
        "{} of {N} publishes acknowledged before shutdown; stored top {top}",
        acked.len()
    );
    assert!(
        top >= max_acked,
        "acknowledged seq {max_acked} lost across shutdown (stored top {top}, {} acks)",
        acked.len()
    );
    let r = c.ok(json!({"op":"publish","channel":"room:dur","data":text_msg("after")}));
    assert_eq!(r["seq"].as_u64(), Some(top + 1), "seq continues after the restart");
}
