//! Minimal WebSocket client (RFC 6455 client side: masked frames out, unmasked frames in,
//! ping -> pong, fragments, close codes) and byte scanning instead of JSON parsing.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;

use bytes::{Buf, Bytes, BytesMut};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

// ---------------------------------------------------------------------------------------------
// minimal WebSocket client

pub enum Frame {
    Text(Bytes),
    Ping(Bytes),
    Close(u16, String),
}

pub struct WsReader {
    r: OwnedReadHalf,
    buf: BytesMut,
    frag: Option<Vec<u8>>,
    /// Bytes read from the socket after the handshake response.
    pub bytes: u64,
}

impl WsReader {
    pub async fn next(&mut self) -> io::Result<Frame> {
        loop {
            if let Some(f) = self.parse() {
                return Ok(f);
            }
            if self.buf.is_empty() && self.buf.capacity() > 256 * 1024 {
                // after a large frame (a big join reply): give the allocation back, or
                // thousands of idle clients would each keep one
                self.buf = BytesMut::with_capacity(16 * 1024);
            }
            if self.buf.capacity() - self.buf.len() < 2048 {
                self.buf.reserve(16 * 1024);
            }
            let n = self.r.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof"));
            }
            self.bytes += n as u64;
        }
    }

    /// Shrinks the socket's receive buffer (a slow reader then pushes back on the server soon).
    pub fn set_rcvbuf(&self, bytes: i32) {
        let fd = self.r.as_ref().as_raw_fd();
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &bytes as *const _ as *const libc::c_void,
                std::mem::size_of::<i32>() as libc::socklen_t,
            );
        }
    }

    pub fn parse(&mut self) -> Option<Frame> {
        loop {
            let b = &self.buf;
            if b.len() < 2 {
                return None;
            }
            let (fin, op) = (b[0] & 0x80 != 0, b[0] & 0x0f);
            let mut n = (b[1] & 0x7f) as usize;
            let mut hl = 2;
            if n == 126 {
                if b.len() < 4 {
                    return None;
                }
                n = u16::from_be_bytes([b[2], b[3]]) as usize;
                hl = 4;
            } else if n == 127 {
                if b.len() < 10 {
                    return None;
                }
                n = u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize;
                hl = 10;
            }
            let masked = b[1] & 0x80 != 0;
            let mask = if masked {
                Some([b[hl], b[hl + 1], b[hl + 2], b[hl + 3]])
            } else {
                None
            };
            if masked {
                hl += 4;
            }
            if b.len() < hl + n {
                let need = hl + n - b.len();
                self.buf.reserve(need);
                return None;
            }
            self.buf.advance(hl);
            let mut payload = self.buf.split_to(n);
            if let Some(m) = mask {
                for (i, x) in payload.iter_mut().enumerate() {
                    *x ^= m[i % 4];
                }
            }
            match op {
                0x1 | 0x2 => {
                    if fin {
                        return Some(Frame::Text(payload.freeze()));
                    }
                    self.frag = Some(payload.to_vec());
                }
                0x0 => {
                    let mut f = self.frag.take().unwrap_or_default();
                    f.extend_from_slice(&payload);
                    if fin {
                        return Some(Frame::Text(Bytes::from(f)));
                    }
                    self.frag = Some(f);
                }
                0x8 => {
                    let code = if n >= 2 {
                        u16::from_be_bytes([payload[0], payload[1]])
                    } else {
                        1005
                    };
                    let reason = if n > 2 {
                        String::from_utf8_lossy(&payload[2..]).to_string()
                    } else {
                        String::new()
                    };
                    return Some(Frame::Close(code, reason));
                }
                0x9 => return Some(Frame::Ping(payload.freeze())),
                _ => {}
            }
        }
    }
}

/// Appends one masked client frame.
pub fn put_frame(out: &mut Vec<u8>, op: u8, payload: &[u8]) {
    const MASK: [u8; 4] = [0x5a, 0x17, 0xc3, 0x2e];
    out.push(0x80 | op);
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n < 65536 {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
}

pub async fn send_text(w: &mut OwnedWriteHalf, s: &str) -> io::Result<()> {
    let mut out = Vec::with_capacity(s.len() + 14);
    put_frame(&mut out, 0x1, s.as_bytes());
    w.write_all(&out).await
}

pub async fn send_pong(w: &mut OwnedWriteHalf, p: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(p.len() + 14);
    put_frame(&mut out, 0xA, p);
    w.write_all(&out).await
}

/// Source addresses to spread connections over (`--src-ips N`: 127.0.0.1 .. 127.0.0.N), so
/// that more than one address's ephemeral ports (32768-60999 here) can be used.
static SRC_IPS: OnceLock<Vec<Ipv4Addr>> = OnceLock::new();
static NEXT_SRC: AtomicUsize = AtomicUsize::new(0);

pub fn set_src_ips(n: usize) {
    let v = (1..=n.clamp(1, 250))
        .map(|i| Ipv4Addr::new(127, 0, 0, i as u8))
        .collect();
    let _ = SRC_IPS.set(v);
}

/// Connects from the next source address (round robin) when several are configured; the
/// port is chosen at connect time (IP_BIND_ADDRESS_NO_PORT), not by bind.
async fn tcp_connect(addr: &str) -> io::Result<TcpStream> {
    let ips = SRC_IPS.get().map(|v| v.as_slice()).unwrap_or(&[]);
    if ips.len() < 2 {
        return TcpStream::connect(addr).await;
    }
    let dst: SocketAddr = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    let ip = ips[NEXT_SRC.fetch_add(1, Relaxed) % ips.len()];
    let sock = TcpSocket::new_v4()?;
    let one: libc::c_int = 1;
    // IP_BIND_ADDRESS_NO_PORT = 24 (linux/in.h)
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            24,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    sock.bind(SocketAddr::new(ip.into(), 0))?;
    sock.connect(dst).await
}

pub async fn ws_connect(addr: &str, token: Option<&str>) -> io::Result<(WsReader, OwnedWriteHalf)> {
    let s = tcp_connect(addr).await?;
    s.set_nodelay(true)?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n"
    );
    let (r, mut w) = s.into_split();
    w.write_all(req.as_bytes()).await?;
    let mut rd = WsReader {
        r,
        buf: BytesMut::with_capacity(4096),
        frag: None,
        bytes: 0,
    };
    loop {
        if let Some(end) = rd.buf.windows(4).position(|x| x == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&rd.buf[..end]).to_string();
            rd.buf.advance(end + 4);
            rd.bytes = rd.buf.len() as u64;
            let status = head.lines().next().unwrap_or("").to_string();
            if !status.contains(" 101") {
                return Err(io::Error::new(
                    io::ErrorKind::Other,
                    format!("upgrade refused: {status}"),
                ));
            }
            return Ok((rd, w));
        }
        if rd.r.read_buf(&mut rd.buf).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof during handshake"));
        }
        if rd.buf.len() > 64 * 1024 {
            return Err(io::Error::new(io::ErrorKind::Other, "handshake response too large"));
        }
    }
}

/// Reads frames until a JSON text frame satisfying `pred` arrives (answers pings).
pub async fn wait_json(rd: &mut WsReader, w: &mut OwnedWriteHalf, pred: impl Fn(&Value) -> bool) -> io::Result<Value> {
    loop {
        match rd.next().await? {
            Frame::Text(p) => {
                if let Ok(v) = serde_json::from_slice::<Value>(&p) {
                    if pred(&v) {
                        return Ok(v);
                    }
                }
            }
            Frame::Ping(p) => send_pong(w, &p).await?,
            Frame::Close(c, r) => return Err(io::Error::new(io::ErrorKind::Other, format!("close {c} {r}"))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// byte scanning (no full JSON parse on the hot path)

pub fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    if h.len() < n.len() {
        return None;
    }
    let first = n[0];
    let mut i = 0;
    let last = h.len() - n.len();
    while i <= last {
        if h[i] == first && &h[i..i + n.len()] == n {
            return Some(i);
        }
        i += 1;
    }
    None
}

pub fn num_after(h: &[u8], key: &[u8]) -> Option<u64> {
    let mut i = find(h, key)? + key.len();
    while i < h.len() && h[i] == b' ' {
        i += 1;
    }
    let start = i;
    let mut v: u64 = 0;
    while i < h.len() && h[i].is_ascii_digit() {
        v = v * 10 + (h[i] - b'0') as u64;
        i += 1;
    }
    (i > start).then_some(v)
}
