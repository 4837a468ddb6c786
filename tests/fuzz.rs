//! Bounded-time fuzzing of the real server: random and mutated WebSocket frames, JSON
//! requests and HTTP bodies. Whatever arrives, the server never panics or answers
//! `internal`/500, no session gets stuck, other users' data does not change, and the
//! server still answers `ping` afterwards.
//!
//! The run is seeded (`FUZZ_SEED`, else random; the seed is printed) and bounded by
//! `FUZZ_SECS` (default 8 s).

mod common;

use std::{
    io::Write,
    time::{Duration, Instant},
};

use common::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};

/// A client frame (masked unless `unmasked`), with free choice of the first byte.
fn frame(first: u8, payload: &[u8], unmasked: bool, announce: Option<u64>) -> Vec<u8> {
    let mut out = vec![first];
    let len = announce.unwrap_or(payload.len() as u64);
    let mask_bit = if unmasked { 0 } else { 0x80 };
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= u16::MAX as u64 {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if unmasked {
        out.extend_from_slice(payload);
    } else {
        let key = [0x12, 0x34, 0x56, 0x78];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    }
    out
}

fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.gen_range(0..9) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen::<i64>()),
        3 => json!(rng.gen::<f64>() * 1e300),
        4 => json!(random_text(rng, 40)),
        5 if depth < 4 => Value::Array((0..rng.gen_range(0..4)).map(|_| random_value(rng, depth + 1)).collect()),
        6 if depth < 4 => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.gen_range(0..4) {
                m.insert(random_text(rng, 8), random_value(rng, depth + 1));
            }
            Value::Object(m)
        }
        7 => json!(-1),
        _ => json!(""),
    }
}

fn random_text(rng: &mut StdRng, max: usize) -> String {
    const PARTS: [&str; 12] = [
        "room:", "dm:1,2", "ticker:A", "loc:", "\u{0}", "\u{202E}", "é", "💥", "\\", "\"", "../", "%00",
    ];
    (0..rng.gen_range(0..max))
        .map(|_| {
            if rng.gen_bool(0.2) {
                PARTS[rng.gen_range(0..PARTS.len())].to_string()
            } else {
                (rng.gen_range(0x20u8..0x7f) as char).to_string()
            }
        })
        .collect()
}

const OPS: [&str; 14] = [
    "auth", "join", "leave", "publish", "history", "presence", "typing", "read", "channels", "edit", "delete",
    "signal", "ping", "nope",
];
const KEYS: [&str; 13] = [
    "channel",
    "since",
    "epoch",
    "limit",
    "data",
    "client_id",
    "before",
    "after",
    "seq",
    "to",
    "call",
    "token",
    "id",
];

/// A request that looks like one, with random parameters.
fn random_request(rng: &mut StdRng) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("op".into(), json!(OPS[rng.gen_range(0..OPS.len())]));
    for _ in 0..rng.gen_range(0..6) {
        let k = KEYS[rng.gen_range(0..KEYS.len())];
        let v = match (k, rng.gen_range(0..3)) {
            ("channel", 0) => json!(format!("room:fz{}", rng.gen_range(0..5))),
            ("data", 0) => json!({"type":"text","text":random_text(rng, 30)}),
            _ => random_value(rng, 0),
        };
        m.insert(k.into(), v);
    }
    Value::Object(m)
}

/// The request's text, possibly damaged (bytes flipped, cut short, doubled).
fn mutate(rng: &mut StdRng, text: String) -> Vec<u8> {
    let mut b = text.into_bytes();
    match rng.gen_range(0..6) {
        0 if !b.is_empty() => {
            let i = rng.gen_range(0..b.len());
            b[i] = rng.gen();
        }
        1 => b.truncate(rng.gen_range(0..=b.len())),
        2 => {
            let copy = b.clone();
            b.extend_from_slice(&copy);
        }
        3 => b = "[".repeat(rng.gen_range(1..3000)).into_bytes(),
        _ => {}
    }
    b
}

fn connect(s: &TestServer, token: &str) -> Option<RawWs> {
    let auth = format!("Bearer {token}");
    let mut ws = RawWs::connect(&s.addr, "/ws", &[("Authorization", auth.as_str())], None).ok()?;
    ws.read_json_until(|v| v["ev"] == "welcome", T)?;
    Some(ws)
}

/// Reads what is there without waiting long; fails the test on an `internal` error.
fn drain(ws: &mut RawWs) -> bool {
    loop {
        match ws.read_frame(Duration::from_millis(2)) {
            RawFrame::Frame(1, t) => {
                let v: Value = serde_json::from_slice(&t).unwrap_or(Value::Null);
                assert_ne!(v["error"]["code"], "internal", "an internal error: {v}");
            }
            RawFrame::Timeout => return true,
            RawFrame::Frame(8, _) | RawFrame::Eof => return false,
            RawFrame::Frame(..) => {}
        }
    }
}

fn http_fuzz(s: &TestServer, rng: &mut StdRng, token: &str) {
    const PATHS: [&str; 9] = [
        "/api/publish",
        "/api/publish/batch",
        "/api/login",
        "/api/register",
        "/api/rooms",
        "/api/rooms/fz/members",
        "/api/blocks/fz",
        "/api/channels/room:fz0/history?after=-1&limit=x",
        "/api/locations/nearby?lat=1e999&lon=x&radius_m=-1",
    ];
    let path = PATHS[rng.gen_range(0..PATHS.len())];
    let value = random_value(rng, 0).to_string();
    let body = mutate(rng, value);
    let method = ["POST", "GET", "PUT", "DELETE"][rng.gen_range(0..4)];
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if rng.gen_bool(0.7) {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    let Ok(mut stream) = std::net::TcpStream::connect(&s.addr) else {
        panic!("the server stopped accepting connections")
    };
    stream.set_read_timeout(Some(T)).unwrap();
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
    let mut first = [0u8; 12];
    let mut got = 0;
    use std::io::Read;
    while got < 12 {
        match stream.read(&mut first[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let status = String::from_utf8_lossy(&first[..got]).to_string();
    assert!(!status.starts_with("HTTP/1.1 5"), "{method} {path}: {status}");
}

#[test]
fn random_and_mutated_input_changes_nothing_and_breaks_nothing() {
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let secs_budget: f64 = std::env::var("FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8.0);
    eprintln!("fuzz seed {seed} ({secs_budget} s); rerun with FUZZ_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let s = TestServer::start(Opts::new().env("CHAT_PUBLISH_RATE", "100000"));
    // Someone else's data, which nothing may change.
    let victim = s.user("victim");
    let mut v = s.ws_user(&victim);
    v.ok(json!({"op":"join","channel":"room:safe"}));
    for i in 0..5 {
        v.ok(json!({"op":"publish","channel":"room:safe","data":text_msg(&format!("keep {i}")),"client_id":format!("k{i}")}));
    }
    let before = v.ok(json!({"op":"history","channel":"room:safe"}));
    let fuzzer = s.mint("fuzzer", "fuzzer", "user", 3600);
    let mut ws = connect(&s, &fuzzer).expect("connect");
    let (deadline, mut requests, mut frames, mut reconnects) = (Instant::now() + secs(secs_budget), 0u32, 0u32, 0u32);
    while Instant::now() < deadline {
        match rng.gen_range(0..10) {
            0..=5 => {
                let text = random_request(&mut rng).to_string();
                let bytes = if rng.gen_bool(0.5) {
                    mutate(&mut rng, text)
                } else {
                    text.into_bytes()
                };
                let _ = ws.stream.write_all(&frame(0x81, &bytes, false, None));
                requests += 1;
            }
            6 | 7 => {
                // Damaged framing: reserved bits, unknown opcodes, unmasked frames, long or
                // fragmented control frames, lengths that lie, stray continuations.
                let first = rng.gen::<u8>();
                let payload: Vec<u8> = (0..rng.gen_range(0..200)).map(|_| rng.gen()).collect();
                let announce = rng.gen_bool(0.2).then(|| rng.gen_range(0..1u64 << 40));
                let _ = ws
                    .stream
                    .write_all(&frame(first, &payload, rng.gen_bool(0.1), announce));
                frames += 1;
            }
            _ => http_fuzz(&s, &mut rng, &fuzzer),
        }
        if !drain(&mut ws) {
            ws = connect(&s, &fuzzer).expect("the server takes new connections after closing one");
            reconnects += 1;
        }
    }
    eprintln!("fuzz: {requests} requests, {frames} damaged frames, {reconnects} reconnects");
    assert!(requests > 100, "the fuzzer ran");
    // Alive, not stuck, nothing of the victim's changed.
    assert!(!v.is_closed());
    v.ping();
    let after = v.ok(json!({"op":"history","channel":"room:safe"}));
    assert_eq!(before, after, "the victim's messages changed");
    let mut fresh = s.ws(&s.mint("after", "after", "user", 3600));
    fresh.ok(json!({"op":"join","channel":"room:after"}));
    fresh.ok(json!({"op":"publish","channel":"room:after","data":text_msg("still fine")}));
    let (st, _) = s.get("/healthz", None);
    assert_eq!(st, 200);
}
