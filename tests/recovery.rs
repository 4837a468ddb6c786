//! Reconnect recovery: join with `since` (and `epoch`).
mod common;

use common::*;
use serde_json::{json, Value};

fn server() -> TestServer {
    TestServer::start(Opts::new().env("CHAT_RECOVERY_LIMIT", "20"))
}

fn publish_n(c: &mut WsClient, ch: &str, n: usize, tag: &str) -> Vec<u64> {
    (0..n)
        .map(|i| {
            c.ok(json!({"op":"publish","channel":ch,"data":text_msg(&format!("{tag}{i}"))}))["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn rejoin_with_since_returns_exactly_the_missed_messages() {
    let s = server();
    let a = s.user("alice");
    let b = s.user("bob");
    let mut cb = s.ws_user(&b);
    cb.ok(json!({"op":"join","channel":"room:rec"}));
    publish_n(&mut cb, "room:rec", 3, "before");

    let mut ca = s.ws_user(&a);
    let j = ca.ok(json!({"op":"join","channel":"room:rec"}));
    let epoch = j["epoch"].clone();
    assert_eq!(seqs(&j["messages"]), vec![1, 2, 3]);
    cb.ok(json!({"op":"publish","channel":"room:rec","data":text_msg("seen")}));
    let last_seen = ca.expect_event(is_msg("room:rec"), T, "live message")["seq"]
        .as_u64()
        .unwrap();
    assert_eq!(last_seen, 4);
    drop(ca);

    let missed = publish_n(&mut cb, "room:rec", 7, "missed");
    assert_eq!(missed, (5..=11).collect::<Vec<_>>());

    let mut ca = s.ws_user(&a);
    let j = ca.ok(json!({"op":"join","channel":"room:rec","since":last_seen,"epoch":epoch}));
    assert_eq!(j["recovered"], true, "{j}");
    assert_eq!(
        seqs(&j["messages"]),
        missed,
        "exactly the missed messages, ascending: {j}"
    );
    assert_eq!(j["seq"].as_u64(), Some(11));
    assert_eq!(
        j["epoch"], epoch,
        "epoch is stable while the server keeps the channel: {j}"
    );
    for (m, i) in j["messages"].as_array().unwrap().iter().zip(0..) {
        assert_eq!(m["data"], text_msg(&format!("missed{i}")), "{m}");
        assert_eq!(m["from"]["name"], "bob");
    }
    // live again afterwards, no duplicates of recovered ones
    cb.ok(json!({"op":"publish","channel":"room:rec","data":text_msg("live")}));
    let e = ca.expect_event(is_msg("room:rec"), T, "live after recovery");
    assert_eq!(e["seq"].as_u64(), Some(12));

    // since == top: recovered with nothing missed
    let j = ca.ok(json!({"op":"join","channel":"room:rec","since":12}));
    assert_eq!(j["recovered"], true, "{j}");
    assert_eq!(j["messages"], json!([]), "{j}");
}

#[test]
fn since_beyond_top_is_not_recovered() {
    let s = server();
    let a = s.user("alice");
    let mut c = s.ws_user(&a);
    c.ok(json!({"op":"join","channel":"room:beyond"}));
    publish_n(&mut c, "room:beyond", 5, "m");
    let mut c2 = s.ws_user(&a);
    let j = c2.ok(json!({"op":"join","channel":"room:beyond","since":500}));
    assert_eq!(j["recovered"], false, "{j}");
    assert_eq!(seqs(&j["messages"]), vec![1, 2, 3, 4, 5], "recent history instead: {j}");
    assert_eq!(j["seq"].as_u64(), Some(5));
}

#[test]
fn more_missed_than_recovery_limit_is_not_recovered() {
    let s = server();
    let a = s.user("alice");
    let b = s.user("bob");
    let mut cb = s.ws_user(&b);
    cb.ok(json!({"op":"join","channel":"room:many"}));
    publish_n(&mut cb, "room:many", 2, "early");
    let last_seen = 2;
    publish_n(&mut cb, "room:many", 30, "flood");

    let mut ca = s.ws_user(&a);
    let j = ca.ok(json!({"op":"join","channel":"room:many","since":last_seen}));
    assert_eq!(j["recovered"], false, "30 missed > CHAT_RECOVERY_LIMIT=20: {j}");
    let got = seqs(&j["messages"]);
    assert!(!got.is_empty(), "recent history returned: {j}");
    assert_eq!(*got.last().unwrap(), 32, "recent history ends at the top: {j}");
    assert!(
        got.windows(2).all(|w| w[1] == w[0] + 1),
        "ascending, contiguous: {got:?}"
    );
    assert_eq!(j["seq"].as_u64(), Some(32));

    // exactly at the limit is still recovered
    let j = ca.ok(json!({"op":"join","channel":"room:many","since":12}));
    assert_eq!(j["recovered"], true, "20 missed == limit: {j}");
    assert_eq!(seqs(&j["messages"]), (13..=32).collect::<Vec<_>>());
}

#[test]
fn changed_epoch_is_not_recovered() {
    let s = server();
    let a = s.user("alice");
    let mut c = s.ws_user(&a);
    let j = c.ok(json!({"op":"join","channel":"room:ep"}));
    publish_n(&mut c, "room:ep", 4, "m");
    let other_epoch = match &j["epoch"] {
        Value::Number(n) => json!(n.as_i64().unwrap_or(0) + 1),
        Value::String(s) => json!(format!("{s}-other")),
        other => panic!("epoch must be a string or number: {other}"),
    };
    let mut c2 = s.ws_user(&a);
    let j2 = c2.ok(json!({"op":"join","channel":"room:ep","since":2,"epoch":other_epoch}));
    assert_eq!(j2["recovered"], false, "{j2}");
    assert_eq!(seqs(&j2["messages"]), vec![1, 2, 3, 4], "{j2}");
    // with the right epoch it is recovered
    let j3 = c2.ok(json!({"op":"join","channel":"room:ep","since":2,"epoch":j["epoch"]}));
    assert_eq!(j3["recovered"], true, "{j3}");
    assert_eq!(seqs(&j3["messages"]), vec![3, 4]);
}

/// B publishes `n` messages (paced) on its own thread; returns the join handle.
fn spawn_publisher(mut cb: WsClient, ch: &'static str, n: usize) -> std::thread::JoinHandle<Vec<u64>> {
    std::thread::spawn(move || {
        let mut acked = Vec::with_capacity(n);
        for i in 0..n {
            let r = cb.ok(json!({"op":"publish","channel":ch,"data":text_msg(&format!("r{i}"))}));
            acked.push(r["seq"].as_u64().unwrap());
            if i % 4 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(2)); // pacing, not a timing assertion
            }
        }
        acked
    })
}

/// Join reply messages followed by live events must be exactly `from..=to`: no gap, no duplicate.
fn collect_until(c: &mut WsClient, ch: &str, mut got: Vec<u64>, to: u64) -> Vec<u64> {
    while got.last().copied().unwrap_or(0) < to {
        let e = c
            .next_event(is_msg(ch), T)
            .unwrap_or_else(|| panic!("{}: stalled at {:?} waiting for seq {to}", c.label, got.last()));
        got.push(e["seq"].as_u64().unwrap());
    }
    got
}

fn assert_contiguous(got: &[u64], from: u64, to: u64, what: &str) {
    let want: Vec<u64> = (from..=to).collect();
    if got != want.as_slice() {
        let mut dups = vec![];
        let mut gaps = vec![];
        let set: std::collections::BTreeSet<u64> = got.iter().copied().collect();
        for w in got.windows(2) {
            if w[1] <= w[0] {
                dups.push(w[1]);
            }
        }
        for x in from..=to {
            if !set.contains(&x) {
                gaps.push(x);
            }
        }
        panic!("{what}: expected seqs {from}..={to} exactly once in order; duplicates/out-of-order {dups:?}, missing {gaps:?}");
    }
}

#[test]
fn rejoin_during_concurrent_publishing_has_no_gap_or_duplicate() {
    const N: usize = 1500;
    let s = TestServer::start(
        Opts::new()
            .env("CHAT_RECOVERY_LIMIT", "100000")
            .env("CHAT_PUBLISH_RATE", "100000"),
    );
    let a = s.user("alice");
    let b = s.user("bob");
    let c = s.user("carol");
    let mut ca = s.ws_user(&a);
    ca.ok(json!({"op":"join","channel":"room:race"}));
    let cb = s.ws_user(&b);
    let publisher = spawn_publisher(cb, "room:race", N);

    // alice sees some live messages, then her connection drops
    let mut last = 0;
    while last < 100 {
        last = ca.expect_event(is_msg("room:race"), T, "live message")["seq"]
            .as_u64()
            .unwrap();
    }
    drop(ca);

    // carol joins (no since) in the middle of the stream
    let mut cc = s.ws_user(&c);
    let jc = cc.ok(json!({"op":"join","channel":"room:race"}));
    let first_c = seqs(&jc["messages"]);
    assert!(!first_c.is_empty(), "{jc}");
    assert_eq!(
        first_c.last().copied(),
        jc["seq"].as_u64(),
        "join messages end at the reply's top seq: {jc}"
    );

    // alice reconnects and recovers while bob keeps publishing
    let mut ca = s.ws_user(&a);
    let j = ca.ok(json!({"op":"join","channel":"room:race","since":last}));
    assert_eq!(j["recovered"], true, "{}", j["seq"]);
    let got = seqs(&j["messages"]);
    if let Some(&l) = got.last() {
        assert_eq!(
            Some(l),
            j["seq"].as_u64(),
            "recovered messages end at the reply's top seq"
        );
    }

    let acked = publisher.join().unwrap();
    assert_eq!(acked, (1..=N as u64).collect::<Vec<_>>());
    let got = collect_until(&mut ca, "room:race", got, N as u64);
    assert_contiguous(&got, last + 1, N as u64, "alice (join with since, then live)");
    let from_c = first_c[0];
    let got_c = collect_until(&mut cc, "room:race", first_c, N as u64);
    assert_contiguous(&got_c, from_c, N as u64, "carol (join, then live)");
}
