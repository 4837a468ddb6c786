//! loadgen: load generator for the chatserver WebSocket event server and for the
//! bare-broadcast yardstick (/work/shared/bench/bare-broadcast).
//!
//! Subcommands (see bench/README.md):
//!   fanout       N subscribers in one channel, M publishers at R msg/s total for D s
//!   bare         the same fanout against bare-broadcast (no auth, no join)
//!   connections  N idle authenticated connections: accept rate, server RSS per connection
//!   table        turn JSON result lines into a markdown table
//!
//! Every scenario prints one JSON line on stdout and a human summary on stderr.
//! The WebSocket client is hand-rolled (RFC 6455 client side: masked frames out,
//! unmasked frames in, ping -> pong) to keep the generator's CPU cost low: it shares
//! the machine with the server under test.

#![recursion_limit = "256"]

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};

// ---------------------------------------------------------------------------------------------
// clock

static T0: OnceLock<Instant> = OnceLock::new();

/// Microseconds since the process started (monotonic; senders and receivers share it).
fn now_us() -> u64 {
    T0.get_or_init(Instant::now).elapsed().as_micros() as u64
}

fn unix_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

// ---------------------------------------------------------------------------------------------
// arguments: `--name value` pairs after the subcommand

struct Args {
    map: HashMap<String, String>,
    rest: Vec<String>,
}

impl Args {
    fn parse(v: &[String]) -> Args {
        let mut map = HashMap::new();
        let mut rest = Vec::new();
        let mut i = 0;
        while i < v.len() {
            if let Some(k) = v[i].strip_prefix("--") {
                if let Some((k, val)) = k.split_once('=') {
                    map.insert(k.to_string(), val.to_string());
                    i += 1;
                } else if i + 1 < v.len() {
                    map.insert(k.to_string(), v[i + 1].clone());
                    i += 2;
                } else {
                    map.insert(k.to_string(), "true".into());
                    i += 1;
                }
            } else {
                rest.push(v[i].clone());
                i += 1;
            }
        }
        Args { map, rest }
    }
    fn s(&self, k: &str, d: &str) -> String {
        self.map.get(k).cloned().unwrap_or_else(|| d.to_string())
    }
    fn n(&self, k: &str, d: f64) -> f64 {
        self.map.get(k).map(|v| v.parse().unwrap_or_else(|_| panic!("--{k}: not a number: {v}"))).unwrap_or(d)
    }
}

// ---------------------------------------------------------------------------------------------
// HS256 JWT

fn b64url(d: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)
}

fn mint(secret: &str, sub: &str, name: &str, role: &str) -> String {
    use hmac::{Hmac, Mac};
    let header = b64url(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({"sub": sub, "name": name, "exp": unix_s() + 86400, "role": role}).to_string();
    let signing = format!("{header}.{}", b64url(claims.as_bytes()));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(signing.as_bytes());
    let sig = b64url(&mac.finalize().into_bytes());
    format!("{signing}.{sig}")
}

// ---------------------------------------------------------------------------------------------
// minimal WebSocket client

enum Frame {
    Text(Bytes),
    Ping(Bytes),
    Close(u16, String),
}

struct WsReader {
    r: OwnedReadHalf,
    buf: BytesMut,
    frag: Option<Vec<u8>>,
}

impl WsReader {
    async fn next(&mut self) -> io::Result<Frame> {
        loop {
            if let Some(f) = self.parse() {
                return Ok(f);
            }
            if self.buf.capacity() - self.buf.len() < 2048 {
                self.buf.reserve(16 * 1024);
            }
            if self.r.read_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof"));
            }
        }
    }

    fn parse(&mut self) -> Option<Frame> {
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
            let mask = if masked { Some([b[hl], b[hl + 1], b[hl + 2], b[hl + 3]]) } else { None };
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
                    let code = if n >= 2 { u16::from_be_bytes([payload[0], payload[1]]) } else { 1005 };
                    let reason = if n > 2 { String::from_utf8_lossy(&payload[2..]).to_string() } else { String::new() };
                    return Some(Frame::Close(code, reason));
                }
                0x9 => return Some(Frame::Ping(payload.freeze())),
                _ => {}
            }
        }
    }
}

/// Appends one masked client frame.
fn put_frame(out: &mut Vec<u8>, op: u8, payload: &[u8]) {
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

async fn send_text(w: &mut OwnedWriteHalf, s: &str) -> io::Result<()> {
    let mut out = Vec::with_capacity(s.len() + 14);
    put_frame(&mut out, 0x1, s.as_bytes());
    w.write_all(&out).await
}

async fn send_pong(w: &mut OwnedWriteHalf, p: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(p.len() + 14);
    put_frame(&mut out, 0xA, p);
    w.write_all(&out).await
}

async fn ws_connect(addr: &str, token: Option<&str>) -> io::Result<(WsReader, OwnedWriteHalf)> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n"
    );
    let (r, mut w) = s.into_split();
    w.write_all(req.as_bytes()).await?;
    let mut rd = WsReader { r, buf: BytesMut::with_capacity(4096), frag: None };
    loop {
        if let Some(end) = rd.buf.windows(4).position(|x| x == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&rd.buf[..end]).to_string();
            rd.buf.advance(end + 4);
            let status = head.lines().next().unwrap_or("").to_string();
            if !status.contains(" 101") {
                return Err(io::Error::new(io::ErrorKind::Other, format!("upgrade refused: {status}")));
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
async fn wait_json(rd: &mut WsReader, w: &mut OwnedWriteHalf, pred: impl Fn(&Value) -> bool) -> io::Result<Value> {
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

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
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

fn num_after(h: &[u8], key: &[u8]) -> Option<u64> {
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

// ---------------------------------------------------------------------------------------------
// log-linear histogram (32 sub-buckets per power of two: < 3.2 % error), microseconds

const HB: usize = 37 * 32;

#[derive(Clone)]
struct Hist {
    b: Vec<u64>,
    n: u64,
    max: u64,
    sum: u64,
}

impl Hist {
    fn new() -> Hist {
        Hist { b: vec![0; HB], n: 0, max: 0, sum: 0 }
    }
    fn idx(v: u64) -> usize {
        let v = v.min((1u64 << 40) - 1);
        if v < 32 {
            v as usize
        } else {
            let e = 63 - v.leading_zeros() as u64;
            let shift = e - 5;
            ((shift + 1) * 32 + ((v >> shift) & 31)) as usize
        }
    }
    fn value(i: usize) -> u64 {
        if i < 32 {
            i as u64
        } else {
            let shift = (i / 32 - 1) as u64;
            ((32 + (i % 32) as u64) << shift) + ((1u64 << shift) >> 1)
        }
    }
    fn rec(&mut self, v: u64) {
        self.b[Self::idx(v)] += 1;
        self.n += 1;
        self.sum += v;
        self.max = self.max.max(v);
    }
    fn merge(&mut self, o: &Hist) {
        for (a, b) in self.b.iter_mut().zip(&o.b) {
            *a += b;
        }
        self.n += o.n;
        self.sum += o.sum;
        self.max = self.max.max(o.max);
    }
    fn pct(&self, p: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.n as f64).ceil().max(1.0) as u64;
        let mut acc = 0;
        for (i, c) in self.b.iter().enumerate() {
            acc += c;
            if acc >= rank {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }
}

fn ms(us: u64) -> f64 {
    (us as f64 / 10.0).round() / 100.0
}

// ---------------------------------------------------------------------------------------------
// /proc of the server under test, and our own usage

fn proc_cpu_s(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

fn proc_rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn proc_threads(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("Threads:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// (busy, total) CPU seconds of the whole machine, all cores, from /proc/stat.
fn machine_cpu_s() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<f64> = s.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let total: f64 = f.iter().take(8).sum();
    let idle = f.get(3).copied().unwrap_or(0.0) + f.get(4).copied().unwrap_or(0.0);
    ((total - idle) / hz, total / hz)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Per-second (by send time) latency sum, count and max.
#[derive(Clone, Default)]
struct Timeline {
    sum: Vec<u64>,
    cnt: Vec<u64>,
    max: Vec<u64>,
}

impl Timeline {
    fn rec(&mut self, sent_us: u64, lat: u64) {
        let i = (sent_us / 1_000_000) as usize;
        if i >= self.sum.len() {
            self.sum.resize(i + 1, 0);
            self.cnt.resize(i + 1, 0);
            self.max.resize(i + 1, 0);
        }
        self.sum[i] += lat;
        self.cnt[i] += 1;
        self.max[i] = self.max[i].max(lat);
    }
    fn merge(&mut self, o: &Timeline) {
        for (i, _) in o.sum.iter().enumerate() {
            if i >= self.sum.len() {
                self.sum.resize(i + 1, 0);
                self.cnt.resize(i + 1, 0);
                self.max.resize(i + 1, 0);
            }
            self.sum[i] += o.sum[i];
            self.cnt[i] += o.cnt[i];
            self.max[i] = self.max[i].max(o.max[i]);
        }
    }
    /// (mean ms, max ms) per second from `from_us` on.
    fn series(&self, from_us: u64) -> (Vec<f64>, Vec<f64>) {
        let s = (from_us / 1_000_000) as usize;
        let mut mean = Vec::new();
        let mut max = Vec::new();
        for i in s..self.sum.len() {
            if self.cnt[i] == 0 {
                continue;
            }
            mean.push(ms(self.sum[i] / self.cnt[i]));
            max.push(ms(self.max[i]));
        }
        (mean, max)
    }
}

fn self_cpu_s() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn raise_nofile() -> u64 {
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        rl.rlim_cur = rl.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
    }
    rl.rlim_cur as u64
}

/// Samples the server's peak RSS while a scenario runs.
fn rss_monitor(pid: Option<u32>) -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let peak = Arc::new(AtomicU64::new(0));
    let p2 = peak.clone();
    let h = tokio::spawn(async move {
        let Some(pid) = pid else { return };
        loop {
            if let Some(r) = proc_rss_kb(pid) {
                p2.fetch_max(r, Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    (peak, h)
}

// ---------------------------------------------------------------------------------------------
// shared counters

#[repr(align(64))]
#[derive(Default)]
struct Padded(AtomicU64);

#[derive(Default)]
struct Events(Mutex<BTreeMap<String, u64>>);

impl Events {
    fn add(&self, k: impl Into<String>) {
        *self.0.lock().unwrap().entry(k.into()).or_default() += 1;
    }
    fn json(&self) -> Value {
        json!(self.0.lock().unwrap().clone())
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Target {
    Chat,
    Bare,
}

struct Cfg {
    addr: String,
    target: Target,
    channel: String,
    secret: String,
    pubs: usize,
}

// ---------------------------------------------------------------------------------------------
// fanout

struct SubResult {
    hist: Hist,
    tl: Timeline,
    unique: u64,
    gaps: u64,
    dups: u64,
    seq_gaps: u64,
    seq_backwards: u64,
    other_frames: u64,
    connected: bool,
}

async fn sub_connect(cfg: &Cfg, i: usize) -> io::Result<(WsReader, OwnedWriteHalf, u64)> {
    match cfg.target {
        Target::Bare => {
            let (rd, w) = ws_connect(&cfg.addr, None).await?;
            Ok((rd, w, 0))
        }
        Target::Chat => {
            let tok = mint(&cfg.secret, &format!("lg-sub-{i}"), &format!("sub{i}"), "user");
            let (mut rd, mut w) = ws_connect(&cfg.addr, Some(&tok)).await?;
            wait_json(&mut rd, &mut w, |v| v["ev"] == "welcome").await?;
            let join = json!({"id": 1, "op": "join", "channel": cfg.channel, "limit": 1}).to_string();
            send_text(&mut w, &join).await?;
            let v = wait_json(&mut rd, &mut w, |v| v["id"] == 1).await?;
            if v.get("ok").is_none() {
                return Err(io::Error::new(io::ErrorKind::Other, format!("join refused: {v}")));
            }
            Ok((rd, w, v["ok"]["seq"].as_u64().unwrap_or(0)))
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn subscriber(
    i: usize,
    cfg: Arc<Cfg>,
    sem: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<Result<(), String>>,
    count: Arc<Vec<Padded>>,
    ev: Arc<Events>,
    mut stop: watch::Receiver<bool>,
) -> SubResult {
    let mut res = SubResult {
        hist: Hist::new(),
        tl: Timeline::default(),
        unique: 0,
        gaps: 0,
        dups: 0,
        seq_gaps: 0,
        seq_backwards: 0,
        other_frames: 0,
        connected: false,
    };
    let permit = sem.acquire_owned().await.unwrap();
    let c = tokio::time::timeout(Duration::from_secs(30), sub_connect(&cfg, i)).await;
    drop(permit);
    let (mut rd, mut w, mut last_seq) = match c {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            let _ = ready.send(Err(e.to_string()));
            return res;
        }
        Err(_) => {
            let _ = ready.send(Err("connect/join timeout".into()));
            return res;
        }
    };
    res.connected = true;
    let _ = ready.send(Ok(()));
    let mut next = vec![0u64; cfg.pubs];
    let chat = cfg.target == Target::Chat;
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            f = rd.next() => match f {
                Ok(Frame::Text(p)) => {
                    let Some(t) = num_after(&p, b"\"lg_t\":") else {
                        if find(&p, b"\"ev\":\"disconnect\"").is_some() {
                            ev.add(format!("sub disconnect event: {}", String::from_utf8_lossy(&p)));
                        }
                        res.other_frames += 1;
                        continue;
                    };
                    let now = now_us();
                    res.hist.rec(now.saturating_sub(t));
                    res.tl.rec(t, now.saturating_sub(t));
                    let pi = num_after(&p, b"\"lg_p\":").unwrap_or(0) as usize;
                    let n = num_after(&p, b"\"lg_n\":").unwrap_or(0);
                    if pi < next.len() {
                        let e = &mut next[pi];
                        if n >= *e {
                            res.gaps += n - *e;
                            *e = n + 1;
                            res.unique += 1;
                            count[i].0.fetch_add(1, Relaxed);
                        } else {
                            res.dups += 1;
                        }
                    }
                    if chat {
                        if let Some(s) = num_after(&p, b"\"seq\":") {
                            if s > last_seq + 1 {
                                res.seq_gaps += s - last_seq - 1;
                            } else if s <= last_seq {
                                res.seq_backwards += 1;
                            }
                            last_seq = last_seq.max(s);
                        }
                    }
                }
                Ok(Frame::Ping(p)) => {
                    if send_pong(&mut w, &p).await.is_err() {
                        ev.add("sub write error");
                        break;
                    }
                }
                Ok(Frame::Close(c, r)) => {
                    ev.add(format!("sub close {c} {r}"));
                    break;
                }
                Err(e) => {
                    ev.add(format!("sub read error: {e}"));
                    break;
                }
            }
        }
    }
    res
}

struct PubResult {
    sent: u64,
    ok: u64,
    ack: Hist,
    tl: Timeline,
}

#[allow(clippy::too_many_arguments)]
async fn publisher(
    p: usize,
    cfg: Arc<Cfg>,
    rate: f64,
    dur: f64,
    size: usize,
    start: Instant,
    ev: Arc<Events>,
) -> PubResult {
    let mut res = PubResult { sent: 0, ok: 0, ack: Hist::new(), tl: Timeline::default() };
    let chat = cfg.target == Target::Chat;
    let tok = mint(&cfg.secret, &format!("lg-pub-{p}"), &format!("pub{p}"), "publisher");
    let conn = async {
        let (mut rd, mut w) = ws_connect(&cfg.addr, chat.then_some(tok.as_str())).await?;
        if chat {
            wait_json(&mut rd, &mut w, |v| v["ev"] == "welcome").await?;
        }
        Ok::<_, io::Error>((rd, w))
    };
    let (mut rd, mut w) = match conn.await {
        Ok(x) => x,
        Err(e) => {
            ev.add(format!("publisher connect error: {e}"));
            return res;
        }
    };
    let cap = (rate * dur * 1.5) as usize + 1000;
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..cap).map(|_| AtomicU64::new(0)).collect());
    let acks = Arc::new(AtomicU64::new(0));
    let (pong_tx, mut pong_rx) = mpsc::unbounded_channel::<Bytes>();
    // reader: acks (chat) or the other publishers' frames (bare); answers pings via the writer
    let (rstop_tx, mut rstop) = watch::channel(false);
    let reader = {
        let (sent_at, acks, ev) = (sent_at.clone(), acks.clone(), ev.clone());
        tokio::spawn(async move {
            let mut ok = 0u64;
            let mut h = Hist::new();
            let mut tl = Timeline::default();
            loop {
                let f = tokio::select! {
                    biased;
                    _ = rstop.changed() => break,
                    f = rd.next() => f,
                };
                match f {
                    Ok(Frame::Text(pl)) => {
                        if !chat || find(&pl, b"\"ev\":").is_some() {
                            if chat && find(&pl, b"\"ev\":\"disconnect\"").is_some() {
                                ev.add(format!("pub disconnect event: {}", String::from_utf8_lossy(&pl)));
                            }
                            continue;
                        }
                        let Ok(v) = serde_json::from_slice::<Value>(&pl) else { continue };
                        let id = v["id"].as_u64().unwrap_or(0) as usize;
                        if let Some(e) = v.get("error") {
                            ev.add(format!("publish error {} {}", e["code"], e["message"]));
                        } else if v.get("ok").is_some() {
                            ok += 1;
                            if id < sent_at.len() {
                                let t = sent_at[id].load(Relaxed);
                                if t > 0 {
                                    h.rec(now_us().saturating_sub(t));
                                    tl.rec(t, now_us().saturating_sub(t));
                                }
                            }
                        }
                        acks.fetch_add(1, Relaxed);
                    }
                    Ok(Frame::Ping(pl)) => {
                        let _ = pong_tx.send(pl);
                    }
                    Ok(Frame::Close(c, r)) => {
                        ev.add(format!("pub close {c} {r}"));
                        break;
                    }
                    Err(e) => {
                        ev.add(format!("pub read error: {e}"));
                        break;
                    }
                }
            }
            (ok, h, tl)
        })
    };
    let pad = "x".repeat(size.saturating_sub(60));
    // feed namespaces validate their payload: quotes need a price, locations lat/lon
    let extra = match cfg.channel.split(':').next().unwrap_or("") {
        "ticker" if chat => r#""price":101.25,"#,
        "loc" if chat => r#""lat":48.85,"lon":2.35,"#,
        _ => "",
    };
    let tick = Duration::from_secs_f64((1.0 / rate).max(0.001));
    let mut iv = tokio::time::interval_at(tokio::time::Instant::from_std(start), tick);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut out = Vec::with_capacity(64 * 1024);
    let mut n: u64 = 0;
    loop {
        iv.tick().await;
        let el = start.elapsed().as_secs_f64();
        if el >= dur {
            break;
        }
        while let Ok(pl) = pong_rx.try_recv() {
            put_frame(&mut out, 0xA, &pl);
        }
        let due = ((el * rate) as u64 + 1).min((dur * rate).ceil() as u64);
        while n < due {
            let t = now_us();
            let data = format!(r#"{{"lg_p":{p},"lg_n":{n},"lg_t":{t},{extra}"pad":"{pad}"}}"#);
            if chat {
                let id = n as usize + 1;
                if id < sent_at.len() {
                    sent_at[id].store(t, Relaxed);
                }
                let req = format!(r#"{{"id":{id},"op":"publish","channel":"{}","data":{data}}}"#, cfg.channel);
                put_frame(&mut out, 0x1, req.as_bytes());
            } else {
                put_frame(&mut out, 0x1, data.as_bytes());
            }
            n += 1;
        }
        if !out.is_empty() {
            if let Err(e) = w.write_all(&out).await {
                ev.add(format!("publisher write error: {e}"));
                break;
            }
            out.clear();
        }
    }
    res.sent = n;
    if chat {
        // wait for every ack (bounded), answering pings meanwhile
        let deadline = Instant::now() + Duration::from_secs(15);
        while acks.load(Relaxed) < n && Instant::now() < deadline && !reader.is_finished() {
            while let Ok(pl) = pong_rx.try_recv() {
                let _ = send_pong(&mut w, &pl).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if acks.load(Relaxed) < n {
            ev.add(format!("publisher {p}: {} publishes never acknowledged", n - acks.load(Relaxed)));
        }
        let _ = rstop_tx.send(true);
        if let Ok((ok, h, tl)) = reader.await {
            res.ok = ok;
            res.ack = h;
            res.tl = tl;
        }
    } else {
        res.ok = n;
        let _ = w.flush().await;
        reader.abort();
    }
    res
}

async fn fanout(a: &Args, target: Target) -> Value {
    let subs = a.n("subs", 1000.0) as usize;
    let pubs = a.n("pubs", 4.0) as usize;
    let rate = a.n("rate", 200.0);
    let dur = a.n("duration", 20.0);
    let size = a.n("size", 100.0) as usize;
    let conc = a.n("concurrency", 64.0) as usize;
    let drain = a.n("drain", 10.0);
    let pid = a.map.get("server-pid").map(|p| p.parse::<u32>().unwrap());
    let default_addr = if target == Target::Bare { "127.0.0.1:8082" } else { "127.0.0.1:8080" };
    let cfg = Arc::new(Cfg {
        addr: a.s("url", default_addr).trim_start_matches("ws://").trim_end_matches("/ws").to_string(),
        target,
        channel: a.s("channel", "room:bench"),
        secret: a.s("secret", "bench-secret"),
        pubs,
    });
    let label = a.s("label", "");
    let ev = Arc::new(Events::default());
    let rss_idle = pid.and_then(proc_rss_kb).unwrap_or(0);

    // 1. subscribers
    let (stop_tx, stop_rx) = watch::channel(false);
    let sem = Arc::new(Semaphore::new(conc));
    let counts: Arc<Vec<Padded>> = Arc::new((0..subs).map(|_| Padded::default()).collect());
    let (rtx, mut rrx) = mpsc::unbounded_channel();
    let ramp0 = Instant::now();
    let mut handles = Vec::with_capacity(subs);
    for i in 0..subs {
        handles.push(tokio::spawn(subscriber(
            i,
            cfg.clone(),
            sem.clone(),
            rtx.clone(),
            counts.clone(),
            ev.clone(),
            stop_rx.clone(),
        )));
    }
    drop(rtx);
    let mut connected = 0u64;
    let mut failed = 0u64;
    while connected + failed < subs as u64 {
        let Some(r) = rrx.recv().await else { break };
        match r {
            Ok(()) => connected += 1,
            Err(e) => {
                failed += 1;
                ev.add(format!("subscriber connect failed: {e}"));
            }
        }
    }
    let ramp_s = ramp0.elapsed().as_secs_f64();
    eprintln!("# {} subscribers ready ({} failed) in {:.2}s", connected, failed, ramp_s);
    tokio::time::sleep(Duration::from_millis(1500)).await; // let the join/presence storm settle

    // 2. publish
    let (rss_peak, mon) = rss_monitor(pid);
    let rss0 = pid.and_then(proc_rss_kb).unwrap_or(0);
    let cpu0 = pid.and_then(proc_cpu_s).unwrap_or(0.0);
    let self0 = self_cpu_s();
    let (mbusy0, mtot0) = machine_cpu_s();
    let load0 = loadavg();
    let start = Instant::now() + Duration::from_millis(200);
    let start_us = now_us() + 200_000;
    let pub_handles: Vec<_> = (0..pubs)
        .map(|p| {
            let stagger = Duration::from_micros((p as u64 * 1_000_000 / rate.max(1.0) as u64) / pubs.max(1) as u64);
            tokio::spawn(publisher(p, cfg.clone(), rate / pubs as f64, dur, size, start + stagger, ev.clone()))
        })
        .collect();
    let mut sent = 0;
    let mut ok = 0;
    let mut ack = Hist::new();
    let mut ack_tl = Timeline::default();
    for h in pub_handles {
        let r = h.await.unwrap();
        ack_tl.merge(&r.tl);
        sent += r.sent;
        ok += r.ok;
        ack.merge(&r.ack);
    }
    // 3. drain: wait until every subscriber has everything, or no progress for 3 s, or --drain s
    let expected = ok * connected;
    let total = || counts.iter().map(|c| c.0.load(Relaxed)).sum::<u64>();
    let mut last = total();
    let mut last_change = Instant::now();
    let drain0 = Instant::now();
    while last < expected && drain0.elapsed().as_secs_f64() < drain && last_change.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t = total();
        if t != last {
            last = t;
            last_change = Instant::now();
        }
    }
    let end = if last >= expected { Instant::now() } else { last_change };
    let window = end.duration_since(start).as_secs_f64();
    let cpu1 = pid.and_then(proc_cpu_s).unwrap_or(0.0);
    let self1 = self_cpu_s();
    let (mbusy1, mtot1) = machine_cpu_s();
    let load1 = loadavg();
    let rss1 = pid.and_then(proc_rss_kb).unwrap_or(0);
    mon.abort();
    let threads = pid.and_then(proc_threads).unwrap_or(0);
    let _ = stop_tx.send(true);
    let mut hist = Hist::new();
    let mut tl = Timeline::default();
    let (mut unique, mut gaps, mut dups, mut seq_gaps, mut seq_back, mut other, mut alive_end) = (0, 0, 0, 0, 0, 0, 0);
    for h in handles {
        let r = h.await.unwrap();
        hist.merge(&r.hist);
        tl.merge(&r.tl);
        unique += r.unique;
        gaps += r.gaps;
        dups += r.dups;
        seq_gaps += r.seq_gaps;
        seq_back += r.seq_backwards;
        other += r.other_frames;
        alive_end += r.connected as u64;
    }
    let _ = alive_end;
    let lost = expected.saturating_sub(unique);
    let server_cpu = cpu1 - cpu0;
    let ncpu = if mtot1 > mtot0 { ((mtot1 - mtot0) / window).round().max(1.0) } else { 1.0 };
    let machine_busy = mbusy1 - mbusy0;
    let other_cpu = (machine_busy - server_cpu - (self1 - self0)).max(0.0);
    let (lat_mean_s, lat_max_s) = tl.series(start_us);
    let (ack_mean_s, ack_max_s) = ack_tl.series(start_us);
    let conflating = target == Target::Chat && (cfg.channel.starts_with("ticker:") || cfg.channel.starts_with("loc:"));
    let per_delivery = if unique > 0 { server_cpu * 1e6 / unique as f64 } else { 0.0 };
    let v = json!({
        "scenario": "fanout",
        "target": if target == Target::Bare { "bare-broadcast" } else { "chatserver" },
        "label": label,
        "channel": if target == Target::Bare { "-".to_string() } else { cfg.channel.clone() },
        "subs": subs, "subs_connected": connected, "subs_failed": failed,
        "pubs": pubs, "rate": rate, "duration_s": dur, "size": size,
        "ramp_s": (ramp_s * 100.0).round() / 100.0,
        "sent": sent, "acked_ok": ok,
        "expected_deliveries": expected, "delivered": unique,
        "lost": lost, "gaps": gaps, "dups": dups, "seq_gaps": seq_gaps, "seq_backwards": seq_back,
        "other_frames": other,
        "window_s": (window * 100.0).round() / 100.0,
        "deliveries_per_s": (unique as f64 / window).round(),
        "p50_ms": ms(hist.pct(50.0)), "p90_ms": ms(hist.pct(90.0)), "p99_ms": ms(hist.pct(99.0)),
        "p999_ms": ms(hist.pct(99.9)), "max_ms": ms(hist.max),
        "ack_p50_ms": ms(ack.pct(50.0)), "ack_p99_ms": ms(ack.pct(99.0)), "ack_max_ms": ms(ack.max),
        "server_cpu_s": (server_cpu * 100.0).round() / 100.0,
        "server_us_per_delivery": (per_delivery * 100.0).round() / 100.0,
        "server_cpu_pct": (server_cpu / window * 1000.0).round() / 10.0,
        "server_rss_kb_idle": rss_idle, "server_rss_kb_before": rss0,
        "server_rss_kb_peak": rss_peak.load(Relaxed).max(rss1), "server_rss_kb_after": rss1,
        "server_threads": threads,
        "loadgen_cpu_s": ((self1 - self0) * 100.0).round() / 100.0,
        "machine_cores": ncpu,
        "machine_busy_pct": (machine_busy / window / ncpu * 1000.0).round() / 10.0,
        "other_processes_cpu_s": (other_cpu * 100.0).round() / 100.0,
        "loadavg_before": load0, "loadavg_after": load1,
        "conflating_channel": conflating,
        "lat_mean_by_s_ms": lat_mean_s, "lat_max_by_s_ms": lat_max_s,
        "ack_mean_by_s_ms": ack_mean_s, "ack_max_by_s_ms": ack_max_s,
        "events": ev.json(),
    });
    eprintln!(
        "# fanout {} {}: {} subs x {} msg/s ({} pubs, {} B) for {}s: sent {}, ok {}, delivered {}/{} (lost {}, gaps {}, seq gaps {}, dups {})",
        v["target"], cfg.channel, connected, rate, pubs, size, dur, sent, ok, unique, expected, lost, gaps, seq_gaps, dups
    );
    eprintln!(
        "#   {:.0} deliveries/s; latency p50 {} ms p90 {} ms p99 {} ms max {} ms; publish ack p50 {} ms p99 {} ms",
        unique as f64 / window, v["p50_ms"], v["p90_ms"], v["p99_ms"], v["max_ms"], v["ack_p50_ms"], v["ack_p99_ms"]
    );
    eprintln!(
        "#   server CPU {:.2}s ({} %) = {:.2} us/delivery; server RSS {} -> peak {} KB; loadgen CPU {:.2}s; events {}",
        server_cpu, v["server_cpu_pct"], per_delivery, rss0, v["server_rss_kb_peak"], self1 - self0, v["events"]
    );
    eprintln!(
        "#   machine busy {} % of {} cores; other processes used {:.2} CPU s; loadavg {} -> {}",
        v["machine_busy_pct"], ncpu, other_cpu, load0, load1
    );
    eprintln!("#   delivery latency by send second, mean ms: {}", v["lat_mean_by_s_ms"]);
    eprintln!("#   delivery latency by send second, max ms:  {}", v["lat_max_by_s_ms"]);
    if target == Target::Chat {
        eprintln!("#   publish ack latency by send second, mean ms: {}", v["ack_mean_by_s_ms"]);
    }
    v
}

// ---------------------------------------------------------------------------------------------
// connections

async fn connections(a: &Args, target: Target) -> Value {
    let n = a.n("conns", 15000.0) as usize;
    let conc = a.n("concurrency", 64.0) as usize;
    let hold = a.n("hold", 5.0);
    let pid = a.map.get("server-pid").map(|p| p.parse::<u32>().unwrap());
    let default_addr = if target == Target::Bare { "127.0.0.1:8082" } else { "127.0.0.1:8080" };
    let addr = a.s("url", default_addr).trim_start_matches("ws://").trim_end_matches("/ws").to_string();
    let secret = a.s("secret", "bench-secret");
    let label = a.s("label", "");
    let ev = Arc::new(Events::default());
    let rss0 = pid.and_then(proc_rss_kb).unwrap_or(0);
    let cpu0 = pid.and_then(proc_cpu_s).unwrap_or(0.0);
    let (stop_tx, stop_rx) = watch::channel(false);
    let sem = Arc::new(Semaphore::new(conc));
    let (rtx, mut rrx) = mpsc::unbounded_channel::<Result<(), String>>();
    let alive = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (addr, secret, sem, rtx, ev, alive) = (addr.clone(), secret.clone(), sem.clone(), rtx.clone(), ev.clone(), alive.clone());
        let mut stop = stop_rx.clone();
        handles.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.unwrap();
            let c = async {
                if target == Target::Bare {
                    ws_connect(&addr, None).await
                } else {
                    let tok = mint(&secret, &format!("lg-idle-{i}"), &format!("idle{i}"), "user");
                    let (mut rd, mut w) = ws_connect(&addr, Some(&tok)).await?;
                    wait_json(&mut rd, &mut w, |v| v["ev"] == "welcome").await?;
                    Ok((rd, w))
                }
            };
            let c = tokio::time::timeout(Duration::from_secs(30), c).await;
            drop(permit);
            let (mut rd, mut w) = match c {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => {
                    let _ = rtx.send(Err(e.to_string()));
                    return;
                }
                Err(_) => {
                    let _ = rtx.send(Err("timeout".into()));
                    return;
                }
            };
            alive.fetch_add(1, Relaxed);
            let _ = rtx.send(Ok(()));
            drop(rtx);
            loop {
                tokio::select! {
                    biased;
                    _ = stop.changed() => break,
                    f = rd.next() => match f {
                        Ok(Frame::Text(_)) => {}
                        Ok(Frame::Ping(p)) => { let _ = send_pong(&mut w, &p).await; }
                        Ok(Frame::Close(c, r)) => { ev.add(format!("close {c} {r}")); alive.fetch_sub(1, Relaxed); return; }
                        Err(e) => { ev.add(format!("read error: {e}")); alive.fetch_sub(1, Relaxed); return; }
                    }
                }
            }
            // polite close
            let mut out = Vec::new();
            put_frame(&mut out, 0x8, &1000u16.to_be_bytes());
            let _ = w.write_all(&out).await;
        }));
    }
    drop(rtx);
    let mut ok = 0u64;
    let mut failed = 0u64;
    while ok + failed < n as u64 {
        let Some(r) = rrx.recv().await else { break };
        match r {
            Ok(()) => ok += 1,
            Err(e) => {
                failed += 1;
                ev.add(format!("connect failed: {e}"));
            }
        }
    }
    let ramp = t0.elapsed().as_secs_f64();
    let cpu1 = pid.and_then(proc_cpu_s).unwrap_or(0.0);
    eprintln!("# {ok} connections open ({failed} failed) in {ramp:.2}s; holding {hold}s");
    tokio::time::sleep(Duration::from_secs_f64(hold)).await;
    let rss1 = pid.and_then(proc_rss_kb).unwrap_or(0);
    let alive_end = alive.load(Relaxed);
    let _ = stop_tx.send(true);
    for h in handles {
        let _ = h.await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss2 = pid.and_then(proc_rss_kb).unwrap_or(0);
    let per = if ok > 0 { (rss1 as f64 - rss0 as f64) / ok as f64 } else { 0.0 };
    let v = json!({
        "scenario": "connections",
        "target": if target == Target::Bare { "bare-broadcast" } else { "chatserver" },
        "label": label,
        "conns": n, "connected": ok, "failed": failed, "alive_after_hold": alive_end,
        "ramp_s": (ramp * 100.0).round() / 100.0,
        "accept_per_s": (ok as f64 / ramp).round(),
        "server_cpu_s_ramp": ((cpu1 - cpu0) * 100.0).round() / 100.0,
        "server_us_per_accept": if ok > 0 { ((cpu1 - cpu0) * 1e6 / ok as f64).round() } else { 0.0 },
        "server_rss_kb_before": rss0, "server_rss_kb_open": rss1, "server_rss_kb_after_close": rss2,
        "rss_kb_per_conn": (per * 100.0).round() / 100.0,
        "events": ev.json(),
    });
    eprintln!(
        "# connections {}: {ok}/{n} open ({failed} failed, {alive_end} alive after {hold}s) at {:.0}/s; server RSS {rss0} -> {rss1} KB = {per:.2} KB/conn; after close {rss2} KB; events {}",
        v["target"], ok as f64 / ramp, v["events"]
    );
    v
}

// ---------------------------------------------------------------------------------------------
// table

fn table(files: &[String]) {
    let mut rows = Vec::new();
    for f in files {
        let s = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        for l in s.lines().filter(|l| l.trim_start().starts_with('{')) {
            if let Ok(v) = serde_json::from_str::<Value>(l) {
                rows.push(v);
            }
        }
    }
    let f = |v: &Value| match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if x.fract() == 0.0 { format!("{}", x as i64) } else { format!("{x}") }
        }
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        o => o.to_string(),
    };
    let evs = |v: &Value| {
        let m = v["events"].as_object().cloned().unwrap_or_default();
        if m.is_empty() {
            "none".to_string()
        } else {
            m.iter().map(|(k, c)| format!("{k} ×{c}")).collect::<Vec<_>>().join("; ").replace('|', "/")
        }
    };
    println!("| server | subs × msg/s (pubs, size) | channel | delivered / expected | lost | deliveries/s | p50 ms | p90 ms | p99 ms | max ms | publish ack p99 ms | server CPU µs/delivery | server CPU % | other procs CPU s | server RSS MB (before → peak) | events |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for v in rows.iter().filter(|v| v["scenario"] == "fanout") {
        println!(
            "| {} | {} × {} ({}, {} B) | {} | {} / {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} → {:.1} | {} |",
            f(&v["target"]), f(&v["subs_connected"]), f(&v["rate"]), f(&v["pubs"]), f(&v["size"]), f(&v["channel"]),
            f(&v["delivered"]), f(&v["expected_deliveries"]),
            if v["conflating_channel"] == true { format!("{} (conflated by design)", f(&v["lost"])) } else { f(&v["lost"]) },
            f(&v["deliveries_per_s"]),
            f(&v["p50_ms"]), f(&v["p90_ms"]), f(&v["p99_ms"]), f(&v["max_ms"]),
            if v["target"] == "chatserver" { f(&v["ack_p99_ms"]) } else { "-".into() },
            f(&v["server_us_per_delivery"]), f(&v["server_cpu_pct"]), f(&v["other_processes_cpu_s"]),
            v["server_rss_kb_before"].as_f64().unwrap_or(0.0) / 1024.0, v["server_rss_kb_peak"].as_f64().unwrap_or(0.0) / 1024.0,
            evs(v)
        );
    }
    println!();
    println!("| server | idle connections | opened (failed) | alive after hold | accept/s | server CPU µs/accept | server RSS MB before → open → after close | KB per connection | events |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for v in rows.iter().filter(|v| v["scenario"] == "connections") {
        println!(
            "| {} | {} | {} ({}) | {} | {} | {} | {:.1} → {:.1} → {:.1} | {} | {} |",
            f(&v["target"]), f(&v["conns"]), f(&v["connected"]), f(&v["failed"]), f(&v["alive_after_hold"]),
            f(&v["accept_per_s"]), f(&v["server_us_per_accept"]),
            v["server_rss_kb_before"].as_f64().unwrap_or(0.0) / 1024.0,
            v["server_rss_kb_open"].as_f64().unwrap_or(0.0) / 1024.0,
            v["server_rss_kb_after_close"].as_f64().unwrap_or(0.0) / 1024.0,
            f(&v["rss_kb_per_conn"]), evs(v)
        );
    }
}

// ---------------------------------------------------------------------------------------------

const USAGE: &str = "usage:
  loadgen fanout      [--url 127.0.0.1:8080] [--secret S] [--subs 1000] [--pubs 4] [--rate 200] [--duration 20]
                      [--size 100] [--channel room:bench|ticker:BENCH] [--server-pid PID] [--concurrency 64]
                      [--drain 10] [--threads 2] [--label TEXT]
  loadgen bare        same as fanout, against bare-broadcast (default --url 127.0.0.1:8082; no auth, no join)
  loadgen connections [--url ...] [--target chat|bare] [--secret S] [--conns 15000] [--hold 5] [--server-pid PID]
  loadgen table FILE.jsonl...      markdown table of the JSON result lines
  loadgen token [--secret S] [--sub ID] [--name NAME] [--role user|publisher|admin]";

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first().cloned() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let a = Args::parse(&argv[1..]);
    now_us();
    let nofile = raise_nofile();
    let threads = a.n("threads", 2.0) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().unwrap();
    let target = match a.s("target", if cmd == "bare" { "bare" } else { "chat" }).as_str() {
        "bare" => Target::Bare,
        _ => Target::Chat,
    };
    let v = match cmd.as_str() {
        "fanout" | "bare" => {
            eprintln!("# loadgen: RLIMIT_NOFILE {nofile}, {threads} threads");
            rt.block_on(fanout(&a, target))
        }
        "connections" => {
            eprintln!("# loadgen: RLIMIT_NOFILE {nofile}, {threads} threads");
            rt.block_on(connections(&a, target))
        }
        "table" => {
            table(&a.rest);
            return;
        }
        "token" => {
            println!(
                "{}",
                mint(&a.s("secret", "bench-secret"), &a.s("sub", "lg-1"), &a.s("name", "lg"), &a.s("role", "user"))
            );
            return;
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    println!("{v}");
    // do not wait for lingering sockets
    std::process::exit(0);
}
