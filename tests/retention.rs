//! Retention: history limits of the namespace policies (`[policies.room]`
//! `history_max_count`, `history_max_age_s`) applied by the background task in small
//! batches while clients keep publishing, `join` with a `since` older than what is kept,
//! and the removal of uploads no message refers to. Each test runs on SQLite and, where
//! `DATABASE_URL` names a PostgreSQL server, on PostgreSQL too.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    time::{Duration, Instant},
};

use common::*;
use serde_json::{json, Value};

/// A server with `policies` as its config file and a fast retention task.
fn server(db: Option<&PgDb>, dir: &Path, policies: &str, extra: &[(&str, &str)]) -> TestServer {
    let conf = dir.join("chat.toml");
    std::fs::write(&conf, policies).unwrap();
    let mut opts = Opts::new()
        .env("CHAT_CONFIG", conf.to_str().unwrap())
        .env("CHAT_RETENTION_INTERVAL_S", "0.2")
        .env("CHAT_RETENTION_BATCH", "10")
        .env("CHAT_PUBLISH_RATE", "10000");
    if let Some(db) = db {
        opts = opts.env("DATABASE_URL", &db.url);
    }
    for (k, v) in extra {
        opts = opts.env(k, v);
    }
    TestServer::start(opts)
}

fn history(c: &mut WsClient, channel: &str) -> Vec<u64> {
    seqs(&c.ok(json!({"op":"history","channel":channel,"limit":200}))["messages"])
}

/// Sums the `retention: removed N messages, ... in B batches` lines of the log.
fn removed_and_batches(s: &TestServer) -> (u64, u64) {
    let mut total = (0, 0);
    for line in s.stderr_tail(100_000).lines() {
        let Some(rest) = line.split("retention: removed ").nth(1) else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok()).unwrap_or(0);
        total.0 += n(0);
        total.1 += words.iter().position(|w| *w == "batches").map_or(0, |i| n(i - 1));
    }
    total
}

// ---------------------------------------------------------------------------------------
// A count limit
// ---------------------------------------------------------------------------------------

fn count_limit(db: Option<&PgDb>) {
    let dir = tempfile::tempdir().unwrap();
    let s = server(db, dir.path(), "[policies.room]\nhistory_max_count = 40\n", &[]);
    let alice = s.user("alice");
    let mut a = s.ws_user(&alice);
    let mut r = s.ws_user(&alice);
    a.ok(json!({"op":"join","channel":"room:busy"}));
    // Publish with acks for at least 2 s (several runs of the task), timing every ack.
    let started = Instant::now();
    let (mut worst, mut seq, mut trimmed_meanwhile) = (Duration::ZERO, 0u64, false);
    while seq < 200 || started.elapsed() < secs(2.0) {
        let t = Instant::now();
        let p = a.ok(json!({"op":"publish","channel":"room:busy","data":text_msg(&format!("m{seq}"))}));
        worst = worst.max(t.elapsed());
        seq += 1;
        assert_eq!(p["seq"].as_u64(), Some(seq), "seqs stay gap-free: {p}");
        if seq % 50 == 0 {
            let h = history(&mut r, "room:busy");
            trimmed_meanwhile |= h.first().is_some_and(|&first| first > 1);
        }
    }
    eprintln!("{seq} publishes, slowest ack {worst:?}");
    assert!(
        worst < Duration::from_millis(500),
        "a publish waited {worst:?} for its ack"
    );
    assert!(trimmed_meanwhile, "no message was removed while publishing went on");
    let top = seq;
    let kept = |c: &mut WsClient, top: u64| {
        wait_until(secs(10.0), || {
            history(c, "room:busy") == (top - 39..=top).collect::<Vec<_>>()
        })
    };
    assert!(
        kept(&mut r, top),
        "history keeps the newest 40: {:?}",
        history(&mut r, "room:busy")
    );
    // New messages continue after the top.
    let p = a.ok(json!({"op":"publish","channel":"room:busy","data":text_msg("next")}));
    assert_eq!(p["seq"].as_u64(), Some(top + 1));
    assert!(kept(&mut r, top + 1), "{:?}", history(&mut r, "room:busy"));
    // In batches of CHAT_RETENTION_BATCH rows.
    assert!(wait_until(secs(5.0), || removed_and_batches(&s).0 == top + 1 - 40));
    let (removed, batches) = removed_and_batches(&s);
    assert!(
        batches * 10 >= removed && batches >= removed / 10,
        "{removed} in {batches}"
    );
    assert!(batches >= 2, "{removed} in {batches}");
}

#[test]
fn a_count_limit_trims_in_batches_while_publishes_go_on() {
    count_limit(None);
}

#[test]
fn a_count_limit_trims_in_batches_while_publishes_go_on_postgres() {
    let Some(db) = PgDb::create() else { return };
    count_limit(Some(&db));
}

// ---------------------------------------------------------------------------------------
// An age limit, and join with a `since` older than what is kept
// ---------------------------------------------------------------------------------------

fn age_limit(db: Option<&PgDb>) {
    let dir = tempfile::tempdir().unwrap();
    let s = server(db, dir.path(), "[policies.room]\nhistory_max_age_s = 1.5\n", &[]);
    let alice = s.user("alice");
    let mut a = s.ws_user(&alice);
    let joined = a.ok(json!({"op":"join","channel":"room:old"}));
    for i in 1..=20 {
        let p = a.ok(json!({"op":"publish","channel":"room:old","data":text_msg(&format!("old {i}"))}));
        assert_eq!(p["seq"].as_u64(), Some(i));
    }
    a.ok(json!({"op":"leave","channel":"room:old"}));
    let epoch = joined["epoch"].clone();
    let mut r = s.ws_user(&alice);
    // All 20 grow older than 1.5 s and go.
    assert!(
        wait_until(secs(10.0), || history(&mut r, "room:old").is_empty()),
        "{:?}",
        history(&mut r, "room:old")
    );
    // The channel keeps its top: new messages continue after it.
    for i in 21..=25 {
        let p = a.ok(json!({"op":"publish","channel":"room:old","data":text_msg(&format!("new {i}"))}));
        assert_eq!(p["seq"].as_u64(), Some(i));
    }
    assert_eq!(history(&mut r, "room:old"), (21..=25).collect::<Vec<_>>());
    // A client that saw seq 5 missed 6..=20, which are gone: not recovered, and given
    // what is kept.
    let j = r.ok(json!({"op":"join","channel":"room:old","since":5,"epoch":epoch}));
    assert_eq!(
        (j["recovered"].as_bool(), j["seq"].as_u64(), seqs(&j["messages"])),
        (Some(false), Some(25), (21..=25).collect::<Vec<_>>()),
        "{j}"
    );
    // One that saw seq 20 or later misses nothing that was removed.
    let j = r.ok(json!({"op":"join","channel":"room:old","since":20,"epoch":epoch}));
    assert_eq!(
        (j["recovered"].as_bool(), seqs(&j["messages"])),
        (Some(true), (21..=25).collect::<Vec<_>>()),
        "{j}"
    );
    let j = r.ok(json!({"op":"join","channel":"room:old","since":23,"epoch":epoch}));
    assert_eq!(
        (j["recovered"].as_bool(), seqs(&j["messages"])),
        (Some(true), vec![24, 25])
    );
}

#[test]
fn an_age_limit_removes_old_messages_and_join_since_before_them_is_not_recovered() {
    age_limit(None);
}

#[test]
fn an_age_limit_removes_old_messages_and_join_since_before_them_is_not_recovered_postgres() {
    let Some(db) = PgDb::create() else { return };
    age_limit(Some(&db));
}

// ---------------------------------------------------------------------------------------
// Unreferenced uploads
// ---------------------------------------------------------------------------------------

/// `POST /api/uploads` of `data`: (status, JSON body).
fn upload(s: &TestServer, token: &str, data: &[u8]) -> (u16, Value) {
    const B: &str = "----retention-test-boundary";
    let mut body = format!(
        "--{B}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.txt\"\r\nContent-Type: text/plain\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{B}--\r\n").as_bytes());
    let head = format!(
        "POST /api/uploads HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary={B}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        s.addr,
        body.len()
    );
    let mut c = TcpStream::connect(&s.addr).unwrap();
    c.set_read_timeout(Some(secs(10.0))).unwrap();
    let _ = c.write_all(head.as_bytes()).and_then(|_| c.write_all(&body));
    let mut resp = Vec::new();
    let _ = c.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b.trim()).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

fn name_of(j: &Value) -> String {
    j["url"]
        .as_str()
        .unwrap()
        .strip_prefix("/uploads/")
        .unwrap()
        .to_string()
}

fn uploads(db: Option<&PgDb>) {
    let dir = tempfile::tempdir().unwrap();
    let up_dir = dir.path().join("files");
    let s = server(
        db,
        dir.path(),
        "",
        &[
            ("CHAT_UPLOAD_GRACE_S", "1"),
            ("CHAT_UPLOAD_DIR", up_dir.to_str().unwrap()),
            ("CHAT_UPLOAD_QUOTA_BYTES", "2500"),
        ],
    );
    let alice = s.user("alice");
    let (kilo, small) = (vec![b'x'; 1000], vec![b'y'; 600]);
    let mut names = Vec::new();
    for _ in 0..3 {
        let (st, j) = upload(&s, &alice.token, &small);
        assert_eq!(st, 201, "{j}");
        names.push(name_of(&j));
    }
    let (video, poster, unused) = (names[0].clone(), names[1].clone(), names[2].clone());
    let mut c = s.ws_user(&alice);
    let data = json!({"type":"video","url":format!("/uploads/{video}"),"poster":format!("/uploads/{poster}")});
    let p = c.ok(json!({"op":"publish","channel":"room:files","data":data}));
    // 1,800 of 2,500 bytes used.
    assert_eq!(upload(&s, &alice.token, &kilo).0, 413);
    // Past the grace period the unreferenced upload goes, file and quota.
    assert!(
        wait_until(secs(10.0), || !up_dir.join(&unused).exists()),
        "{unused} still there"
    );
    for kept in [&video, &poster] {
        assert!(up_dir.join(kept).exists(), "a referenced upload was removed");
        assert_eq!(s.http_get(&format!("/uploads/{kept}"), None).0, 200);
    }
    let (st, _) = upload(&s, &alice.token, &kilo);
    assert_eq!(st, 201, "the removed upload's bytes were not freed");
    // Once its message is deleted, no message refers to them any more.
    c.ok(json!({"op":"delete","channel":"room:files","seq":p["seq"]}));
    assert!(
        wait_until(secs(10.0), || !up_dir.join(&video).exists()
            && !up_dir.join(&poster).exists()),
        "uploads still there after their message was deleted"
    );
}

#[test]
fn unreferenced_uploads_go_after_the_grace_period_and_free_the_quota() {
    uploads(None);
}

#[test]
fn unreferenced_uploads_go_after_the_grace_period_and_free_the_quota_postgres() {
    let Some(db) = PgDb::create() else { return };
    uploads(Some(&db));
}

// ---------------------------------------------------------------------------------------
// Track points
// ---------------------------------------------------------------------------------------

fn track_len(s: &TestServer, token: &str, entity: &str) -> usize {
    let (st, j) = s.get(&format!("/api/locations/{entity}/track?limit=10000"), Some(token));
    assert_eq!(st, 200, "{j}");
    j["points"].as_array().map_or(0, |p| p.len())
}

fn track_age(db: Option<&PgDb>) {
    let dir = tempfile::tempdir().unwrap();
    let s = server(
        db,
        dir.path(),
        "[policies.loc]\ntrack_max_age_s = 1.5\n",
        &[("CHAT_TRACK_MIN_INTERVAL_S", "0"), ("CHAT_TRACK_MIN_DISTANCE_M", "0")],
    );
    let fleet = s.mint("fleet", "fleet", "publisher", 3600);
    let viewer = s.mint("viewer", "viewer", "user", 3600);
    let mut c = s.ws(&fleet);
    let point = |c: &mut WsClient, i: usize| {
        c.ok(json!({"op":"publish","channel":"loc:walker","data":{"lat":50.0 + i as f64 * 0.001,"lon":8.0}}));
    };
    for i in 0..30 {
        point(&mut c, i);
    }
    assert!(wait_until(secs(10.0), || track_len(&s, &viewer, "walker") == 30));
    assert!(
        wait_until(secs(10.0), || track_len(&s, &viewer, "walker") == 0),
        "{} points left",
        track_len(&s, &viewer, "walker")
    );
    point(&mut c, 30);
    assert!(wait_until(secs(10.0), || track_len(&s, &viewer, "walker") == 1));
}

#[test]
fn track_points_older_than_the_age_limit_go() {
    track_age(None);
}

#[test]
fn track_points_older_than_the_age_limit_go_postgres() {
    let Some(db) = PgDb::create() else { return };
    track_age(Some(&db));
}
