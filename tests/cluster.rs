//! Several nodes: one PostgreSQL database, Redis pub/sub between them. Needs
//! `DATABASE_URL` (postgres://) and `REDIS_URL`; without them the tests say so and
//! pass, unless `CHAT_REQUIRE_SERVICES=1` (set by `.ci/run`).

mod common;

use std::{thread, time::Duration};

use common::*;
use serde_json::{json, Value};

fn text(t: &str) -> Value {
    json!({"type":"text","text":t})
}

/// Two nodes of one cluster (a cluster name of their own, so parallel tests on the
/// same Redis stay apart).
fn cluster() -> Option<(PgDb, TestServer, TestServer, Vec<tempfile::TempDir>)> {
    cluster_with(&[])
}

fn cluster_with(env: &[(&str, &str)]) -> Option<(PgDb, TestServer, TestServer, Vec<tempfile::TempDir>)> {
    cluster_named(env).map(|(db, a, b, dirs, _)| (db, a, b, dirs))
}

/// As `cluster_with`, and the cluster's name.
fn cluster_named(env: &[(&str, &str)]) -> Option<(PgDb, TestServer, TestServer, Vec<tempfile::TempDir>, String)> {
    let redis = redis_url()?;
    let db = PgDb::create()?;
    let name = format!("test-{}", hex::encode(rand::random::<[u8; 6]>()));
    let dirs = vec![tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let start = |d: &tempfile::TempDir| {
        let mut o = Opts::new()
            .env("DATABASE_URL", &db.url)
            .env("REDIS_URL", &redis)
            .env("CHAT_CLUSTER_NAME", &name)
            .data_dir(d.path());
        for (k, v) in env {
            o = o.env(k, v);
        }
        TestServer::start(o)
    };
    let (a, b) = (start(&dirs[0]), start(&dirs[1]));
    Some((db, a, b, dirs, name))
}

/// PUBLISH on Redis as anyone who can reach it could (raw RESP over TCP).
fn redis_publish(url: &str, topic: &str, payload: &[u8]) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("redis://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).expect("connect to Redis");
    let mut cmd = Vec::new();
    for part in [&b"PUBLISH"[..], topic.as_bytes(), payload] {
        cmd.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        cmd.extend_from_slice(part);
        cmd.extend_from_slice(b"\r\n");
    }
    s.write_all(&[b"*3\r\n".as_slice(), &cmd].concat()).unwrap();
    let mut reply = [0u8; 64];
    let n = s.read(&mut reply).unwrap();
    assert_eq!(reply[0], b':', "PUBLISH: {}", String::from_utf8_lossy(&reply[..n]));
}

/// Redis is not trusted: an envelope that is not sealed with the cluster's secret
/// (unsealed, or sealed with another key) is dropped by every node.
#[test]
fn events_forged_on_redis_are_dropped() {
    let Some((_db, n1, n2, _dirs, name)) = cluster_named(&[]) else {
        return;
    };
    let redis = redis_url().unwrap();
    let mut victim = n1.ws(&n1.mint("victim", "victim", "user", 3600));
    victim.ok(json!({"op":"join","channel":"room:f"}));
    let topic = format!("chatserver:bus:v1:{name}");
    let typing = json!({"node":"evil","ts":now_ms(),
        "ev":{"typing":{"channel":"room:f","user":{"id":"mallory","name":"mallory"}}}});
    let signal = json!({"node":"evil","ts":now_ms(),
        "ev":{"signal":{"to":"victim","frame":{"ev":"signal","from":{"id":"mallory","name":"m"},"call":"x","data":{}}}}});
    for forged in [&typing, &signal] {
        let body = serde_json::to_vec(forged).unwrap();
        redis_publish(&redis, &topic, &body);
        redis_publish(&redis, &topic, &[vec![0u8; 32], body].concat());
    }
    // A genuine event through the same Redis channel afterwards is the barrier.
    let mut friend = n2.ws(&n2.mint("friend", "friend", "user", 3600));
    friend.ok(json!({"op":"join","channel":"room:f"}));
    friend.ok(json!({"op":"typing","channel":"room:f"}));
    let seen = victim.events_until(
        |v| v["ev"] == "typing" && v["user"]["id"] == "friend",
        T,
        "the friend's typing",
    );
    for v in &seen {
        assert_ne!(v["ev"], "signal", "a forged signal was delivered: {v}");
        assert_ne!(v["user"]["id"], "mallory", "a forged event was delivered: {v}");
    }
    assert!(
        n1.stderr_tail(50).contains("dropped an event from Redis"),
        "the drop is logged"
    );
}

/// Messages published on both nodes reach members on both nodes live: every seq
/// exactly once, in order.
#[test]
fn live_messages_cross_nodes_in_order_exactly_once() {
    let Some((_db, n1, n2, _dirs)) = cluster() else { return };
    let mut watchers = Vec::new();
    for (i, srv) in [&n1, &n2].into_iter().enumerate() {
        let t = srv.mint(&format!("watch{i}"), "watcher", "user", 3600);
        let mut w = srv.ws(&t);
        let j = w.ok(json!({"op":"join","channel":"room:x"}));
        assert_eq!(j["seq"], 0);
        watchers.push(w);
    }
    const PER: usize = 50;
    let mut pubs = Vec::new();
    for (i, srv) in [&n1, &n2, &n1, &n2].into_iter().enumerate() {
        let t = srv.mint(&format!("pub{i}"), &format!("pub{i}"), "user", 3600);
        let mut c = srv.ws(&t);
        pubs.push(thread::spawn(move || {
            for k in 0..PER {
                c.ok(json!({"op":"publish","channel":"room:x","data":text(&format!("{i}-{k}"))}));
            }
        }));
    }
    for p in pubs {
        p.join().unwrap();
    }
    let n = 4 * PER;
    for (i, w) in watchers.iter_mut().enumerate() {
        let mut seqs = Vec::new();
        while seqs.len() < n {
            let ev = w.next_event(|e| e["ev"] == "message", Duration::from_secs(10));
            let Some(ev) = ev else {
                panic!("watcher {i} got {} of {n} messages: {seqs:?}", seqs.len())
            };
            seqs.push(ev["seq"].as_i64().unwrap());
        }
        assert_eq!(
            seqs,
            (1..=n as i64).collect::<Vec<_>>(),
            "watcher {i}: every seq once, in order"
        );
    }
    // No duplicates: one marker published through each node after everything else. A
    // node hands its own messages to its shards in commit order and sends them to the
    // other node over one Redis connection in commit order, so a second copy of an
    // earlier message would reach a watcher before both markers.
    let m1 = watchers[0].ok(json!({"op":"publish","channel":"room:x","data":text("marker 1")}))["seq"]
        .as_i64()
        .unwrap();
    let m2 = watchers[1].ok(json!({"op":"publish","channel":"room:x","data":text("marker 2")}))["seq"]
        .as_i64()
        .unwrap();
    for (i, w) in watchers.iter_mut().enumerate() {
        let after: Vec<i64> = w
            .events_until(
                |e| e["ev"] == "message" && e["seq"] == m2,
                Duration::from_secs(10),
                "marker 2",
            )
            .iter()
            .filter(|e| e["ev"] == "message")
            .map(|e| e["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(after, vec![m1, m2], "watcher {i}: no duplicates");
    }
}

/// Typing, edits, deletes, signals, feed values and positions published on one node
/// reach the other.
#[test]
fn events_and_feeds_cross_nodes() {
    let Some((_db, n1, n2, _dirs)) = cluster() else { return };
    let alice_t = n1.mint("alice", "alice", "user", 3600);
    let bob_t = n2.mint("bob", "bob", "user", 3600);
    let mut a = n1.ws(&alice_t);
    let mut b = n2.ws(&bob_t);
    a.ok(json!({"op":"join","channel":"room:both"}));
    b.ok(json!({"op":"join","channel":"room:both"}));

    a.ok(json!({"op":"typing","channel":"room:both"}));
    b.expect_event(
        |e| e["ev"] == "typing" && e["user"]["id"] == "alice",
        secs(5.0),
        "typing across nodes",
    );

    let p = a.ok(json!({"op":"publish","channel":"room:both","data":text("hello")}));
    b.expect_event(|e| e["ev"] == "message" && e["seq"] == p["seq"], secs(5.0), "message");
    a.ok(json!({"op":"edit","channel":"room:both","seq":p["seq"],"data":text("hello!")}));
    b.expect_event(
        |e| e["ev"] == "edit" && e["data"]["text"] == "hello!",
        secs(5.0),
        "edit across nodes",
    );
    a.ok(json!({"op":"delete","channel":"room:both","seq":p["seq"]}));
    b.expect_event(
        |e| e["ev"] == "delete" && e["seq"] == p["seq"],
        secs(5.0),
        "delete across nodes",
    );

    a.ok(json!({"op":"signal","to":"bob","call":"c-1","data":{"kind":"ring"}}));
    let s = b.expect_event(|e| e["ev"] == "signal", secs(5.0), "signal across nodes");
    assert_eq!(
        (s["from"]["id"].as_str(), s["call"].as_str()),
        (Some("alice"), Some("c-1"))
    );

    // A quote published over HTTP on node 1 reaches a subscriber on node 2.
    b.ok(json!({"op":"join","channel":"ticker:ACME"}));
    let publisher = n1.mint("feed", "Feed", "publisher", 3600);
    let (st, j) = n1.post(
        "/api/publish",
        Some(&publisher),
        json!({"channel":"ticker:ACME","data":{"price":42.5}}),
    );
    assert_eq!(st, 200, "{j}");
    let q = b.expect_event(
        |e| e["ev"] == "message" && e["channel"] == "ticker:ACME",
        secs(5.0),
        "quote",
    );
    assert_eq!(q["data"]["price"], 42.5);
    // ... and node 2 serves it as the last value on join.
    let mut late = n2.ws(&bob_t);
    let j = late.ok(json!({"op":"join","channel":"ticker:ACME"}));
    assert_eq!(j["messages"][0]["data"]["price"], 42.5, "{j}");

    // A position published on node 1 is found by `nearby` on node 2.
    let (st, j) = n1.post(
        "/api/publish",
        Some(&publisher),
        json!({"channel":"loc:veh-7","data":{"lat":1.0,"lon":2.0}}),
    );
    assert_eq!(st, 200, "{j}");
    let found = wait_until(secs(5.0), || {
        let (_, r) = n2.get("/api/locations/nearby?lat=1.0&lon=2.0&radius_m=100", Some(&bob_t));
        r["entities"]
            .as_array()
            .is_some_and(|v| v.iter().any(|e| e["channel"] == "loc:veh-7"))
    });
    assert!(found, "node 2 did not learn the position published on node 1");
}

/// A message that never came over the bus (written to the database behind the
/// nodes' backs) is filled in from the database as soon as the next one arrives, so
/// members see every seq in order.
#[test]
fn gap_on_the_bus_is_filled_from_the_database() {
    use diesel::{connection::SimpleConnection, Connection};
    let Some((db, n1, n2, _dirs)) = cluster() else { return };
    let t1 = n1.mint("writer", "writer", "user", 3600);
    let t2 = n2.mint("watcher", "watcher", "user", 3600);
    let mut w = n2.ws(&t2);
    w.ok(json!({"op":"join","channel":"room:gap"}));
    let mut a = n1.ws(&t1);
    a.ok(json!({"op":"publish","channel":"room:gap","data":text("one")}));
    w.expect_event(|e| e["ev"] == "message" && e["seq"] == 1, secs(5.0), "seq 1");
    let mut pg = diesel::pg::PgConnection::establish(&db.url).unwrap();
    pg.batch_execute(
        "UPDATE channels SET seq = seq + 1 WHERE name = 'room:gap';
         INSERT INTO messages (channel, seq, ts, sender_id, sender_name, data, deleted)
           SELECT 'room:gap', seq, 0, 'ghost', 'ghost', '{\"type\":\"text\",\"text\":\"sneaked\"}', FALSE
           FROM channels WHERE name = 'room:gap';",
    )
    .unwrap();
    a.ok(json!({"op":"publish","channel":"room:gap","data":text("three")}));
    let two = w.expect_event(|e| e["ev"] == "message", secs(5.0), "seq 2 (from the database)");
    assert_eq!(
        (two["seq"].as_i64(), two["data"]["text"].as_str()),
        (Some(2), Some("sneaked")),
        "{two}"
    );
    let three = w.expect_event(|e| e["ev"] == "message", secs(5.0), "seq 3");
    assert_eq!(three["seq"], 3);
}

fn present(c: &mut WsClient, channel: &str) -> Vec<(String, i64)> {
    let r = c.ok(json!({"op":"presence","channel":channel}));
    let mut v: Vec<(String, i64)> = r["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap().to_string(), m["conns"].as_i64().unwrap()))
        .collect();
    v.sort();
    v
}

/// Presence is cluster-wide: members on both nodes, connections summed, a user left
/// only when gone from every node, and a crashed node's users expire.
#[test]
fn presence_spans_nodes() {
    let Some((_db, mut n1, n2, _dirs)) = cluster_with(&[("CHAT_PRESENCE_REFRESH_S", "0.5")]) else {
        return;
    };
    let (ta, tb) = (n1.mint("ann", "ann", "user", 3600), n2.mint("ben", "ben", "user", 3600));
    let mut a = n1.ws(&ta);
    a.ok(json!({"op":"join","channel":"room:p"}));
    let mut b = n2.ws(&tb);
    b.ok(json!({"op":"join","channel":"room:p"}));
    // ann (node 1) learns that ben (node 2) joined ...
    a.expect_event(
        |e| {
            e["ev"] == "presence"
                && e["joined"]
                    .as_array()
                    .is_some_and(|j| j.iter().any(|u| u["id"] == "ben"))
        },
        secs(5.0),
        "ben joined (from node 2)",
    );
    // ... and both nodes list both users.
    let both = vec![("ann".to_string(), 1), ("ben".to_string(), 1)];
    assert!(
        wait_until(secs(5.0), || present(&mut b, "room:p") == both),
        "{:?}",
        present(&mut b, "room:p")
    );
    assert!(
        wait_until(secs(5.0), || present(&mut a, "room:p") == both),
        "{:?}",
        present(&mut a, "room:p")
    );

    // ann also connects through node 2: two connections in total.
    let mut a2 = n2.ws(&ta);
    a2.ok(json!({"op":"join","channel":"room:p"}));
    assert!(wait_until(secs(5.0), || present(&mut a, "room:p")
        .contains(&("ann".to_string(), 2))));
    // Leaving on node 1 only: ann is still present (through node 2), no `left`.
    a.ok(json!({"op":"leave","channel":"room:p"}));
    assert!(wait_until(secs(5.0), || present(&mut b, "room:p") == both));
    // The marker: zed joins on node 1 after ann left there. Node 1 announces presence
    // changes of room:p in order (one diff per flush, over one Redis connection) and
    // node 2 turns them into events in order, so a `left` for ann would reach ben no
    // later than the event announcing zed.
    let mut z = n1.ws(&n1.mint("zed", "zed", "user", 3600));
    z.ok(json!({"op":"join","channel":"room:p"}));
    let upto_zed = b.events_until(
        |e| {
            e["ev"] == "presence"
                && e["joined"]
                    .as_array()
                    .is_some_and(|j| j.iter().any(|u| u["id"] == "zed"))
        },
        secs(5.0),
        "zed joined (from node 1)",
    );
    assert!(
        !upto_zed
            .iter()
            .any(|e| e["ev"] == "presence" && e["left"].as_array().is_some_and(|l| l.iter().any(|u| u["id"] == "ann"))),
        "ann is still connected through node 2: {upto_zed:?}"
    );
    z.ok(json!({"op":"leave","channel":"room:p"}));
    a2.ok(json!({"op":"leave","channel":"room:p"}));
    b.expect_event(
        |e| e["ev"] == "presence" && e["left"].as_array().is_some_and(|l| l.iter().any(|u| u["id"] == "ann")),
        secs(5.0),
        "ann left everywhere",
    );

    // A node that dies without saying goodbye: its users expire on the others.
    let tc = n1.mint("cat", "cat", "user", 3600);
    let mut c = n1.ws(&tc);
    c.ok(json!({"op":"join","channel":"room:p"}));
    b.expect_event(
        |e| {
            e["ev"] == "presence"
                && e["joined"]
                    .as_array()
                    .is_some_and(|j| j.iter().any(|u| u["id"] == "cat"))
        },
        secs(5.0),
        "cat joined (node 1)",
    );
    let _ = std::process::Command::new("kill")
        .arg("-KILL")
        .arg(n1.pid.to_string())
        .status();
    b.expect_event(
        |e| e["ev"] == "presence" && e["left"].as_array().is_some_and(|l| l.iter().any(|u| u["id"] == "cat")),
        secs(8.0),
        "cat expired with its node",
    );
    drop(c);
    let _ = n1.stop_after_signal();
}

#[test]
fn logout_on_one_node_revokes_the_token_on_the_other() {
    let Some((_db, a, b, _dirs)) = cluster() else { return };
    let (token, _) = a.register("gina", PASSWORD);
    let mut on_b = b.ws(&token);
    on_b.ping();
    assert_eq!(a.post("/api/logout", Some(&token), json!({})).0, 200);
    assert_eq!(on_b.expect_close(T), Some(4001), "connection on the other node");
    let (st, body) = b.get("/api/me", Some(&token));
    assert_eq!(st, 401, "revoked token on the other node: {body}");
    // A login on the other node issues a token that works on both.
    let (st, body) = b.post("/api/login", None, json!({"name":"gina","password": PASSWORD}));
    assert_eq!(st, 200, "{body}");
    let fresh = body["token"].as_str().unwrap();
    a.ws(fresh).ping();
    b.ws(fresh).ping();
}

#[test]
fn kicks_and_bans_reach_the_other_node() {
    let Some((_db, a, b, _dirs)) = cluster() else { return };
    let (token, id) = a.register("hank", PASSWORD);
    let root = a.mint("root", "root", "admin", 3600);
    let mut on_b = b.ws(&token);
    on_b.ping();
    let (st, body) = a.post(&format!("/api/admin/users/{id}/kick"), Some(&root), json!({}));
    assert_eq!(st, 200, "{body}");
    assert_eq!(on_b.expect_close(T), Some(4003), "kicked on the other node");
    let mut again = b.ws(&token);
    let r = a.http(
        "PUT",
        &format!("/api/admin/users/{id}/ban"),
        Some(&root),
        Some(&json!({})),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(again.expect_close(secs(6.0)), Some(4003), "banned on the other node");
    assert_eq!(b.get("/api/me", Some(&token)).0, 403);
}

#[test]
fn a_removal_from_a_private_room_reaches_the_other_node() {
    let Some((_db, a, b, _dirs)) = cluster() else { return };
    let (owner, _) = a.register("olga", PASSWORD);
    let (bob, bob_id) = a.register("boris", PASSWORD);
    let (st, body) = a.post(
        "/api/rooms",
        Some(&owner),
        json!({"name":"vault","private":true,"members":[bob_id]}),
    );
    assert_eq!(st, 201, "{body}");
    let mut on_b = b.ws(&bob);
    on_b.ok(json!({"op":"join","channel":"room:vault"}));
    on_b.ok(json!({"op":"publish","channel":"room:vault","data":text("before")}));
    let r = a.http(
        "DELETE",
        &format!("/api/rooms/vault/members/{bob_id}"),
        Some(&owner),
        None,
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    on_b.expect_event(|e| e["ev"] == "removed", secs(6.0), "removed on the other node");
    let e = on_b.err(json!({"op":"publish","channel":"room:vault","data":text("after")}));
    assert!(e == "forbidden" || e == "not_found", "{e}");
}
