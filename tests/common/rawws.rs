//! A raw WebSocket client for conformance tests: a hand-written opening handshake, then
//! client frames with any FIN, RSV, opcode, mask and payload, and server frames read
//! one by one (never reassembled, pings never answered).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The answer to an opening handshake.
pub struct Handshake {
    pub status: u16,
    /// Header lines after the status line, as sent.
    pub headers: Vec<(String, String)>,
    pub conn: Option<FrameConn>,
}

impl Handshake {
    /// Every value of header `name`.
    pub fn header(&self, name: &str) -> Vec<&str> {
        let named = self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name));
        named.map(|(_, v)| v.as_str()).collect()
    }
}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// RSV1-3 as the bits 0x70 of the first byte.
    pub rsv: u8,
    pub op: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The code of a close frame (1005 when it has none).
    pub fn close_code(&self) -> u16 {
        match self.payload[..] {
            [hi, lo, ..] => u16::from_be_bytes([hi, lo]),
            _ => 1005,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Got {
    Frame(Frame),
    /// The server closed (or reset) the TCP connection.
    Closed,
    Timeout,
}

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xa;
pub const FIN: u8 = 0x80;

/// Sends an opening handshake with the usual headers (version 13 unless `headers`
/// name another `Sec-WebSocket-Version`) plus `headers`, and reads the response head.
pub fn handshake(addr: &str, headers: &[(&str, &str)]) -> Handshake {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).ok();
    let mut req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("Sec-WebSocket-Version"))
    {
        req.push_str("Sec-WebSocket-Version: 13\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).expect("send handshake");
    let mut conn = FrameConn {
        stream,
        buf: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let end = loop {
        if let Some(p) = conn.buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let have = conn.buf.len();
        assert!(
            conn.fill(have + 1, deadline).is_ok(),
            "no response head to the handshake"
        );
    };
    let head = String::from_utf8_lossy(&conn.buf[..end]).into_owned();
    conn.buf.drain(..end);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Handshake {
        status,
        headers,
        conn: (status == 101).then_some(conn),
    }
}

/// A client frame: `first` is the whole first byte (FIN, RSV, opcode).
pub fn encode(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    let n = payload.len();
    if n < 126 {
        out.push(mask_bit | n as u8);
    } else if n <= usize::from(u16::MAX) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    if masked {
        let key = [0x5a, 0x0f, 0xc3, 0x96];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A close payload: code and reason bytes.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    [&code.to_be_bytes()[..], reason].concat()
}

/// An upgraded connection.
pub struct FrameConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl FrameConn {
    /// Upgrades with a bearer token and reads the `welcome` frame.
    pub fn open(addr: &str, token: &str) -> FrameConn {
        let auth = format!("Bearer {token}");
        let h = handshake(addr, &[("Authorization", auth.as_str())]);
        assert_eq!(h.status, 101, "upgrade refused: {:?}", h.headers);
        let mut c = h.conn.expect("upgraded");
        let w = c.expect_frame(OP_TEXT);
        assert!(String::from_utf8_lossy(&w.payload).contains("\"welcome\""), "{w:?}");
        c
    }

    /// Sends raw bytes; false when the server has gone.
    pub fn send_raw(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Sends one masked frame; `first` is FIN | RSV | opcode.
    pub fn send(&mut self, first: u8, payload: &[u8]) -> bool {
        self.send_raw(&encode(first, payload, true))
    }

    /// Sends a whole text message in one frame.
    pub fn text(&mut self, s: &str) -> bool {
        self.send(FIN | OP_TEXT, s.as_bytes())
    }

    fn fill(&mut self, want: usize, deadline: Instant) -> Result<(), Got> {
        let mut chunk = [0u8; 16384];
        while self.buf.len() < want {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Got::Timeout);
            }
            self.stream.set_read_timeout(Some(left)).ok();
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(Got::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(Got::Closed),
            }
        }
        Ok(())
    }

    fn read_frame(&mut self, deadline: Instant) -> Result<Frame, Got> {
        self.fill(2, deadline)?;
        let (b0, b1) = (self.buf[0], self.buf[1]);
        let (mut len, mut at) = (u64::from(b1 & 0x7f), 2);
        if len == 126 {
            self.fill(4, deadline)?;
            len = u64::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
            at = 4;
        } else if len == 127 {
            self.fill(10, deadline)?;
            len = u64::from_be_bytes(self.buf[2..10].try_into().unwrap());
            at = 10;
        }
        let masked = b1 & 0x80 != 0;
        let start = at + if masked { 4 } else { 0 };
        let end = start + len as usize;
        self.fill(end, deadline)?;
        let mut payload = self.buf[start..end].to_vec();
        if masked {
            let key: [u8; 4] = self.buf[at..at + 4].try_into().unwrap();
            payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= key[i % 4]);
        }
        self.buf.drain(..end);
        Ok(Frame {
            fin: b0 & 0x80 != 0,
            rsv: b0 & 0x70,
            op: b0 & 0x0f,
            masked,
            payload,
        })
    }

    /// The next frame, the end of the connection, or a timeout.
    pub fn read(&mut self, timeout: Duration) -> Got {
        match self.read_frame(Instant::now() + timeout) {
            Ok(f) => Got::Frame(f),
            Err(r) => r,
        }
    }

    /// The next frame, which must have opcode `op` (within 10 s).
    pub fn expect_frame(&mut self, op: u8) -> Frame {
        match self.read(Duration::from_secs(10)) {
            Got::Frame(f) if f.op == op => f,
            other => panic!("expected a frame with opcode {op:#x}, got {other:?}"),
        }
    }

    /// The server's close frame, then the end of the TCP connection with nothing in
    /// between. Returns the close code and the reason.
    pub fn expect_close(&mut self) -> (u16, String) {
        let f = self.expect_frame(OP_CLOSE);
        assert!(f.fin && f.rsv == 0 && !f.masked, "close frame ill-formed: {f:?}");
        assert!(f.payload.len() != 1 && f.payload.len() <= 125, "close payload: {f:?}");
        self.expect_eof();
        let reason = String::from_utf8(f.payload.get(2..).unwrap_or_default().to_vec()).expect("UTF-8 reason");
        (f.close_code(), reason)
    }

    /// Nothing more arrives and the server ends the TCP connection (within 3 s, well
    /// before the server's 5 s grace for undelivered close frames).
    pub fn expect_eof(&mut self) {
        match self.read(Duration::from_secs(3)) {
            Got::Closed => {}
            other => panic!("expected the server to end the TCP connection, got {other:?}"),
        }
    }

    /// Pings with `payload`; the next frame must be the identical pong.
    pub fn expect_pong_for(&mut self, payload: &[u8]) -> Frame {
        assert!(self.send(FIN | OP_PING, payload));
        let f = self.expect_frame(OP_PONG);
        assert!(f.fin && f.rsv == 0, "{f:?}");
        assert_eq!(f.payload, payload, "pong payload");
        f
    }

    /// Sends a request and returns the text of the next frame, which must be text.
    pub fn request(&mut self, json: &str) -> String {
        assert!(self.text(json), "server gone");
        self.next_text()
    }

    /// The next frame, which must be text.
    pub fn next_text(&mut self) -> String {
        String::from_utf8(self.expect_frame(OP_TEXT).payload).expect("UTF-8 text")
    }

    /// Text frames until one contains `needle` (other text frames are skipped, any
    /// other frame fails).
    pub fn text_containing(&mut self, needle: &str) -> String {
        loop {
            let text = self.next_text();
            if text.contains(needle) {
                return text;
            }
        }
    }
}
