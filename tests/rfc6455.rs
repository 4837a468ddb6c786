//! RFC 6455 conformance of the server side, with raw frames against the real server.
//! Tests are named after the sections of the Autobahn test suite they follow.

mod common;
#[path = "common/rawws.rs"]
mod rawws;

use std::thread::JoinHandle;

use common::TestServer;
use rawws::*;

const PING: &str = r#"{"id":1,"op":"ping"}"#;

fn server() -> (TestServer, String) {
    let s = TestServer::start_default();
    let token = s.mint("rfc", "rfc", "user", 3600);
    (s, token)
}

/// A reply to request 1 (the `ping` request).
fn is_ping_reply(text: &str) -> bool {
    text.contains(r#""id":1"#) && text.contains(r#""ok""#)
}

/// Connections that must each end with a given close code, checked in parallel (without the
/// client's own close the server lingers about a second before it ends the TCP
/// connection). Dropping it waits for every check and fails with the first failure.
struct Closing {
    addr: String,
    token: String,
    running: Vec<JoinHandle<()>>,
}

impl Closing {
    fn new(s: &TestServer, token: &str) -> Closing {
        Closing {
            addr: s.addr.clone(),
            token: token.to_string(),
            running: Vec::new(),
        }
    }

    /// Sends `frames` on a fresh connection; the server must close with `code`.
    fn expect(&mut self, code: u16, frames: &[Vec<u8>], what: &str) {
        let (addr, token) = (self.addr.clone(), self.token.clone());
        let (frames, what) = (frames.to_vec(), what.to_string());
        self.running.push(std::thread::spawn(move || {
            let mut c = FrameConn::open(&addr, &token);
            for f in &frames {
                if !c.send_raw(f) {
                    break;
                }
            }
            let (got, reason) = c.expect_close();
            assert_eq!(got, code, "{what}: closed with {got} ({reason})");
        }));
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        for h in self.running.drain(..) {
            if let Err(panic) = h.join() {
                if !std::thread::panicking() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }
}

fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    encode(first, payload, true)
}

/// `PING` padded with spaces to `len` bytes.
fn padded(len: usize) -> String {
    format!("{PING}{}", " ".repeat(len - PING.len()))
}

#[test]
fn opening_handshake_version_and_subprotocol() {
    let (s, token) = server();
    let auth = format!("Bearer {token}");
    let auth = ("Authorization", auth.as_str());
    for version in ["8", "12", "14"] {
        let h = handshake(&s.addr, &[auth, ("Sec-WebSocket-Version", version)]);
        assert_eq!(h.status, 426, "version {version}: {:?}", h.headers);
        assert_eq!(h.header("Sec-WebSocket-Version"), ["13"], "{:?}", h.headers);
    }
    // Another version is refused before the credentials are looked at.
    let h = handshake(
        &s.addr,
        &[("Authorization", "Bearer nope"), ("Sec-WebSocket-Version", "8")],
    );
    assert_eq!(h.status, 426, "{:?}", h.headers);

    let offers: [(&[&str], bool); 6] = [
        (&["chat.v1"], true),
        (&["other, chat.v1"], true),
        (&["other", "x.v2,chat.v1 , y"], true),
        (&["other, chat.v2"], false),
        (&["CHAT.V1"], false),
        (&[], false),
    ];
    for (offered, selected) in offers {
        let mut headers = vec![auth];
        headers.extend(offered.iter().map(|o| ("Sec-WebSocket-Protocol", *o)));
        let h = handshake(&s.addr, &headers);
        assert_eq!(h.status, 101, "{offered:?}: {:?}", h.headers);
        let want: &[&str] = if selected { &["chat.v1"] } else { &[] };
        assert_eq!(h.header("Sec-WebSocket-Protocol"), want, "offered {offered:?}");
        let mut c = h.conn.unwrap();
        let w = c.expect_frame(OP_TEXT);
        assert!(String::from_utf8_lossy(&w.payload).contains("welcome"), "{w:?}");
    }
}

#[test]
fn framing_1_x_length_encodings_and_masking() {
    let (s, token) = server();
    let mut closing = Closing::new(&s, &token);
    let mut c = FrameConn::open(&s.addr, &token);
    // 7-bit, 16-bit and 64-bit length encodings of a request padded with spaces.
    for len in [125, 126, 65535, 65536] {
        assert!(c.text(&padded(len)));
        let f = c.expect_frame(OP_TEXT);
        // Server frames: final, no RSV bits, never masked.
        assert!(f.fin && f.rsv == 0 && !f.masked, "{f:?}");
        let reply = String::from_utf8(f.payload).unwrap();
        assert!(is_ping_reply(&reply), "{len} bytes: {reply}");
    }
    // 1.2: binary messages get an error reply and the connection stays open.
    assert!(c.send(FIN | OP_BINARY, b"\x00\x01\x02"));
    let reply = c.next_text();
    assert!(reply.contains("bad_request") && reply.contains("binary"), "{reply}");
    assert!(is_ping_reply(&c.request(PING)));
    // Server control frames are not masked either; unmasked client frames fail.
    let f = c.expect_pong_for(b"m");
    assert!(!f.masked, "{f:?}");
    closing.expect(1002, &[encode(FIN | OP_TEXT, PING.as_bytes(), false)], "unmasked text");
    closing.expect(1002, &[encode(FIN | OP_PING, b"", false)], "unmasked ping");
}

#[test]
fn pingpong_2_x() {
    let (s, token) = server();
    let mut closing = Closing::new(&s, &token);
    let mut c = FrameConn::open(&s.addr, &token);
    // 2.1-2.4: empty, text, binary and 125-byte payloads come back identical.
    c.expect_pong_for(b"");
    c.expect_pong_for(b"Hello, world!");
    c.expect_pong_for(&[0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff]);
    let max: Vec<u8> = (0..125u8).collect();
    c.expect_pong_for(&max);
    // 2.7: an unsolicited pong is ignored: the next frame is the reply to the request.
    assert!(c.send(FIN | OP_PONG, b"unsolicited"));
    assert!(is_ping_reply(&c.request(PING)));
    // 2.10: ten pings in one write: pongs in order, the last ping always answered
    // (earlier ones may be left out when pongs pile up, RFC 6455 §5.5.3).
    let pings: Vec<u8> = (0..10u8).flat_map(|i| masked(FIN | OP_PING, &[b'p', i])).collect();
    assert!(c.send_raw(&pings));
    let mut answered = Vec::new();
    while answered.last() != Some(&9) {
        let p = c.expect_frame(OP_PONG).payload;
        assert!(p.len() == 2 && p[0] == b'p', "{p:?}");
        assert!(
            answered.last().is_none_or(|l| *l < p[1]),
            "out of order: {answered:?} then {p:?}"
        );
        answered.push(p[1]);
    }
    assert!(is_ping_reply(&c.request(PING)), "nothing else pending");
    // 2.5: a ping of 126 bytes; the same for a pong, and for a ping announcing 1 MiB.
    closing.expect(1002, &[masked(FIN | OP_PING, &[b'x'; 126])], "ping of 126 bytes");
    closing.expect(1002, &[masked(FIN | OP_PONG, &[b'x'; 126])], "pong of 126 bytes");
    let huge = [&[FIN | OP_PING, 0x80 | 127][..], &(1u64 << 20).to_be_bytes(), &[0; 4]].concat();
    closing.expect(1002, &[huge], "ping announcing 1 MiB");
}

#[test]
fn reserved_3_x() {
    let (s, token) = server();
    let mut closing = Closing::new(&s, &token);
    for rsv in [0x40, 0x20, 0x10, 0x70] {
        // 3.1-3.3: text with RSV bits; 3.4 ping; 3.5 binary; 3.6 close.
        let first = [FIN | OP_TEXT, FIN | OP_PING, FIN | OP_BINARY, FIN | OP_CLOSE];
        for f in first {
            let what = format!("first byte {:#04x}", f | rsv);
            closing.expect(1002, &[masked(f | rsv, PING.as_bytes())], &what);
        }
    }
    // 3.2: a valid request, then a frame with RSV2: the request is answered first.
    let mut c = FrameConn::open(&s.addr, &token);
    let both = [
        masked(FIN | OP_TEXT, PING.as_bytes()),
        masked(FIN | OP_TEXT | 0x20, b"{}"),
    ]
    .concat();
    assert!(c.send_raw(&both));
    let reply = c.next_text();
    assert!(is_ping_reply(&reply), "{reply}");
    assert_eq!(c.expect_close().0, 1002);
}

#[test]
fn opcodes_4_x() {
    let (s, token) = server();
    let mut closing = Closing::new(&s, &token);
    // 4.1.x: reserved data opcodes; 4.2.x: reserved control opcodes.
    for op in (3..=7).chain(0xb..=0xf) {
        let what = format!("opcode {op:#x}");
        closing.expect(1002, &[masked(FIN | op, b"")], &what);
        closing.expect(1002, &[masked(FIN | op, b"payload")], &what);
    }
    // 4.1.3: the request before the bad frame is still answered.
    let mut c = FrameConn::open(&s.addr, &token);
    assert!(c.send_raw(&[masked(FIN | OP_TEXT, PING.as_bytes()), masked(FIN | 5, b"")].concat()));
    assert!(is_ping_reply(&c.next_text()));
    assert_eq!(c.expect_close().0, 1002);
}

/// `PING` cut into `n` fragments of a text message.
fn fragments(text: &str, n: usize) -> Vec<Vec<u8>> {
    let bytes = text.as_bytes();
    let size = bytes.len().div_ceil(n);
    let chunks: Vec<&[u8]> = bytes.chunks(size).collect();
    let last = chunks.len() - 1;
    let op = |i: usize| if i == 0 { OP_TEXT } else { OP_CONT };
    let fin = |i: usize| if i == last { FIN } else { 0 };
    chunks
        .iter()
        .enumerate()
        .map(|(i, ch)| masked(fin(i) | op(i), ch))
        .collect()
}

#[test]
fn fragmentation_5_x() {
    let (s, token) = server();
    let mut closing = Closing::new(&s, &token);
    // 5.1 / 5.2: fragmented control frames.
    for op in [OP_PING, OP_PONG, OP_CLOSE] {
        let frames = [masked(op, b"frag"), masked(FIN | OP_CONT, b"ment")];
        closing.expect(1002, &frames, &format!("fragmented opcode {op:#x}"));
    }
    let mut c = FrameConn::open(&s.addr, &token);
    // 5.3-5.5: a request in two fragments, then in one fragment per byte.
    for n in [2, PING.len()] {
        for f in fragments(PING, n) {
            assert!(c.send_raw(&f));
        }
        assert!(is_ping_reply(&c.next_text()));
    }
    // 5.6-5.8: a ping between fragments is answered at once, before the message ends;
    // a pong there is ignored.
    let f = fragments(PING, 3);
    assert!(c.send_raw(&f[0]));
    c.expect_pong_for(b"between");
    assert!(c.send(FIN | OP_PONG, b"ignored"));
    assert!(c.send_raw(&f[1]));
    c.expect_pong_for(b"again");
    assert!(c.send_raw(&f[2]));
    assert!(is_ping_reply(&c.next_text()));
    // 5.9-5.13: continuations without a start.
    closing.expect(1002, &[masked(FIN | OP_CONT, PING.as_bytes())], "final continuation");
    closing.expect(1002, &[masked(OP_CONT, b"{")], "continuation");
    let frames = [masked(OP_CONT, b"{"), masked(FIN | OP_TEXT, PING.as_bytes())];
    closing.expect(1002, &frames, "continuation, then text");
    // 5.18: a new text or binary message inside a fragmented one.
    for op in [OP_TEXT, OP_BINARY] {
        let frames = [masked(OP_TEXT, b"{"), masked(FIN | op, b"}")];
        closing.expect(1002, &frames, &format!("opcode {op} inside a message"));
        let frames = [masked(OP_TEXT, b"{"), masked(op, b"\"")];
        closing.expect(1002, &frames, &format!("fragment {op} inside a message"));
    }
    // 5.19 / 5.20: fragments and pings interleaved in one write: every pong comes back
    // at once, the reply after the last fragment.
    let f = fragments(PING, 4);
    let mut mixed = Vec::new();
    for (i, frag) in f.iter().enumerate() {
        mixed.extend_from_slice(frag);
        if i < 3 {
            mixed.extend(masked(FIN | OP_PING, &[b'i', i as u8]));
        }
    }
    assert!(c.send_raw(&mixed));
    for i in 0..3u8 {
        assert_eq!(c.expect_frame(OP_PONG).payload, [b'i', i]);
    }
    assert!(is_ping_reply(&c.next_text()));
}

const PUBLISH_HEAD: &[u8] = br#"{"id":2,"op":"publish","channel":"room:utf8","data":{"type":"text","text":""#;

/// A publish request carrying `text` (raw bytes inside the JSON string).
fn publish(text: &[u8]) -> Vec<u8> {
    [PUBLISH_HEAD, text, br#""}}"#].concat()
}

/// Text message `msg` cut at the byte offsets `cuts`.
fn cut(msg: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(msg.len());
    let last = bounds.len() - 2;
    (0..=last)
        .map(|i| {
            let op = if i == 0 { OP_TEXT } else { OP_CONT };
            let fin = if i == last { FIN } else { 0 };
            masked(fin | op, &msg[bounds[i]..bounds[i + 1]])
        })
        .collect()
}

#[test]
fn utf8_6_x() {
    let (s, token) = server();
    let mut closing = Closing::new(&s, &token);
    let mut c = FrameConn::open(&s.addr, &token);
    assert!(c.text(r#"{"id":1,"op":"join","channel":"room:utf8"}"#));
    c.text_containing(r#""id":1,"ok""#);
    // 6.2 / 6.5: valid UTF-8 in one frame, and split inside each multibyte sequence.
    let kosme = "κόσμε €𝄞 ß";
    let msg = publish(kosme.as_bytes());
    let starts: Vec<usize> = kosme.char_indices().map(|(i, _)| i).collect();
    let head = PUBLISH_HEAD.len();
    let inner: Vec<usize> = (1..kosme.len())
        .filter(|i| !starts.contains(i))
        .map(|i| head + i)
        .collect();
    assert_eq!(
        inner.len(),
        kosme.len() - kosme.chars().count(),
        "a cut inside each sequence"
    );
    for (round, cuts) in [vec![], inner, (1..msg.len()).collect()].into_iter().enumerate() {
        for f in cut(&msg, &cuts) {
            assert!(c.send_raw(&f));
        }
        // The acknowledgement (seq 1, 2, 3) and the message event, in either order.
        let seq = format!(r#""seq":{}"#, round + 1);
        let (mut ack, mut ev) = (None, None);
        while ack.is_none() || ev.is_none() {
            let t = c.text_containing(&seq);
            let slot = if t.contains(r#""id":2,"ok""#) {
                &mut ack
            } else {
                &mut ev
            };
            *slot = Some(t);
        }
        let ev = ev.unwrap();
        assert!(
            ev.contains(r#""ev":"message""#) && ev.contains(kosme),
            "cuts {cuts:?}: {ev}"
        );
    }
    let bad: [&[u8]; 6] = [
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited", // surrogate (6.x, 7.5.1)
        b"\xc0\xaf",                                                       // overlong '/'
        b"\xf4\x90\x80\x80",                                               // above U+10FFFF
        b"\xff",                                                           // never valid
        b"\x80",                                                           // lone continuation
        b"\xe2\x82",                                                       // truncated sequence
    ];
    for b in bad {
        let what = format!("{b:x?}");
        closing.expect(1007, &[masked(FIN | OP_TEXT, &publish(b))], &what);
        // The same, one byte per fragment.
        let msg = publish(b);
        closing.expect(1007, &cut(&msg, &(1..msg.len()).collect::<Vec<_>>()), &what);
    }
    // A message whose last fragment leaves a sequence incomplete.
    closing.expect(1007, &cut(b"{\"a\":\"\xe2\x82", &[6]), "truncated at the end");
    // Invalid across fragments: a lead byte, then a fragment starting with ASCII.
    closing.expect(1007, &cut(b"{\"a\":\"\xe2a\"}", &[7]), "lead byte, then ASCII");
    // 6.4: fail fast: the error is found in the first fragment, before the message ends.
    let mut c = FrameConn::open(&s.addr, &token);
    assert!(c.send(OP_TEXT, b"{\"a\":\"\xed\xa0\x80"));
    assert_eq!(c.expect_close().0, 1007);
}

#[test]
fn close_7_x_handshake() {
    let (s, token) = server();
    let mut closing = Closing::new(&s, &token);
    // 7.1.1 / 7.3.1: an empty close is answered with 1000 and the TCP connection ends.
    closing.expect(1000, &[masked(FIN | OP_CLOSE, b"")], "empty close");
    // 7.1.3: nothing is answered after the close: a ping behind it gets no pong.
    let close_then_ping = [
        masked(FIN | OP_CLOSE, &close_payload(1000, b"")),
        masked(FIN | OP_PING, b"x"),
    ];
    closing.expect(1000, &[close_then_ping.concat()], "close, then ping");
    // 7.1.2: after its own close (a protocol error) the server sends nothing else, even
    // when more requests arrive behind the bad frame.
    let after = [
        masked(FIN | 3, b""),
        masked(FIN | OP_TEXT, PING.as_bytes()),
        masked(FIN | OP_PING, b""),
    ];
    closing.expect(1002, &[after.concat()], "requests behind a bad frame");
    // 7.3.3-7.3.5: a code, a code and a reason, a reason of 123 bytes.
    for reason in [&b""[..], b"Hello World!", &[b'r'; 123]] {
        let f = masked(FIN | OP_CLOSE, &close_payload(1000, reason));
        closing.expect(1000, &[f], &format!("reason of {} bytes", reason.len()));
    }
    // 7.3.2: a close payload of one byte; 7.3.6: of 126 bytes.
    closing.expect(1002, &[masked(FIN | OP_CLOSE, b"a")], "close of one byte");
    let long = close_payload(1000, &[b'r'; 124]);
    closing.expect(1002, &[masked(FIN | OP_CLOSE, &long)], "close of 126 bytes");
    // 7.5.1: a reason that is not UTF-8.
    let bad = close_payload(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited");
    closing.expect(1007, &[masked(FIN | OP_CLOSE, &bad)], "close reason not UTF-8");
}

#[test]
fn close_7_x_codes() {
    let (s, token) = server();
    let mut closing = Closing::new(&s, &token);
    // 7.7.x: valid codes (1012-1014 per the IANA registry) get a normal close.
    let valid = [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999,
    ];
    for code in valid {
        let f = masked(FIN | OP_CLOSE, &close_payload(code, b"bye"));
        closing.expect(1000, &[f], &format!("client closed with {code}"));
    }
    // 7.9.x: codes that must not appear on the wire.
    let invalid = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535];
    for code in invalid {
        let f = masked(FIN | OP_CLOSE, &close_payload(code, b""));
        closing.expect(1002, &[f], &format!("close code {code}"));
    }
}

#[test]
fn limits_9_x() {
    let (s, token) = server();
    let mut closing = Closing::new(&s, &token);
    // The frame limit is max_message_bytes (65536 by default) plus 4096.
    let limit = 65536 + 4096;
    let mut c = FrameConn::open(&s.addr, &token);
    assert!(
        is_ping_reply(&c.request(&padded(limit))),
        "a frame at the limit is accepted"
    );
    let over = padded(limit + 1);
    closing.expect(1009, &[masked(FIN | OP_TEXT, over.as_bytes())], "one frame over");
    // A message over the limit in fragments that are each under it.
    let frames = cut(over.as_bytes(), &[limit / 2]);
    closing.expect(1009, &frames, "a fragmented message over the limit");
    // A header announcing 2^40 bytes fails at once, with no payload sent.
    let header = [&[FIN | OP_BINARY, 0x80 | 127][..], &(1u64 << 40).to_be_bytes(), &[0; 4]].concat();
    closing.expect(1009, &[header], "announced 1 TiB");
}
