//! The PostgreSQL backend (`DATABASE_URL=postgres://...`), including two nodes sharing
//! one database. These tests read `DATABASE_URL`; without a PostgreSQL URL they say
//! so and pass, unless `CHAT_REQUIRE_SERVICES=1` (set by `.ci/run`), where they fail.
//! Each test creates (and drops) its own database.

mod common;

use std::{collections::BTreeSet, thread};

use common::*;
use serde_json::{json, Value};

fn text(t: &str) -> Value {
    json!({"type":"text","text":t})
}

fn node(db: &PgDb, dir: &std::path::Path) -> TestServer {
    TestServer::start(Opts::new().env("DATABASE_URL", &db.url).data_dir(dir))
}

#[test]
fn chat_recovery_and_dedupe_on_postgres() {
    let Some(db) = PgDb::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = node(&db, dir.path());
    let (alice, bob) = (s.user("alice"), s.user("bob"));
    let mut a = s.ws_user(&alice);
    let mut b = s.ws_user(&bob);
    a.ok(json!({"op":"join","channel":"room:pg"}));
    let jb = b.ok(json!({"op":"join","channel":"room:pg"}));
    assert_eq!(jb["seq"], 0);
    let p1 = a.ok(json!({"op":"publish","channel":"room:pg","data":text("one"),"client_id":"c1"}));
    let p2 = a.ok(json!({"op":"publish","channel":"room:pg","data":text("one"),"client_id":"c1"}));
    assert_eq!(
        (p1["seq"].as_i64(), p2["seq"].as_i64(), p2["duplicate"].as_bool()),
        (Some(1), Some(1), Some(true))
    );
    let ev = b.expect_event(|e| e["ev"] == "message", secs(5.0), "message");
    assert_eq!(ev["seq"], 1);
    // b leaves; messages flow; b recovers exactly the missed ones
    b.ok(json!({"op":"leave","channel":"room:pg"}));
    for i in 2..=6 {
        a.ok(json!({"op":"publish","channel":"room:pg","data":text(&format!("m{i}"))}));
    }
    let r = b.ok(json!({"op":"join","channel":"room:pg","since":1}));
    let seqs: Vec<i64> = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!((r["recovered"].as_bool(), seqs), (Some(true), vec![2, 3, 4, 5, 6]));
    // edit, delete, read markers and unread counts
    a.ok(json!({"op":"edit","channel":"room:pg","seq":2,"data":text("m2!")}));
    a.ok(json!({"op":"delete","channel":"room:pg","seq":3}));
    b.ok(json!({"op":"read","channel":"room:pg","seq":4}));
    let ch = b.ok(json!({"op":"channels"}));
    let entry = ch["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "room:pg")
        .cloned()
        .unwrap();
    assert_eq!(
        (entry["seq"].as_i64(), entry["unread"].as_i64()),
        (Some(6), Some(2)),
        "{entry}"
    );
    let (st, h) = s.get("/api/channels/room:pg/history?limit=10", Some(&bob.token));
    assert_eq!(st, 200, "{h}");
    let msgs = h["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 6);
    assert_eq!(msgs[1]["data"]["text"], "m2!");
    assert_eq!(msgs[2]["deleted"], true);
    // private rooms are enforced by the same queries
    let (st, _) = s.post(
        "/api/rooms",
        Some(&alice.token),
        json!({"name":"secret","private":true}),
    );
    assert_eq!(st, 201);
    assert_eq!(b.err(json!({"op":"join","channel":"room:secret"})), "forbidden");
    let (st, _) = s.get("/api/users?q=bo", Some(&alice.token));
    assert_eq!(st, 200);
}

#[test]
fn restart_on_postgres_keeps_accounts_history_and_last_values() {
    let Some(db) = PgDb::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut s = node(&db, dir.path());
    let alice = s.user("alice");
    let publisher = s.mint("feed", "Feed", "publisher", 3600);
    let mut a = s.ws_user(&alice);
    for i in 1..=3 {
        a.ok(json!({"op":"publish","channel":"room:keep","data":text(&format!("k{i}"))}));
    }
    let (st, j) = s.post(
        "/api/publish",
        Some(&publisher),
        json!({"channel":"loc:veh-9","data":{"lat":10.5,"lon":-20.25}}),
    );
    assert_eq!(st, 200, "{j}");
    drop(a);
    s.stop();

    let s = node(&db, dir.path());
    let (st, j) = s.post("/api/login", None, json!({"name":"alice","password":PASSWORD}));
    assert_eq!(st, 200, "{j}");
    let mut a = s.ws_user(&alice);
    let r = a.ok(json!({"op":"join","channel":"room:keep"}));
    assert_eq!(r["seq"], 3);
    let p = a.ok(json!({"op":"publish","channel":"room:keep","data":text("k4")}));
    assert_eq!(p["seq"], 4, "seq continues after a restart");
    let l = a.ok(json!({"op":"join","channel":"loc:veh-9"}));
    assert_eq!(l["messages"][0]["data"]["lat"], 10.5, "{l}");
    let (st, t) = s.get("/api/locations/veh-9/track", Some(&alice.token));
    assert_eq!((st, t["points"].as_array().map(Vec::len)), (200, Some(1)), "{t}");
}

/// Two server processes on one database: publishes on both get unique, gap-free seqs,
/// a resend on the other node is recognized, and either node recovers everything.
#[test]
fn two_nodes_share_one_database() {
    let Some(db) = PgDb::create() else { return };
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let n1 = node(&db, d1.path());
    let n2 = node(&db, d2.path());
    const PER: usize = 60;
    let mut handles = Vec::new();
    for (i, srv) in [&n1, &n2, &n1, &n2].into_iter().enumerate() {
        let token = srv.mint(&format!("user{i}"), &format!("user{i}"), "user", 3600);
        let mut c = srv.ws(&token);
        handles.push(thread::spawn(move || {
            let mut seqs = Vec::new();
            for k in 0..PER {
                let r =
                    c.ok(json!({"op":"publish","channel":"room:shared","data":text("x"),"client_id":format!("c{k}")}));
                seqs.push(r["seq"].as_i64().unwrap());
            }
            (token, seqs)
        }));
    }
    let mut all = BTreeSet::new();
    let mut first = None;
    for h in handles {
        let (token, seqs) = h.join().unwrap();
        for s in &seqs {
            assert!(all.insert(*s), "seq {s} handed out twice");
        }
        first.get_or_insert((token, seqs[0]));
    }
    let n = (4 * PER) as i64;
    assert_eq!(all, (1..=n).collect::<BTreeSet<_>>(), "seqs must be exactly 1..={n}");
    // user0 resends its first client_id through the other node: same seq, duplicate.
    let (token0, seq0) = first.unwrap();
    let mut c = n2.ws(&token0);
    let r = c.ok(json!({"op":"publish","channel":"room:shared","data":text("x"),"client_id":"c0"}));
    assert_eq!((r["seq"].as_i64(), r["duplicate"].as_bool()), (Some(seq0), Some(true)));
    // A reader on either node recovers every message in order.
    for srv in [&n1, &n2] {
        let t = srv.mint("reader", "reader", "user", 3600);
        let mut rd = srv.ws(&t);
        let j = rd.ok(json!({"op":"join","channel":"room:shared","since":0}));
        let got: Vec<i64> = j["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(got, (1..=n).collect::<Vec<_>>());
        assert_eq!(j["recovered"], true);
    }
}

/// Storage failing under a publish: the publisher gets `unavailable`, nothing is stored
/// or delivered, the connection stays usable, and publishing works again once storage
/// is back.
#[test]
fn storage_failure_is_unavailable_and_stores_nothing() {
    use diesel::{connection::SimpleConnection, Connection};
    let Some(db) = PgDb::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = node(&db, dir.path());
    let (alice, bob) = (s.user("alice"), s.user("bob"));
    let mut a = s.ws_user(&alice);
    let mut b = s.ws_user(&bob);
    b.ok(json!({"op":"join","channel":"room:fail"}));
    a.ok(json!({"op":"publish","channel":"room:fail","data":text("before")}));
    b.expect_event(|e| e["ev"] == "message" && e["seq"] == 1, secs(5.0), "seq 1");

    let mut pg = diesel::pg::PgConnection::establish(&db.url).unwrap();
    pg.batch_execute("ALTER TABLE messages RENAME TO messages_away")
        .unwrap();
    assert_eq!(
        a.err(json!({"op":"publish","channel":"room:fail","data":text("lost")})),
        "unavailable"
    );
    let (st, j) = s.post(
        "/api/publish",
        Some(&alice.token),
        json!({"channel":"room:fail","data":text("lost too")}),
    );
    assert_eq!((st, j["error"]["code"].as_str()), (503, Some("unavailable")), "{j}");
    a.ping();
    // A delivery could only come from room:fail's shard, which gets what the writer
    // stored; the writer refused both publishes once their batches had failed, so a
    // barrier through that shard orders anything it was handed before b's check.
    b.hub_barrier("room:fail");
    assert!(
        b.buffered_event(|e| e["ev"] == "message").is_none(),
        "nothing may be delivered"
    );

    pg.batch_execute("ALTER TABLE messages_away RENAME TO messages")
        .unwrap();
    let p = a.ok(json!({"op":"publish","channel":"room:fail","data":text("after")}));
    assert_eq!(p["seq"], 2, "the failed publishes used no seq");
    b.expect_event(|e| e["ev"] == "message" && e["seq"] == 2, secs(5.0), "seq 2");
    let (_, h) = s.get("/api/channels/room:fail/history", Some(&bob.token));
    let texts: Vec<&str> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, vec!["before", "after"]);
}

#[test]
fn control_characters_fail_alone_on_postgres() {
    let Some(db) = PgDb::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    control_characters_are_refused_alone(&node(&db, dir.path()));
}

/// Publish batches over many rooms from two nodes at once. The writer locks the
/// counters of every room in a batch together, in name order, so the nodes never
/// deadlock, seqs stay gap-free and unique per room, and a client_id repeated inside
/// one batch is answered as a duplicate of the first.
#[test]
fn batches_over_many_rooms_from_two_nodes() {
    let Some(db) = PgDb::create() else { return };
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let nodes = [node(&db, d1.path()), node(&db, d2.path())];
    const ROOMS: usize = 12;
    const ROUNDS: usize = 6;
    let per_node: Vec<Vec<(String, i64)>> = thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, srv)| {
                s.spawn(move || {
                    let token = srv.mint(&format!("user{i}"), &format!("user{i}"), "user", 3600);
                    let mut stored = Vec::new();
                    for round in 0..ROUNDS {
                        let mut rooms: Vec<usize> = (0..ROOMS).collect();
                        if i == 1 {
                            rooms.reverse();
                        }
                        let mut items: Vec<Value> = rooms
                            .iter()
                            .map(|r| {
                                json!({"channel": format!("room:b{r}"), "data": text("x"),
                                       "client_id": format!("n{i}-{round}-{r}")})
                            })
                            .collect();
                        items.push(items[0].clone());
                        let (st, out) = srv.post("/api/publish/batch", Some(&token), Value::Array(items.clone()));
                        assert_eq!(st, 200, "{out}");
                        let out = out.as_array().unwrap();
                        let (first, last) = (&out[0], &out[out.len() - 1]);
                        assert_eq!(
                            (last["seq"].clone(), last["duplicate"].as_bool()),
                            (first["seq"].clone(), Some(true))
                        );
                        for (item, r) in items.iter().zip(out).take(ROOMS) {
                            assert_eq!(r["duplicate"].as_bool(), None, "{r}");
                            stored.push((
                                item["channel"].as_str().unwrap().to_string(),
                                r["seq"].as_i64().unwrap(),
                            ));
                        }
                    }
                    stored
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut per_room: std::collections::BTreeMap<String, BTreeSet<i64>> = Default::default();
    for (room, seq) in per_node.into_iter().flatten() {
        assert!(
            per_room.entry(room.clone()).or_default().insert(seq),
            "{room}: seq {seq} twice"
        );
    }
    assert_eq!(per_room.len(), ROOMS);
    let n = (2 * ROUNDS) as i64;
    for (room, seqs) in per_room {
        assert_eq!(seqs, (1..=n).collect::<BTreeSet<_>>(), "{room}");
    }
}
