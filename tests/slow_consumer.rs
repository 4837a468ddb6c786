//! Backpressure: a client that stops reading is cut off with 4008 and costs bounded memory;
//! heartbeat: a client that never answers pings is closed, one that does stays.
mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::Message;

const CH: &str = "room:flood";
const PUBLISHERS: usize = 3;
const WINDOW: usize = 16; // in-flight publishes per publisher connection

fn flood_n() -> usize {
    std::env::var("CHAT_TEST_FLOOD_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// Cheap extraction of `"seq":N` from a message event (the full JSON parse is the fallback).
fn message_seq(text: &str) -> Option<u64> {
    if !text.contains("\"message\"") {
        return None;
    }
    if let Some(i) = text.find("\"seq\":") {
        let digits: String = text[i + 6..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        if let Ok(n) = digits.parse() {
            return Some(n);
        }
    }
    let v: Value = serde_json::from_str(text).ok()?;
    if v["ev"] == "message" && v["channel"] == CH {
        v["seq"].as_u64()
    } else {
        None
    }
}

#[test]
fn slow_consumer_is_disconnected_with_4008_and_memory_stays_bounded() {
    // 20,000 x 1 KB: the frame cap (256) is hit first
    flood_scenario(flood_n(), 1000, 150);
}

#[test]
fn slow_consumer_byte_cap_with_large_messages() {
    // 1,500 x 32 KB = 48 MB: the byte cap (1 MiB = 32 frames) is hit long before 256 frames
    flood_scenario(1500, 32_000, 12);
}

/// `n` messages of about `text_len` bytes; publishers stay at most `max_lag` messages ahead of
/// the normal member (so a reader that keeps up is never over the outbox limits).
fn flood_scenario(n: usize, text_len: usize, max_lag: usize) {
    let s = TestServer::start(
        Opts::new()
            .env("CHAT_OUTBOX_MAX_FRAMES", "256")
            .env("CHAT_OUTBOX_MAX_BYTES", "1048576")
            .env("CHAT_PUBLISH_RATE", "1000000")
            .env("RUST_LOG", "warn"),
    );
    let slow_user = s.user("slowpoke");
    let member_user = s.user("member");
    let pub_users: Vec<User> = (0..PUBLISHERS).map(|i| s.user(&format!("pub{i}"))).collect();

    // The slow client: tiny receive buffer, joins, then stops reading.
    let auth = format!("Bearer {}", slow_user.token);
    let mut slow = RawWs::connect(&s.addr, "/ws", &[("Authorization", auth.as_str())], Some(4096))
        .unwrap_or_else(|e| panic!("raw upgrade: {e}"));
    slow.read_json_until(|v| v["ev"] == "welcome", T)
        .expect("welcome on raw client");
    slow.send_json(&json!({"id":1,"op":"join","channel":CH})).unwrap();
    let j = slow
        .read_json_until(|v| v["id"] == 1, T)
        .expect("join reply on raw client");
    assert!(j.get("ok").is_some(), "{j}");

    // The normal member reads everything on its own thread.
    let mut member = s.ws_user(&member_user);
    member.ok(json!({"op":"join","channel":CH}));
    let received = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let member_thread = {
        let received = received.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut got: Vec<u64> = Vec::with_capacity(n);
            let mut close = None;
            let deadline = Instant::now() + Duration::from_secs(300);
            let _ = member.ws.get_mut().set_read_timeout(Some(Duration::from_millis(200)));
            while got.len() < n && Instant::now() < deadline && !done.load(Ordering::Relaxed) {
                match member.ws.read() {
                    Ok(Message::Text(t)) => {
                        if let Some(sq) = message_seq(&t) {
                            got.push(sq);
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(Message::Close(cf)) => {
                        close = Some(cf.map(|f| u16::from(f.code)).unwrap_or(1005));
                        break;
                    }
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e))
                        if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(e) => {
                        close = Some(0);
                        eprintln!("member read error: {e}");
                        break;
                    }
                }
            }
            (got, close)
        })
    };

    // The slow client resumes reading as soon as the server reports it cut off
    // (`chat_outbox_overflows_total` in /metrics), while the flood goes on. The server
    // queues the `disconnect` event and the close frame behind what the socket already
    // holds, and cuts a connection that has not drained them after 5 s; a client
    // that read only after that would find the bytes the kernel kept, then EOF.
    let flood_over = Arc::new(AtomicBool::new(false));
    let slow_reader = {
        let (metrics, flood_over) = (format!("{}/metrics", s.base()), flood_over.clone());
        std::thread::spawn(move || read_after_overflow(slow, &metrics, &flood_over))
    };

    let mut pubs: Vec<WsClient> = pub_users.iter().map(|u| s.ws_user(u)).collect();
    // warm up (first publish creates the room row etc.), then take the RSS baseline
    let warm = pubs[0].ok(json!({"op":"publish","channel":CH,"data":text_msg("warmup")}));
    let first_seq = warm["seq"].as_u64().unwrap();
    assert!(
        wait_until(T, || received.load(Ordering::Relaxed) >= 1),
        "member got the warmup message"
    );
    let baseline = s.rss_kb().expect("server RSS");
    let max_rss = Arc::new(AtomicU64::new(baseline));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (max_rss, sampling, pid) = (max_rss.clone(), sampling.clone(), s.pid);
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                if let Some(r) = rss_kb(pid) {
                    max_rss.fetch_max(r, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    let sent_total = Arc::new(AtomicUsize::new(1)); // the warmup
    let payload = "x".repeat(text_len);
    let started = Instant::now();
    let acked: Vec<Vec<u64>> = std::thread::scope(|sc| {
        let handles: Vec<_> = pubs
            .iter_mut()
            .enumerate()
            .map(|(i, p)| {
                let quota = n / PUBLISHERS + if i < n % PUBLISHERS { 1 } else { 0 };
                let quota = if i == 0 { quota - 1 } else { quota }; // warmup counted
                let (sent_total, received, payload) = (sent_total.clone(), received.clone(), payload.clone());
                sc.spawn(move || {
                    let mut inflight = 0usize;
                    let mut sent = 0usize;
                    let mut seqs = Vec::with_capacity(quota);
                    let deadline = Instant::now() + Duration::from_secs(240);
                    while seqs.len() < quota {
                        assert!(
                            Instant::now() < deadline,
                            "publisher {i}: flood did not finish in time ({} acked)",
                            seqs.len()
                        );
                        while inflight < WINDOW
                            && sent < quota
                            && sent_total
                                .load(Ordering::Relaxed)
                                .saturating_sub(received.load(Ordering::Relaxed))
                                < max_lag
                        {
                            let data = json!({"type":"text","text":format!("{i}-{sent}-{payload}")});
                            p.send_request(json!({"op":"publish","channel":CH,"data":data}));
                            sent += 1;
                            inflight += 1;
                            sent_total.fetch_add(1, Ordering::Relaxed);
                        }
                        if inflight == 0 {
                            std::thread::sleep(Duration::from_millis(1)); // wait for the member to catch up
                            continue;
                        }
                        match p.read_frame(Duration::from_secs(30)) {
                            Frame::Json(v) => {
                                if v.get("ev").is_some() {
                                    continue;
                                }
                                let sq = v["ok"]["seq"]
                                    .as_u64()
                                    .unwrap_or_else(|| panic!("publisher {i}: publish failed: {v}"));
                                seqs.push(sq);
                                inflight -= 1;
                            }
                            Frame::Closed(c) => {
                                panic!("publisher {i} was disconnected ({c:?}) after {} acks", seqs.len())
                            }
                            Frame::Timeout => panic!("publisher {i}: no ack within 30 s"),
                        }
                    }
                    seqs
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let flood_time = started.elapsed();
    flood_over.store(true, Ordering::Relaxed);
    let mut all: Vec<u64> = acked.into_iter().flatten().collect();
    all.push(first_seq);
    all.sort_unstable();
    let want: Vec<u64> = (1..=n as u64).collect();
    assert!(all == want, "acked seqs must be exactly 1..={n} (gap-free, unique)");

    // the normal member receives every message, in order, nothing missing
    let (got, member_close) = member_thread.join().unwrap();
    done.store(true, Ordering::Relaxed);
    assert_eq!(
        member_close,
        None,
        "the normal member was disconnected (close {member_close:?}) after {} messages",
        got.len()
    );
    assert_eq!(got.len(), n, "member received {} of {n} messages", got.len());
    assert!(got == want, "member must see seqs 1..={n} in order, no gaps/duplicates");

    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = max_rss.load(Ordering::Relaxed);
    let growth_mb = (peak.saturating_sub(baseline)) as f64 / 1024.0;
    eprintln!(
        "flood of {n} x {text_len} B took {flood_time:?}; RSS baseline {baseline} kB, peak {peak} kB (+{growth_mb:.1} MB)"
    );
    assert!(
        growth_mb < 64.0,
        "server RSS grew by {growth_mb:.1} MB with a stalled consumer (baseline {baseline} kB, peak {peak} kB)"
    );

    // the slow client read what was left after it was cut off: it must end with the
    // `disconnect` event and the close frame, both with 4008
    let o = slow_reader.join().unwrap();
    eprintln!(
        "slow client: cut off {:?} after the flood started; then {} messages, disconnect event {:?}, {} messages after it, then {} {:?}, {:?} after the overflow was seen",
        o.seen_at.map(|t| t.duration_since(started)),
        o.msgs,
        o.disconnect_ev,
        o.msgs_after_disconnect,
        o.outcome,
        o.close,
        o.read_for
    );
    assert!(
        o.seen_at.is_some(),
        "the slow client was never cut off (chat_outbox_overflows_total stayed 0)"
    );
    assert_ne!(
        o.outcome, "timeout",
        "slow client still connected {:?} after it was cut off ({} messages read)",
        o.read_for, o.msgs
    );
    assert!(
        o.msgs < n,
        "slow client received all {n} messages: it was never cut off"
    );
    assert_eq!(
        o.outcome, "close frame",
        "the slow client's connection ended without a close frame ({:?} after the overflow was seen; disconnect event {:?})",
        o.read_for, o.disconnect_ev
    );
    assert_eq!(o.close, Some(4008), "slow consumer close code");
    let ev = o.disconnect_ev.unwrap_or_else(|| {
        panic!(
            "no `disconnect` event before the close frame ({} messages read)",
            o.msgs
        )
    });
    assert_eq!(ev["code"], 4008, "{ev}");
    assert_eq!(
        o.msgs_after_disconnect, 0,
        "messages after the `disconnect` event (its backlog is dropped)"
    );
    // server still healthy
    let mut p = s.ws_user(&pub_users[0]);
    p.ping();
}

/// What the slow client saw once it resumed reading.
struct SlowOutcome {
    /// When the overflow was seen in /metrics (None: never, the flood ended first).
    seen_at: Option<Instant>,
    /// Message events read before the `disconnect` event.
    msgs: usize,
    disconnect_ev: Option<Value>,
    msgs_after_disconnect: usize,
    /// "close frame", "eof" or "timeout".
    outcome: &'static str,
    close: Option<u16>,
    /// From seeing the overflow to the end of the reading.
    read_for: Duration,
}

/// `chat_outbox_overflows_total` from the server's /metrics.
fn slow_consumers(agent: &ureq::Agent, url: &str) -> u64 {
    let body = agent
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .into_string()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    body.lines()
        .find_map(|l| l.strip_prefix("chat_outbox_overflows_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no chat_outbox_overflows_total in /metrics:\n{body}"))
}

/// Waits (without reading) until the server counts a slow consumer, then reads `slow`
/// to its end.
fn read_after_overflow(mut slow: RawWs, metrics: &str, flood_over: &AtomicBool) -> SlowOutcome {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).build();
    let mut o = SlowOutcome {
        seen_at: None,
        msgs: 0,
        disconnect_ev: None,
        msgs_after_disconnect: 0,
        outcome: "timeout",
        close: None,
        read_for: Duration::ZERO,
    };
    loop {
        // read the flag first: a count of 0 after the flood ended is final
        let over = flood_over.load(Ordering::Relaxed);
        if slow_consumers(&agent, metrics) > 0 {
            break;
        }
        if over {
            return o;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let seen = Instant::now();
    o.seen_at = Some(seen);
    let deadline = seen + Duration::from_secs(30);
    o.outcome = loop {
        let rem = deadline.saturating_duration_since(Instant::now());
        match slow.read_frame(rem) {
            RawFrame::Frame(1, p) => {
                let t = String::from_utf8_lossy(&p);
                if message_seq(&t).is_some() {
                    if o.disconnect_ev.is_some() {
                        o.msgs_after_disconnect += 1;
                    } else {
                        o.msgs += 1;
                    }
                } else if t.contains("\"disconnect\"") {
                    o.disconnect_ev = serde_json::from_str(&t).ok();
                }
            }
            RawFrame::Frame(8, p) => {
                o.close = Some(close_code(&p));
                break "close frame";
            }
            RawFrame::Frame(_, _) => {}
            RawFrame::Eof => break "eof",
            RawFrame::Timeout => break "timeout",
        }
    };
    o.read_for = seen.elapsed();
    o
}

#[test]
fn silent_client_is_closed_after_client_timeout() {
    let s = TestServer::start(
        Opts::new()
            .env("CHAT_HEARTBEAT_S", "0.3")
            .env("CHAT_CLIENT_TIMEOUT_S", "1"),
    );
    let u = s.user("quiet");
    let auth = format!("Bearer {}", u.token);
    let mut raw = RawWs::connect(&s.addr, "/ws", &[("Authorization", auth.as_str())], None)
        .unwrap_or_else(|e| panic!("raw upgrade: {e}"));
    let w = raw.read_json_until(|v| v["ev"] == "welcome", T).expect("welcome");
    assert_eq!(w["heartbeat_s"].as_f64(), Some(0.3), "{w}");
    // never write anything, never answer pings
    let mut pings = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    let outcome = loop {
        let rem = deadline.saturating_duration_since(Instant::now());
        match raw.read_frame(rem) {
            RawFrame::Frame(9, _) => pings += 1,
            RawFrame::Frame(8, p) => break format!("close {}", close_code(&p)),
            RawFrame::Frame(_, _) => {}
            RawFrame::Eof => break "eof".to_string(),
            RawFrame::Timeout => {
                panic!("silent client still connected 10 s later (timeout is 1 s); {pings} pings seen")
            }
        }
    };
    eprintln!("silent client: {pings} pings, then {outcome}");
    assert!(pings >= 1, "server must send pings every 0.3 s");
}

#[test]
fn client_answering_pings_stays_connected() {
    let s = TestServer::start(
        Opts::new()
            .env("CHAT_HEARTBEAT_S", "0.3")
            .env("CHAT_CLIENT_TIMEOUT_S", "1"),
    );
    let u = s.user("chatty");
    let mut c = s.ws_user(&u);
    c.ok(json!({"op":"join","channel":"room:hb"}));
    // keep reading (tungstenite answers pings) well past the client timeout. A fixed
    // time on purpose: the close being ruled out is timer-driven (the heartbeat checks
    // every 0.3 s for 1 s of silence), so no request orders it; only outlasting the
    // timeout several times over does.
    let closed = c.wait_closed(secs(3.5));
    assert!(closed.is_none(), "a client answering pings was closed: {closed:?}");
    c.ping();
    let closed = c.wait_closed(secs(1.5));
    assert!(closed.is_none(), "closed: {closed:?}");
    c.ok(json!({"op":"publish","channel":"room:hb","data":text_msg("still here")}));
}
