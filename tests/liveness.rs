//! Liveness: any frame from the client counts as life, and so does the client taking data
//! that was waiting for it. A client that reads steadily behind a large backlog stays
//! even though it never answers a ping; one that neither reads nor sends is closed.
mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const CH: &str = "room:live";
const TIMEOUT_S: f64 = 1.5;

fn server() -> TestServer {
    TestServer::start(
        Opts::new()
            .env("CHAT_HEARTBEAT_S", "0.3")
            .env("CHAT_CLIENT_TIMEOUT_S", &TIMEOUT_S.to_string())
            .env("CHAT_OUTBOX_MAX_FRAMES", "100000")
            .env("CHAT_OUTBOX_MAX_BYTES", "67108864")
            .env("CHAT_PUBLISH_RATE", "1000000")
            .env("RUST_LOG", "warn"),
    )
}

/// A raw client (never answers pings) that joined `CH`.
fn raw_member(s: &TestServer, name: &str, rcvbuf: usize) -> RawWs {
    let u = s.user(name);
    let auth = format!("Bearer {}", u.token);
    let mut raw = RawWs::connect(&s.addr, "/ws", &[("Authorization", auth.as_str())], Some(rcvbuf))
        .unwrap_or_else(|e| panic!("raw upgrade: {e}"));
    raw.read_json_until(|v| v["ev"] == "welcome", T).expect("welcome");
    raw.send_json(&json!({"id":1,"op":"join","channel":CH})).unwrap();
    let j = raw.read_json_until(|v| v["id"] == 1, T).expect("join reply");
    assert!(j.get("ok").is_some(), "{j}");
    raw
}

/// Publishes `n` messages of about `len` bytes, at most 16 unanswered at a time.
fn publish(p: &mut WsClient, n: usize, len: usize) {
    let text = "x".repeat(len);
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(p.send_request(json!({"op":"publish","channel":CH,"data":text_msg(&format!("{i} {text}"))})));
        if ids.len() == 16 || i + 1 == n {
            for id in ids.drain(..) {
                let r = p.wait_reply(id, T);
                assert!(r.get("ok").is_some(), "publish: {r}");
            }
        }
    }
}

fn metric(s: &TestServer, name: &str) -> u64 {
    let body = s.http("GET", "/metrics", None, None, &[]).text;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[test]
fn slow_steady_reader_behind_a_backlog_stays_without_answering_pings() {
    let s = server();
    let mut reader = raw_member(&s, "steady", 16 * 1024);
    let mut publisher = s.ws_user(&s.user("pusher"));
    const N: usize = 2500;
    // 5 MB pushed at once: the reader takes several client timeouts to read it, and
    // every ping the server sends waits behind that data.
    let pushing = std::thread::spawn(move || {
        publish(&mut publisher, N, 2000);
        publisher
    });
    let started = Instant::now();
    let mut got = 0;
    while got < N {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "reading {N} messages took too long ({got})"
        );
        match reader.read_frame(Duration::from_secs(10)) {
            RawFrame::Frame(1, p) if p.windows(9).any(|w| w == b"\"message\"") => {
                got += 1;
                // about 600 KB/s: slow, but steady
                std::thread::sleep(Duration::from_millis(3));
            }
            RawFrame::Frame(8, p) => panic!(
                "a reader taking its data was closed with {} after {:?} ({got} of {N} read)",
                close_code(&p),
                started.elapsed()
            ),
            RawFrame::Frame(_, _) => {}
            RawFrame::Eof => panic!("connection closed after {:?} ({got} of {N} read)", started.elapsed()),
            RawFrame::Timeout => panic!("no data for 10 s ({got} of {N} read)"),
        }
    }
    let _publisher = pushing.join().expect("publisher");
    let read_for = started.elapsed();
    eprintln!("read {N} messages in {read_for:?} without answering a ping");
    assert!(
        read_for > secs(TIMEOUT_S * 2.0),
        "the backlog must outlast the client timeout for this test to mean anything ({read_for:?})"
    );
    // still connected and served
    reader.send_json(&json!({"id":2,"op":"ping"})).unwrap();
    let r = reader
        .read_json_until(|v| v["id"] == 2, T)
        .expect("ping reply after the backlog");
    assert!(r.get("ok").is_some(), "{r}");
}

#[test]
fn idle_client_that_neither_reads_nor_sends_is_closed_with_1000() {
    let s = server();
    let mut silent = raw_member(&s, "silent", 64 * 1024);
    // Neither read nor write for twice the timeout; the kernel keeps what arrives.
    std::thread::sleep(secs(TIMEOUT_S * 2.0 + 1.0));
    let mut pings = 0;
    let outcome = loop {
        match silent.read_frame(Duration::from_secs(5)) {
            RawFrame::Frame(9, _) => pings += 1,
            RawFrame::Frame(8, p) => break close_code(&p),
            RawFrame::Frame(_, _) => {}
            RawFrame::Eof => panic!("EOF without a close frame"),
            RawFrame::Timeout => panic!("still open 5 s after the client timeout ({pings} pings)"),
        }
    };
    assert_eq!(outcome, 1000, "close code");
    assert!(pings >= 1, "pings were sent");
}

#[test]
fn client_whose_tcp_stack_takes_nothing_is_cut_after_the_timeout() {
    let s = server();
    // A tiny receive buffer, never read: once it is full nothing more is acknowledged.
    let mut stuck = raw_member(&s, "stuck", 4096);
    let mut publisher = s.ws_user(&s.user("pusher"));
    // 1 MB: fills every buffer between the server and the client, far below the outbox
    // limits (so this is not a slow-consumer close).
    publish(&mut publisher, 500, 2000);
    let t0 = Instant::now();
    // The timeout, then the close frame's grace (5 s) before the socket is cut.
    let gone = wait_until(secs(TIMEOUT_S + 10.0), || metric(&s, "chat_connections") <= 1);
    assert!(gone, "the stuck client is still registered {:?} later", t0.elapsed());
    // Reading now finds what the kernel kept, then the end of the stream.
    let deadline = Instant::now() + Duration::from_secs(20);
    let end = loop {
        assert!(Instant::now() < deadline, "the socket was never cut");
        match stuck.read_frame(Duration::from_secs(10)) {
            RawFrame::Frame(8, p) => break Some(close_code(&p)),
            RawFrame::Frame(_, _) => {}
            RawFrame::Eof => break None,
            RawFrame::Timeout => panic!("no EOF: the socket of a client that takes nothing stays open"),
        }
    };
    if let Some(code) = end {
        assert_eq!(code, 1000, "close code");
    }
    assert_eq!(
        metric(&s, "chat_outbox_overflows_total"),
        0,
        "closed by the heartbeat, not as a slow consumer"
    );
}
