//! Shared harness for the integration tests: spawns the real `chatserver` binary on a
//! random port with a fresh data dir, and offers small blocking HTTP / WebSocket clients.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::{Message, WebSocket};

pub const TEST_SECRET: &str = "integration-test-secret-5f1c2d9e8a7b6c4d3e2f1a0b";
pub const PASSWORD: &str = "correct-horse-battery";
pub const T: Duration = Duration::from_secs(10);

pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

pub fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Poll `f` until it returns true or `timeout` passes. Returns whether it became true.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// Server process
// ---------------------------------------------------------------------------------------

#[derive(Clone, Default)]
pub struct Opts {
    pub env: Vec<(String, String)>,
    pub data_dir: Option<PathBuf>,
    pub port: Option<u16>,
    /// Do not set CHAT_JWT_SECRET (server generates / loads it from the data dir).
    pub no_secret: bool,
}

impl Opts {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
    pub fn data_dir(mut self, p: &Path) -> Self {
        self.data_dir = Some(p.to_path_buf());
        self
    }
    pub fn port(mut self, p: u16) -> Self {
        self.port = Some(p);
        self
    }
    pub fn no_secret(mut self) -> Self {
        self.no_secret = true;
        self
    }
}

pub struct TestServer {
    child: Option<Child>,
    pub pid: u32,
    pub port: u16,
    /// "127.0.0.1:PORT"
    pub addr: String,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    pub secret: Option<String>,
    agent: ureq::Agent,
}

impl TestServer {
    pub fn start_default() -> TestServer {
        Self::start(Opts::new())
    }

    pub fn start(opts: Opts) -> TestServer {
        let (tmp, data_dir) = match &opts.data_dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("chatserver-test-")
                    .tempdir()
                    .expect("tempdir");
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let bin = env!("CARGO_BIN_EXE_chatserver");
        let mut cmd = Command::new(bin);
        // Do not inherit settings from the developer's environment.
        for (k, _) in std::env::vars() {
            if k.starts_with("CHAT_") || k == "DATABASE_URL" || k == "REDIS_URL" {
                cmd.env_remove(&k);
            }
        }
        let bind = format!("127.0.0.1:{}", opts.port.unwrap_or(0));
        cmd.env("CHAT_DATA_DIR", &data_dir)
            .env("CHAT_BIND", &bind)
            .env("CHAT_DEMO", "false");
        if std::env::var("RUST_LOG").is_err() {
            cmd.env("RUST_LOG", "info");
        }
        let secret = if opts.no_secret {
            None
        } else {
            cmd.env("CHAT_JWT_SECRET", TEST_SECRET);
            Some(TEST_SECRET.to_string())
        };
        let mut secret = secret;
        for (k, v) in &opts.env {
            cmd.env(k, v);
            if k == "CHAT_JWT_SECRET" {
                secret = Some(v.clone());
            }
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        let pid = child.id();

        let stderr_lines: Arc<Mutex<VecDeque<String>>> = Arc::new(Mutex::new(VecDeque::new()));
        {
            let err = child.stderr.take().unwrap();
            let lines = stderr_lines.clone();
            std::thread::spawn(move || {
                let r = BufReader::new(err);
                for line in r.split(b'\n') {
                    let Ok(line) = line else { break };
                    let mut l = lines.lock().unwrap();
                    l.push_back(String::from_utf8_lossy(&line).into_owned());
                    if l.len() > 400 {
                        l.pop_front();
                    }
                }
            });
        }
        let stdout_lines: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<u16>();
        {
            let out = child.stdout.take().unwrap();
            let lines = stdout_lines.clone();
            std::thread::spawn(move || {
                let r = BufReader::new(out);
                let mut tx = Some(tx);
                for line in r.split(b'\n') {
                    let Ok(line) = line else { break };
                    let line = String::from_utf8_lossy(&line).into_owned();
                    if let Some(i) = line.find("listening on ") {
                        let rest = line[i + "listening on ".len()..].trim();
                        let port = rest
                            .parse::<SocketAddr>()
                            .map(|a| a.port())
                            .ok()
                            .or_else(|| rest.rsplit(':').next().and_then(|p| p.trim().parse().ok()));
                        if let (Some(p), Some(t)) = (port, tx.as_ref()) {
                            let _ = t.send(p);
                            tx = None;
                        }
                    }
                    let mut l = lines.lock().unwrap();
                    if l.len() < 1000 {
                        l.push(line);
                    }
                }
            });
        }
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(p) => p,
            Err(_) => {
                let status = child.try_wait().ok().flatten();
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "server did not print `listening on 127.0.0.1:PORT` within 20 s (exit: {:?})\nstdout:\n{}\nstderr tail:\n{}",
                    status,
                    stdout_lines.lock().unwrap().join("\n"),
                    stderr_lines.lock().unwrap().iter().cloned().collect::<Vec<_>>().join("\n")
                );
            }
        };
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(20))
            .redirects(0)
            .build();
        TestServer {
            child: Some(child),
            pid,
            port,
            addr: format!("127.0.0.1:{port}"),
            data_dir,
            _tmp: tmp,
            stdout: stdout_lines,
            stderr: stderr_lines,
            secret,
            agent,
        }
    }

    pub fn stderr_tail(&self, n: usize) -> String {
        let l = self.stderr.lock().unwrap();
        let skip = l.len().saturating_sub(n);
        l.iter().skip(skip).cloned().collect::<Vec<_>>().join("\n")
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Is the process still running?
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Graceful stop: SIGTERM, then wait up to 15 s (SIGKILL and panic if it does not exit).
    pub fn stop(&mut self) -> ExitStatus {
        let pid = self.child.as_ref().expect("server already stopped").id();
        let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        self.stop_after_signal()
    }

    /// Wait up to 15 s for the process to exit (a signal was sent already).
    pub fn stop_after_signal(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server already stopped");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return st;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server did not exit within 15 s after SIGTERM\nstderr tail:\n{}",
                    self.stderr_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Mint a token with the server's secret (the fixed test secret unless overridden).
    pub fn mint(&self, sub: &str, name: &str, role: &str, exp_offset_s: i64) -> String {
        let secret = self
            .secret
            .as_deref()
            .expect("server runs without a known secret; cannot mint tokens");
        mint_token_with(secret, sub, name, role, exp_offset_s)
    }

    /// A device token: user `sub` speaking for tracked entity `entity` (claim `entity`),
    /// which may publish `loc:<entity>`.
    pub fn mint_entity(&self, sub: &str, entity: &str) -> String {
        let secret = self.secret.as_deref().expect("a known secret");
        mint_claims(
            secret,
            &json!({"sub": sub, "name": entity, "entity": entity, "exp": now_s() + 3600}),
        )
    }

    // ---- HTTP --------------------------------------------------------------------------

    pub fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> HttpResp {
        let url = format!("{}{}", self.base(), path);
        let mut req = self.agent.request(method, &url);
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let res = match body {
            Some(b) => req.send_json(b.clone()),
            None => req.call(),
        };
        let resp = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!(
                "{method} {path}: transport error {e}\nstderr tail:\n{}",
                self.stderr_tail(30)
            ),
        };
        let status = resp.status();
        let set_cookies: Vec<String> = resp.all("set-cookie").iter().map(|s| s.to_string()).collect();
        let content_type = resp.header("content-type").unwrap_or("").to_string();
        let text = resp.into_string().unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        HttpResp {
            status,
            json,
            text,
            set_cookies,
            content_type,
        }
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let r = self.http("GET", path, token, None, &[]);
        (r.status, r.json)
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let r = self.http("POST", path, token, Some(&body), &[]);
        (r.status, r.json)
    }

    pub fn http_get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.get(path, token)
    }

    pub fn http_post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.post(path, token, body)
    }

    /// Register a user. Returns (token, user_id).
    pub fn register(&self, name: &str, pw: &str) -> (String, String) {
        let r = self.http(
            "POST",
            "/api/register",
            None,
            Some(&json!({"name": name, "password": pw})),
            &[],
        );
        assert!(
            (200..300).contains(&r.status),
            "register {name}: status {} body {}",
            r.status,
            r.text
        );
        let token = r.json["token"]
            .as_str()
            .unwrap_or_else(|| panic!("register: no token in {}", r.text))
            .to_string();
        let id = id_string(&r.json["user"]["id"]).unwrap_or_else(|| panic!("register: no user.id in {}", r.text));
        assert_eq!(
            r.json["user"]["name"],
            json!(name),
            "register reply user.name: {}",
            r.text
        );
        (token, id)
    }

    pub fn user(&self, name: &str) -> User {
        let (token, id) = self.register(name, PASSWORD);
        User {
            token,
            id,
            name: name.to_string(),
        }
    }

    // ---- WebSocket ---------------------------------------------------------------------

    /// Connect with `Authorization: Bearer`, expect the welcome frame first.
    pub fn ws(&self, token: &str) -> WsClient {
        let auth = format!("Bearer {token}");
        let mut c = WsClient::connect(&self.ws_url(), &[("Authorization", auth.as_str())])
            .unwrap_or_else(|e| panic!("ws connect refused: {e:?}\nstderr tail:\n{}", self.stderr_tail(30)));
        c.expect_welcome(T);
        c
    }

    pub fn ws_user(&self, u: &User) -> WsClient {
        let mut c = self.ws(&u.token);
        c.label = u.name.clone();
        c
    }

    pub fn rss_kb(&self) -> Option<u64> {
        rss_kb(self.pid)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- chatserver (pid {}) stderr tail ----\n{}\n----",
                self.pid,
                self.stderr_tail(60)
            );
        }
    }
}

#[derive(Clone, Debug)]
pub struct User {
    pub token: String,
    pub id: String,
    pub name: String,
}

#[derive(Debug)]
pub struct HttpResp {
    pub status: u16,
    pub json: Value,
    pub text: String,
    pub set_cookies: Vec<String>,
    pub content_type: String,
}

/// User ids are strings on the wire; be lenient when reading ("42" or 42).
pub fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `dm:<id>,<id>` with ids sorted (numeric ids sort numerically; equal for our small ids).
pub fn dm_channel(a: &str, b: &str) -> String {
    let mut v = [a.to_string(), b.to_string()];
    v.sort_by(|x, y| (x.len(), x).cmp(&(y.len(), y)));
    format!("dm:{},{}", v[0], v[1])
}

pub fn mint_token(sub: &str, name: &str, role: &str, exp_offset_s: i64) -> String {
    mint_token_with(TEST_SECRET, sub, name, role, exp_offset_s)
}

pub fn mint_token_with(secret: &str, sub: &str, name: &str, role: &str, exp_offset_s: i64) -> String {
    let claims = json!({
        "sub": sub,
        "name": name,
        "role": role,
        "iat": now_s(),
        "exp": now_s() + exp_offset_s,
    });
    mint_claims(secret, &claims)
}

pub fn mint_claims(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode jwt")
}

pub fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    for line in s.lines() {
        if let Some(rest) = line.strip_prefix("VmRSS:") {
            return rest.trim().trim_end_matches("kB").trim().parse().ok();
        }
    }
    None
}

// ---------------------------------------------------------------------------------------
// WebSocket client (tungstenite, blocking with read timeouts)
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
pub enum ConnectError {
    /// The server answered the upgrade with a non-101 HTTP status.
    Http(u16, String),
    Other(String),
}

impl ConnectError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ConnectError::Http(s, _) => Some(*s),
            _ => None,
        }
    }
}

pub enum Frame {
    Json(Value),
    /// Connection closed: Some(code) when a close frame was read (1005 = no code), None for EOF/reset.
    Closed(Option<u16>),
    Timeout,
}

pub struct WsClient {
    pub ws: WebSocket<TcpStream>,
    next_id: i64,
    /// Pushed events (frames with "ev") not consumed yet.
    pub events: VecDeque<Value>,
    /// Other frames (replies nobody waited for, id-less errors).
    pub stash: VecDeque<Value>,
    pub closed: Option<Option<u16>>,
    pub welcome: Option<Value>,
    pub label: String,
}

impl WsClient {
    pub fn connect(url: &str, headers: &[(&str, &str)]) -> Result<WsClient, ConnectError> {
        let mut req = url
            .into_client_request()
            .map_err(|e| ConnectError::Other(format!("bad url: {e}")))?;
        for (k, v) in headers {
            req.headers_mut().insert(
                tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let host = req.uri().host().unwrap_or("127.0.0.1").to_string();
        let port = req.uri().port_u16().unwrap_or(80);
        let stream = TcpStream::connect((host.as_str(), port)).map_err(|e| ConnectError::Other(e.to_string()))?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
        stream.set_nodelay(true).ok();
        match tungstenite::client(req, stream) {
            Ok((ws, _resp)) => Ok(WsClient {
                ws,
                next_id: 0,
                events: VecDeque::new(),
                stash: VecDeque::new(),
                closed: None,
                welcome: None,
                label: "ws".into(),
            }),
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
                let status = resp.status().as_u16();
                let body = resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err(ConnectError::Http(status, body))
            }
            Err(e) => Err(ConnectError::Other(format!("{e:?}"))),
        }
    }

    /// Read the first frame and check it is a welcome.
    pub fn expect_welcome(&mut self, timeout: Duration) -> Value {
        match self.read_frame(timeout) {
            Frame::Json(v) => {
                assert_eq!(
                    v["ev"],
                    json!("welcome"),
                    "{}: first frame must be the welcome, got {v}",
                    self.label
                );
                self.welcome = Some(v.clone());
                v
            }
            Frame::Closed(c) => panic!("{}: closed ({c:?}) instead of welcome", self.label),
            Frame::Timeout => panic!("{}: no welcome within {timeout:?}", self.label),
        }
    }

    pub fn user_id(&self) -> String {
        id_string(&self.welcome.as_ref().expect("no welcome")["user"]["id"]).expect("welcome user.id")
    }

    pub fn read_frame(&mut self, timeout: Duration) -> Frame {
        if let Some(c) = self.closed {
            return Frame::Closed(c);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Frame::Timeout;
            }
            let rem = (deadline - now).max(Duration::from_millis(2));
            let _ = self.ws.get_mut().set_read_timeout(Some(rem));
            match self.ws.read() {
                Ok(Message::Text(t)) => match serde_json::from_str::<Value>(&t) {
                    Ok(v) => return Frame::Json(v),
                    Err(e) => panic!("{}: server sent a non-JSON text frame ({e}): {t:.200}", self.label),
                },
                Ok(Message::Close(cf)) => {
                    let code = Some(cf.map(|f| u16::from(f.code)).unwrap_or(1005));
                    self.closed = Some(code);
                    return Frame::Closed(code);
                }
                Ok(_) => continue, // ping/pong/binary: pongs are answered by tungstenite
                Err(tungstenite::Error::Io(e))
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut =>
                {
                    continue
                }
                Err(_) => {
                    self.closed = Some(None);
                    return Frame::Closed(None);
                }
            }
        }
    }

    /// Next JSON frame of any kind (buffered events/replies are not consulted); None on timeout/close.
    pub fn recv_json(&mut self, timeout: Duration) -> Option<Value> {
        match self.read_frame(timeout) {
            Frame::Json(v) => Some(v),
            _ => None,
        }
    }

    fn file(&mut self, v: Value) {
        if v.get("ev").is_some() {
            self.events.push_back(v);
        } else {
            self.stash.push_back(v);
        }
    }

    pub fn send_text(&mut self, s: &str) -> Result<(), String> {
        self.ws.send(Message::Text(s.to_string())).map_err(|e| e.to_string())
    }

    pub fn send_json(&mut self, v: &Value) {
        let label = self.label.clone();
        self.send_text(&v.to_string())
            .unwrap_or_else(|e| panic!("{label}: send failed: {e}"));
    }

    /// Assign an id, send, return the id (reply not awaited).
    pub fn send_request(&mut self, mut op: Value) -> i64 {
        self.next_id += 1;
        let id = self.next_id;
        op.as_object_mut()
            .expect("op must be an object")
            .insert("id".into(), json!(id));
        self.send_json(&op);
        id
    }

    /// Wait for the reply carrying `id`; pushed events that arrive meanwhile are buffered.
    pub fn wait_reply(&mut self, id: i64, timeout: Duration) -> Value {
        if let Some(pos) = self.stash.iter().position(|v| v["id"] == json!(id)) {
            return self.stash.remove(pos).unwrap();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let rem = deadline.saturating_duration_since(Instant::now());
            match self.read_frame(rem) {
                Frame::Json(v) => {
                    if v.get("ev").is_none() && v["id"] == json!(id) {
                        return v;
                    }
                    self.file(v);
                }
                Frame::Closed(c) => panic!(
                    "{}: connection closed (close code {c:?}) while waiting for reply {id}",
                    self.label
                ),
                Frame::Timeout => panic!(
                    "{}: no reply to request {id} within {timeout:?}; buffered events: {:?}",
                    self.label,
                    self.events.iter().take(5).collect::<Vec<_>>()
                ),
            }
        }
    }

    pub fn request(&mut self, op: Value) -> Value {
        self.request_timeout(op, T)
    }

    pub fn request_timeout(&mut self, op: Value, timeout: Duration) -> Value {
        let id = self.send_request(op);
        let r = self.wait_reply(id, timeout);
        let n_ok = r.get("ok").is_some() as u8 + r.get("error").is_some() as u8;
        assert_eq!(n_ok, 1, "{}: reply must carry exactly one of ok/error: {r}", self.label);
        r
    }

    /// Request that must succeed; returns the `ok` object.
    pub fn ok(&mut self, op: Value) -> Value {
        let r = self.request(op.clone());
        match r.get("ok") {
            Some(v) => v.clone(),
            None => panic!("{}: expected ok for {op}, got {r}", self.label),
        }
    }

    /// Request that must fail; returns the error code.
    pub fn err(&mut self, op: Value) -> String {
        let r = self.request(op.clone());
        assert!(
            r.get("ok").is_none(),
            "{}: expected an error for {op}, got {r}",
            self.label
        );
        let code = r["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: error without code: {r}", self.label))
            .to_string();
        assert!(r["error"]["message"].is_string(), "error.message must be a string: {r}");
        code
    }

    pub fn ping(&mut self) -> Value {
        self.ok(json!({"op":"ping"}))
    }

    /// Next pushed event matching `pred` (buffered ones first); None on timeout/close.
    pub fn next_event(&mut self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Option<Value> {
        if let Some(pos) = self.events.iter().position(&pred) {
            return self.events.remove(pos);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let rem = deadline.saturating_duration_since(Instant::now());
            match self.read_frame(rem) {
                Frame::Json(v) => {
                    if v.get("ev").is_some() && pred(&v) {
                        return Some(v);
                    }
                    self.file(v);
                }
                _ => return None,
            }
        }
    }

    pub fn expect_event(&mut self, pred: impl Fn(&Value) -> bool, timeout: Duration, what: &str) -> Value {
        match self.next_event(pred, timeout) {
            Some(v) => v,
            None => panic!(
                "{}: no {what} event within {timeout:?} (closed: {:?}); buffered: {:?}",
                self.label,
                self.closed,
                self.events.iter().take(8).collect::<Vec<_>>()
            ),
        }
    }

    /// Any frame (event, reply, id-less error) matching `pred`, including buffered ones.
    pub fn next_frame(&mut self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Option<Value> {
        if let Some(pos) = self.stash.iter().position(&pred) {
            return self.stash.remove(pos);
        }
        if let Some(pos) = self.events.iter().position(&pred) {
            return self.events.remove(pos);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let rem = deadline.saturating_duration_since(Instant::now());
            match self.read_frame(rem) {
                Frame::Json(v) => {
                    if pred(&v) {
                        return Some(v);
                    }
                    self.file(v);
                }
                _ => return None,
            }
        }
    }

    // ---- Barriers: "nothing (more) arrived" without a fixed sleep ------------------------
    //
    // The server pushes replies and events for one connection into one FIFO queue (the
    // connection's outbox; control frames jump ahead, and a conflated feed's pending slot
    // keeps its place while taking newer values), so a reply read by the client comes
    // after every event queued before it. A negative check therefore needs (1) the event
    // in question to have been queued (or ruled out) before the server queued the reply,
    // and (2) the reply read. Then the event, had there been one, waits in `self.events`
    // and `buffered_event` finds it.

    /// Same-connection barrier: a `ping` round trip. Every event queued for this
    /// connection before the server handled the ping has been read once this returns.
    /// Enough where whatever would queue the event has already answered its own
    /// request (e.g. `signal`: the recipients' events are queued before the sender's
    /// reply; feed publishes: the shard fans out before it acknowledges).
    pub fn barrier(&mut self) {
        self.ping();
    }

    /// Barrier through the hub shard of the chat channel `channel` (a room, or a DM of
    /// this user: a DM of others is refused before any shard): a `typing` request.
    /// The session hands it to the channel's shard without a membership check; the
    /// shard itself queues the answer (`{}` for a member, `not_found` for a connection
    /// that has not joined) into this connection's outbox, after finishing every
    /// message ahead of it in its mailbox. The publish ack of a stored message is sent by
    /// that shard in the same step as the message's fan-out, so once the publisher has
    /// its ack, this barrier orders every delivery of that message to this connection
    /// (a plain `ping` would not: the ack is queued just before the fan-out, not after).
    /// Side effect: a member's `typing` is relayed to the channel's other members.
    pub fn hub_barrier(&mut self, channel: &str) {
        let r = self.request(json!({"op":"typing","channel":channel}));
        assert!(
            r.get("ok").is_some() || r["error"]["code"] == "not_found",
            "{}: barrier `typing` on {channel} was not handled by the channel's shard: {r}",
            self.label
        );
    }

    /// A buffered event matching `pred`, removed (nothing is read from the socket): after
    /// a barrier, the event if it arrived before the barrier.
    pub fn buffered_event(&mut self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let pos = self.events.iter().position(pred)?;
        self.events.remove(pos)
    }

    /// Marker barrier: every event up to and including the first one matching `marker`,
    /// in arrival order (buffered ones first); panics when the marker does not arrive
    /// within `timeout`. The marker must travel the same path after the event in
    /// question (e.g. a later message of the same channel, published after the suspect
    /// one was acknowledged), so that anything the check looks for comes before it.
    pub fn events_until(&mut self, marker: impl Fn(&Value) -> bool, timeout: Duration, what: &str) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(v) = self.events.pop_front() {
            let found = marker(&v);
            out.push(v);
            if found {
                return out;
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let rem = deadline.saturating_duration_since(Instant::now());
            match self.read_frame(rem) {
                Frame::Json(v) if v.get("ev").is_some() => {
                    let found = marker(&v);
                    out.push(v);
                    if found {
                        return out;
                    }
                }
                Frame::Json(v) => self.stash.push_back(v),
                Frame::Closed(c) => panic!(
                    "{}: closed ({c:?}) before the marker ({what}); events before it: {out:?}",
                    self.label
                ),
                Frame::Timeout => panic!(
                    "{}: no marker ({what}) within {timeout:?}; events before it: {out:?}",
                    self.label
                ),
            }
        }
    }

    /// Wait until the connection is closed. Some(code) when a close frame was read,
    /// None when the socket just ended. Panics if still open after `timeout`.
    pub fn expect_close(&mut self, timeout: Duration) -> Option<u16> {
        match self.wait_closed(timeout) {
            Some(c) => c,
            None => panic!("{}: connection still open after {timeout:?}", self.label),
        }
    }

    /// Some(close) when the connection closed within `timeout`, None when still open.
    pub fn wait_closed(&mut self, timeout: Duration) -> Option<Option<u16>> {
        let deadline = Instant::now() + timeout;
        loop {
            let rem = deadline.saturating_duration_since(Instant::now());
            match self.read_frame(rem) {
                Frame::Json(v) => self.file(v),
                Frame::Closed(c) => return Some(c),
                Frame::Timeout => return None,
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Closes the connection (normal closure) and waits for the server's close frame.
    pub fn close(&mut self) {
        let _ = self.ws.close(None);
        let _ = self.wait_closed(T);
    }
}

pub fn is_msg(channel: &str) -> impl Fn(&Value) -> bool + '_ {
    move |v: &Value| v["ev"] == "message" && v["channel"] == channel
}

pub fn is_msg_seq(channel: &str, seq: u64) -> impl Fn(&Value) -> bool + '_ {
    move |v: &Value| v["ev"] == "message" && v["channel"] == channel && v["seq"].as_u64() == Some(seq)
}

pub fn seqs(messages: &Value) -> Vec<u64> {
    messages
        .as_array()
        .unwrap_or_else(|| panic!("messages must be an array: {messages}"))
        .iter()
        .map(|m| m["seq"].as_u64().unwrap_or_else(|| panic!("message without seq: {m}")))
        .collect()
}

pub fn text_msg(text: &str) -> Value {
    json!({"type":"text","text":text})
}

// ---------------------------------------------------------------------------------------
// Raw WebSocket client (manual upgrade; never answers pings)
// ---------------------------------------------------------------------------------------

pub enum RawFrame {
    /// opcode (1 text, 2 binary, 8 close, 9 ping, 10 pong) and the (reassembled) payload
    Frame(u8, Vec<u8>),
    Eof,
    Timeout,
}

pub struct RawWs {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    /// Connect with socket2 (optional SO_RCVBUF set before connect), send the upgrade
    /// request by hand; returns the HTTP status line and the stream when it is 101.
    pub fn connect(addr: &str, path: &str, headers: &[(&str, &str)], rcvbuf: Option<usize>) -> Result<RawWs, String> {
        use socket2::{Domain, Protocol, Socket, Type};
        let sa: SocketAddr = addr.parse().map_err(|e| format!("{e}"))?;
        let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(|e| e.to_string())?;
        if let Some(n) = rcvbuf {
            sock.set_recv_buffer_size(n).map_err(|e| e.to_string())?;
        }
        sock.connect(&sa.into()).map_err(|e| e.to_string())?;
        let mut stream: TcpStream = sock.into();
        stream.set_nodelay(true).ok();
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        let header_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = stream
                .read(&mut chunk)
                .map_err(|e| format!("reading upgrade response: {e}"))?;
            if n == 0 {
                return Err(format!("EOF during upgrade; got {:?}", String::from_utf8_lossy(&buf)));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
        let status_line = head.lines().next().unwrap_or("").to_string();
        if status_line.split_whitespace().nth(1) != Some("101") {
            return Err(format!("upgrade refused: {status_line}"));
        }
        let rest = buf[header_end..].to_vec();
        Ok(RawWs { stream, buf: rest })
    }

    pub fn send_text(&mut self, s: &str) -> std::io::Result<()> {
        let payload = s.as_bytes();
        let mask = [0x37u8, 0xa1, 0x5c, 0x0e];
        let mut f = Vec::with_capacity(payload.len() + 14);
        f.push(0x81);
        let n = payload.len();
        if n < 126 {
            f.push(0x80 | n as u8);
        } else if n < 65536 {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&f)
    }

    pub fn send_json(&mut self, v: &Value) -> std::io::Result<()> {
        self.send_text(&v.to_string())
    }

    fn fill(&mut self, want: usize, deadline: Instant) -> Result<(), RawFrame> {
        let mut chunk = [0u8; 16384];
        while self.buf.len() < want {
            let now = Instant::now();
            if now >= deadline {
                return Err(RawFrame::Timeout);
            }
            let _ = self
                .stream
                .set_read_timeout(Some((deadline - now).max(Duration::from_millis(2))));
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(RawFrame::Eof),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(RawFrame::Eof),
            }
        }
        Ok(())
    }

    /// Read one frame (does not answer pings). Timeout may leave a partial frame buffered.
    fn read_one(&mut self, deadline: Instant) -> Result<(bool, u8, Vec<u8>), RawFrame> {
        self.fill(2, deadline)?;
        let b0 = self.buf[0];
        let b1 = self.buf[1];
        let masked = b1 & 0x80 != 0;
        let mut len = (b1 & 0x7f) as u64;
        let mut hdr = 2usize;
        if len == 126 {
            self.fill(4, deadline)?;
            len = u16::from_be_bytes([self.buf[2], self.buf[3]]) as u64;
            hdr = 4;
        } else if len == 127 {
            self.fill(10, deadline)?;
            len = u64::from_be_bytes(self.buf[2..10].try_into().unwrap());
            hdr = 10;
        }
        let mask_at = hdr;
        if masked {
            hdr += 4;
        }
        let total = hdr + len as usize;
        self.fill(total, deadline)?;
        let mut payload = self.buf[hdr..total].to_vec();
        if masked {
            let m = [
                self.buf[mask_at],
                self.buf[mask_at + 1],
                self.buf[mask_at + 2],
                self.buf[mask_at + 3],
            ];
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= m[i % 4];
            }
        }
        self.buf.drain(..total);
        Ok((b0 & 0x80 != 0, b0 & 0x0f, payload))
    }

    pub fn read_frame(&mut self, timeout: Duration) -> RawFrame {
        let deadline = Instant::now() + timeout;
        let mut acc: Option<(u8, Vec<u8>)> = None;
        loop {
            match self.read_one(deadline) {
                Err(f) => return f,
                Ok((fin, op, payload)) => {
                    if op >= 8 {
                        return RawFrame::Frame(op, payload); // control frames are never fragmented
                    }
                    let (opc, mut data) = match acc.take() {
                        Some((o, d)) => (o, d),
                        None => (op, Vec::new()),
                    };
                    data.extend_from_slice(&payload);
                    if fin {
                        return RawFrame::Frame(opc, data);
                    }
                    acc = Some((opc, data));
                }
            }
        }
    }

    /// Read text frames until one parses to JSON matching `pred` (pings are ignored, not answered).
    pub fn read_json_until(&mut self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let rem = deadline.saturating_duration_since(Instant::now());
            match self.read_frame(rem) {
                RawFrame::Frame(1, p) => {
                    if let Ok(v) = serde_json::from_slice::<Value>(&p) {
                        if pred(&v) {
                            return Some(v);
                        }
                    }
                }
                RawFrame::Frame(_, _) => {}
                _ => return None,
            }
        }
    }
}

pub fn close_code(payload: &[u8]) -> u16 {
    if payload.len() >= 2 {
        u16::from_be_bytes([payload[0], payload[1]])
    } else {
        1005
    }
}

// ---------------------------------------------------------------------------------------
// Services (PostgreSQL, Redis) for the tests that need them
// ---------------------------------------------------------------------------------------

/// The running test's name: libtest runs every test on a thread named after it.
pub fn test_name() -> String {
    std::thread::current().name().unwrap_or("<unnamed test>").to_string()
}

/// Says that `test` is skipped: one line `SKIPPED (<reason>): <test>` on the process's
/// stderr. Written through `std::io::stderr()` itself, not `eprintln!`: libtest captures
/// what `print!`/`eprintln!` write in a test and shows it only when the test fails, so a
/// skipping test (which passes) would say nothing. `.ci/run` fails when such a line
/// appears.
pub fn skip(test: &str, reason: &str) {
    let line = format!("SKIPPED ({reason}): {test}\n");
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(line.as_bytes());
    let _ = err.flush();
}

/// Services are required (CI): a missing one fails the test instead of skipping it.
pub fn services_required() -> bool {
    std::env::var("CHAT_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// `REDIS_URL`, or `None` (skip) when unset and not required.
pub fn redis_url() -> Option<String> {
    match std::env::var("REDIS_URL").ok().filter(|u| u.starts_with("redis")) {
        Some(u) => Some(u),
        None if services_required() => panic!("REDIS_URL must be set (CHAT_REQUIRE_SERVICES=1)"),
        None => {
            skip(&test_name(), "REDIS_URL is not set");
            None
        }
    }
}

/// A database of its own for one test, dropped at the end.
pub struct PgDb {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgDb {
    pub fn create() -> Option<PgDb> {
        let base = std::env::var("DATABASE_URL").ok().filter(|u| u.starts_with("postgres"));
        let Some(base) = base else {
            if services_required() {
                panic!("DATABASE_URL must name a PostgreSQL server (CHAT_REQUIRE_SERVICES=1)");
            }
            skip(&test_name(), "DATABASE_URL is not a postgres:// URL");
            return None;
        };
        let name = format!("chat_test_{}", hex::encode(rand::random::<[u8; 6]>()));
        use diesel::{connection::SimpleConnection, Connection};
        let mut admin = diesel::pg::PgConnection::establish(&base).expect("connect to DATABASE_URL");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create test database");
        // Replace the database part of the URL (after the last '/', before any '?').
        let (head, tail) = base.rsplit_once('/').expect("URL with a database");
        let query = tail.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
        Some(PgDb {
            url: format!("{head}/{name}{query}"),
            admin_url: base,
            name,
        })
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        use diesel::{connection::SimpleConnection, Connection};
        if let Ok(mut admin) = diesel::pg::PgConnection::establish(&self.admin_url) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Checks shared by the backends
// ---------------------------------------------------------------------------------------

/// Input with control characters is refused at the edge, alone: a `client_id` holding
/// NUL fails only its own item of a batch (PostgreSQL would fail the whole write batch
/// on it), a token whose `sub` holds one is refused, and a display name loses its
/// control and bidi characters.
pub fn control_characters_are_refused_alone(s: &TestServer) {
    let a = s.user("ctl");
    let mut ca = s.ws_user(&a);
    ca.ok(json!({"op":"join","channel":"room:ctl"}));
    let items = json!([
        {"channel":"room:ctl","data":text_msg("before"),"client_id":"ok-1"},
        {"channel":"room:ctl","data":text_msg("nul"),"client_id":"bad\u{0}id"},
        {"channel":"room:ctl","data":text_msg("after"),"client_id":"ok-2"},
    ]);
    let (st, body) = s.post("/api/publish/batch", Some(&a.token), items);
    assert_eq!(st, 200, "{body}");
    assert_eq!(body[0]["seq"], 1, "{body}");
    assert_eq!(body[1]["error"]["code"], "bad_request", "{body}");
    assert_eq!(body[2]["seq"], 2, "{body}");
    let (_, h) = s.get("/api/channels/room:ctl/history", Some(&a.token));
    assert_eq!(seqs(&h["messages"]), [1, 2], "{h}");
    let r = ca.request(json!({"op":"publish","channel":"room:ctl","data":text_msg("x"),"client_id":"a\u{1}b"}));
    assert_eq!(r["error"]["code"], "bad_request", "{r}");
    let secret = s.secret.clone().expect("a known secret");
    let exp = now_s() + 3600;
    let bad = mint_claims(&secret, &json!({"sub":"x\u{0}y","exp":exp}));
    let auth = format!("Bearer {bad}");
    match WsClient::connect(&s.ws_url(), &[("Authorization", auth.as_str())]) {
        Err(e) => assert_eq!(e.status(), Some(401), "{e:?}"),
        Ok(_) => panic!("a token whose sub holds NUL was accepted"),
    }
    let shady = mint_claims(
        &secret,
        &json!({"sub":"shady","name":"eve\u{202E}nimda\u{7}","exp":exp}),
    );
    let mut c = s.ws(&shady);
    let j = c.ok(json!({"op":"join","channel":"room:ctl"}));
    let names: Vec<&str> = j["presence"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert!(names.contains(&"evenimda"), "{names:?}");
}
