//! A crash on SQLite: `kill -9` while many clients publish. After a restart every
//! acknowledged message is in history exactly once, the seqs are gap-free, and each
//! acknowledged message has the seq its acknowledgement gave.

mod common;

use std::{
    collections::HashMap,
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::*;
use serde_json::{json, Value};

/// Publishes until the connection dies; records (client_id → seq) of every ack.
fn publish_until_killed(mut c: WsClient, channel: String, who: usize, acked: Arc<Mutex<HashMap<String, u64>>>) {
    for n in 0.. {
        let client_id = format!("p{who}-{n}");
        let id = c.send_request(json!({"op":"publish","channel":channel,"data":text_msg(&client_id),
            "client_id":client_id}));
        loop {
            match c.read_frame(Duration::from_secs(5)) {
                Frame::Json(v) if v["id"] == json!(id) => {
                    match v["ok"]["seq"].as_u64() {
                        Some(seq) => {
                            acked.lock().unwrap().insert(client_id.clone(), seq);
                        }
                        None => assert_eq!(v["error"]["code"], "unavailable", "{v}"),
                    }
                    break;
                }
                Frame::Json(_) => {}
                _ => return,
            }
        }
    }
}

#[test]
fn every_acknowledged_message_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Opts::new().data_dir(dir.path()).env("CHAT_PUBLISH_RATE", "100000");
    let mut s = TestServer::start(opts.clone());
    let rooms = ["room:crash-a", "room:crash-b"];
    let acked = Arc::new(Mutex::new(HashMap::new()));
    let publishers: Vec<_> = (0..8)
        .map(|i| {
            let mut c = s.ws(&s.mint(&format!("w{i}"), &format!("writer {i}"), "user", 3600));
            let channel = rooms[i % 2].to_string();
            c.ok(json!({"op":"join","channel":channel}));
            let acked = acked.clone();
            std::thread::spawn(move || publish_until_killed(c, channel, i, acked))
        })
        .collect();
    assert!(
        wait_until(secs(20.0), || acked.lock().unwrap().len() >= 2000),
        "publishers got going"
    );
    let status = Command::new("kill")
        .arg("-KILL")
        .arg(s.pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
    for p in publishers {
        p.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let _ = s.stop_after_signal();

    let s = TestServer::start(opts);
    let reader = s.mint("reader", "reader", "user", 3600);
    let mut stored: HashMap<String, u64> = HashMap::new();
    for room in rooms {
        let mut seqs = Vec::new();
        let mut after = 0;
        loop {
            let (st, page) = s.get(
                &format!("/api/channels/{room}/history?after={after}&limit=200"),
                Some(&reader),
            );
            assert_eq!(st, 200, "{page}");
            let msgs: Vec<Value> = page["messages"].as_array().unwrap().clone();
            if msgs.is_empty() {
                break;
            }
            for m in &msgs {
                let seq = m["seq"].as_u64().unwrap();
                seqs.push(seq);
                let cid = m["client_id"].as_str().unwrap().to_string();
                assert!(stored.insert(cid.clone(), seq).is_none(), "{cid} stored twice");
            }
            after = *seqs.last().unwrap();
        }
        let n = seqs.len() as u64;
        assert_eq!(seqs, (1..=n).collect::<Vec<u64>>(), "{room}: seqs gap-free from 1");
    }
    for (cid, seq) in &acked {
        assert_eq!(
            stored.get(cid),
            Some(seq),
            "acknowledged {cid} (seq {seq}) after the crash"
        );
    }
    assert!(stored.len() >= acked.len());
}
