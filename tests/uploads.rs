//! Uploads: `POST /api/uploads` (multipart field `file`) and `GET /uploads/<name>`.
mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// Raw HTTP/1.1 (exact request bytes, no client-side path normalization)
// ---------------------------------------------------------------------------------------

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(p) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..p]).split(';').next().unwrap().trim(), 16).unwrap_or(0);
        b = &b[p + 2..];
        if size == 0 || b.len() < size {
            out.extend_from_slice(&b[..size.min(b.len())]);
            break;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[(size + 2).min(b.len())..];
    }
    out
}

/// Sends `head` (request line + headers, without the final blank line) and `body`,
/// reads the response until the server closes (a reset after the response is tolerated).
fn raw_http(addr: &str, head: &str, body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let mut req = head.to_string();
    req.push_str(&format!(
        "Host: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    // The server may answer (and close) before reading a too-large body: ignore write errors.
    let _ = s.write_all(&bytes);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response head: {:?}", String::from_utf8_lossy(&buf)));
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Resp { status, headers, body }
}

const BOUNDARY: &str = "----chatserver-test-boundary-7MA4YWxkTrZu0gW";

fn multipart(field: &str, filename: &str, ctype: &str, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: {ctype}\r\n\r\n"
        )
        .as_bytes(),
    );
    b.extend_from_slice(data);
    b.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    b
}

fn upload(s: &TestServer, token: Option<&str>, filename: &str, ctype: &str, data: &[u8]) -> Resp {
    let mut head = format!("POST /api/uploads HTTP/1.1\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    raw_http(&s.addr, &head, &multipart("file", filename, ctype, data))
}

fn get(s: &TestServer, path: &str) -> Resp {
    raw_http(&s.addr, &format!("GET {path} HTTP/1.1\r\n"), b"")
}

fn files_in(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => vec![],
    }
}

// ---------------------------------------------------------------------------------------
// A tiny valid PNG, built by hand
// ---------------------------------------------------------------------------------------

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut c = kind.to_vec();
    c.extend_from_slice(data);
    out.extend_from_slice(&c);
    out.extend_from_slice(&crc32(&c).to_be_bytes());
}

/// 2x2 RGB PNG (zlib "stored" block, no compression needed).
fn tiny_png() -> Vec<u8> {
    let (w, h) = (2u32, 2u32);
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0); // filter: none
        for x in 0..w {
            raw.extend_from_slice(&[(x * 200) as u8, (y * 200) as u8, 0x80]);
        }
    }
    let mut z = vec![0x78, 0x01, 0x01];
    z.extend_from_slice(&(raw.len() as u16).to_le_bytes());
    z.extend_from_slice(&(!(raw.len() as u16)).to_le_bytes());
    z.extend_from_slice(&raw);
    z.extend_from_slice(&adler32(&raw).to_be_bytes());
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(&mut png, b"IHDR", &ihdr);
    png_chunk(&mut png, b"IDAT", &z);
    png_chunk(&mut png, b"IEND", &[]);
    png
}

fn assert_upload_url(j: &Value, ext: &str) -> String {
    let url = j["url"]
        .as_str()
        .unwrap_or_else(|| panic!("upload reply without url: {j}"));
    let name = url
        .strip_prefix("/uploads/")
        .unwrap_or_else(|| panic!("upload url must be /uploads/<name>: {url}"));
    let (id, e) = name
        .split_once('.')
        .unwrap_or_else(|| panic!("upload name without extension: {url}"));
    assert_eq!(id.len(), 32, "random part is 32 hex digits: {url}");
    assert!(
        id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{url}"
    );
    assert_eq!(e, ext, "{url}");
    url.to_string()
}

// ---------------------------------------------------------------------------------------

#[test]
fn png_upload_roundtrip() {
    let s = TestServer::start_default();
    let tok = s.mint("u-1", "alice", "user", 600);
    let png = tiny_png();
    let r = upload(&s, Some(&tok), "dot.png", "image/png", &png);
    assert_eq!(r.status, 201, "PNG upload: {}", r.text());
    let j = r.json();
    assert_eq!(j["mime"], "image/png", "{j}");
    assert_eq!(j["size"].as_u64(), Some(png.len() as u64), "{j}");
    assert_eq!(j["name"], "dot.png", "{j}");
    let url = assert_upload_url(&j, "png");

    let g = get(&s, &url);
    assert_eq!(g.status, 200, "GET {url}: {}", g.text());
    assert_eq!(g.body, png, "served bytes differ from the upload");
    assert_eq!(g.header("content-type"), Some("image/png"), "{:?}", g.headers);
    assert_eq!(
        g.header("x-content-type-options").map(|v| v.to_ascii_lowercase()),
        Some("nosniff".into()),
        "{:?}",
        g.headers
    );
    assert!(
        !g.header("content-disposition")
            .unwrap_or("")
            .to_ascii_lowercase()
            .starts_with("attachment"),
        "images are served inline: {:?}",
        g.headers
    );

    // A PNG sent with a wrong declared type is still recognized by its bytes; the
    // client-side file name is reduced to its last component.
    let r = upload(
        &s,
        Some(&tok),
        "../../evil/dir/pic.bin",
        "application/octet-stream",
        &png,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let j = r.json();
    assert_eq!(j["mime"], "image/png", "{j}");
    assert!(
        !j["name"].as_str().unwrap_or("/").contains('/'),
        "name must not carry a path: {j}"
    );
    assert_upload_url(&j, "png");
    // The file really is in <data_dir>/uploads.
    let name = url.strip_prefix("/uploads/").unwrap();
    assert!(
        s.data_dir.join("uploads").join(name).is_file(),
        "{name} in the uploads dir"
    );
}

#[test]
fn active_content_is_served_as_attachment() {
    let s = TestServer::start_default();
    let tok = s.mint("u-1", "alice", "user", 600);
    let cases: Vec<(&str, &str, &[u8])> = vec![
        (
            "page.html",
            "text/html",
            b"<!doctype html><html><script>alert(document.cookie)</script></html>",
        ),
        (
            "pic.svg",
            "image/svg+xml",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"><rect width=\"1\" height=\"1\"/></svg>",
        ),
        // an HTML file that claims to be a PNG
        ("fake.png", "image/png", b"<html><body onload=alert(1)>x</body></html>"),
        ("notes.txt", "text/plain", b"just text"),
    ];
    for (name, ctype, data) in cases {
        let r = upload(&s, Some(&tok), name, ctype, data);
        assert_eq!(r.status, 201, "{name}: {}", r.text());
        let j = r.json();
        assert_eq!(j["size"].as_u64(), Some(data.len() as u64), "{name}: {j}");
        let mime = j["mime"].as_str().unwrap_or("");
        assert!(!mime.starts_with("image/"), "{name}: not an image, reply mime {mime}");
        let url = assert_upload_url(&j, "bin");
        let g = get(&s, &url);
        assert_eq!(g.status, 200, "GET {url}");
        assert_eq!(g.body, data, "{name}: served bytes");
        assert_eq!(
            g.header("content-type"),
            Some("application/octet-stream"),
            "{name}: {:?}",
            g.headers
        );
        assert!(
            g.header("content-disposition")
                .unwrap_or("")
                .to_ascii_lowercase()
                .starts_with("attachment"),
            "{name}: must be an attachment: {:?}",
            g.headers
        );
        assert_eq!(
            g.header("x-content-type-options").map(|v| v.to_ascii_lowercase()),
            Some("nosniff".into()),
            "{name}: {:?}",
            g.headers
        );
    }
}

#[test]
fn too_large_upload_is_rejected_and_not_kept() {
    let s = TestServer::start(Opts::new().env("CHAT_MAX_UPLOAD_BYTES", "1000"));
    let tok = s.mint("u-1", "alice", "user", 600);
    let dir = s.data_dir.join("uploads");
    let big = vec![b'x'; 5000];
    let r = upload(&s, Some(&tok), "big.bin", "application/octet-stream", &big);
    assert_eq!(r.status, 413, "upload over the limit: {}", r.text());
    assert_eq!(r.json()["error"]["code"], "too_large", "{}", r.text());
    // just over the limit, with a PNG header
    let mut png_big = tiny_png();
    png_big.resize(1001, 0);
    let r = upload(&s, Some(&tok), "big.png", "image/png", &png_big);
    assert_eq!(r.status, 413, "1001 bytes over a 1000 byte limit: {}", r.text());
    assert_eq!(r.json()["error"]["code"], "too_large", "{}", r.text());
    // No wait: the server removes a refused upload's partial file before it answers,
    // so the 413 is the barrier.
    assert_eq!(
        files_in(&dir),
        Vec::<String>::new(),
        "no file (nor partial file) may be left behind"
    );

    // Exactly at the limit is fine.
    let ok = vec![b'y'; 1000];
    let r = upload(&s, Some(&tok), "ok.bin", "application/octet-stream", &ok);
    assert_eq!(r.status, 201, "upload of exactly the limit: {}", r.text());
    assert_eq!(files_in(&dir).len(), 1, "{:?}", files_in(&dir));
}

#[test]
fn upload_needs_a_credential() {
    let s = TestServer::start(Opts::new().env("CHAT_ALLOW_ANONYMOUS", "true"));
    let png = tiny_png();
    let r = upload(&s, None, "dot.png", "image/png", &png);
    assert_eq!(r.status, 401, "upload without a credential: {}", r.text());
    assert_eq!(r.json()["error"]["code"], "unauthorized", "{}", r.text());
    let r = upload(&s, Some("not-a-jwt"), "dot.png", "image/png", &png);
    assert_eq!(r.status, 401, "upload with a bad token: {}", r.text());
    let expired = s.mint("u-1", "alice", "user", -3600);
    let r = upload(&s, Some(&expired), "dot.png", "image/png", &png);
    assert_eq!(r.status, 401, "upload with an expired token: {}", r.text());
    assert!(files_in(&s.data_dir.join("uploads")).is_empty(), "nothing stored");
    // Missing `file` field.
    let tok = s.mint("u-1", "alice", "user", 600);
    let head = format!(
        "POST /api/uploads HTTP/1.1\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\nAuthorization: Bearer {tok}\r\n"
    );
    let r = raw_http(&s.addr, &head, &multipart("other", "x.png", "image/png", &png));
    assert_eq!(r.status, 400, "multipart without a `file` field: {}", r.text());
}

#[test]
fn bad_upload_names_are_not_found() {
    let s = TestServer::start_default();
    let tok = s.mint("u-1", "alice", "user", 600);
    let png = tiny_png();
    let r = upload(&s, Some(&tok), "dot.png", "image/png", &png);
    assert_eq!(r.status, 201, "{}", r.text());
    let url = assert_upload_url(&r.json(), "png");
    let id = url
        .strip_prefix("/uploads/")
        .unwrap()
        .split_once('.')
        .unwrap()
        .0
        .to_string();
    // A stray file in the data dir that must never be reachable.
    std::fs::write(s.data_dir.join("secret.txt"), b"top secret").unwrap();
    std::fs::write(s.data_dir.join("uploads").join(format!("{id}.html")), b"<script>").unwrap();
    let upper = id.to_ascii_uppercase();
    let short = &id[..31];
    let other = "0123456789abcdef0123456789abcdef";
    for path in [
        "/uploads/../chat.db".to_string(),
        "/uploads/../secret.txt".to_string(),
        "/uploads/..%2fsecret.txt".to_string(),
        "/uploads/..%2Fchat.db".to_string(),
        "/uploads/%2e%2e%2fsecret.txt".to_string(),
        "/uploads/%2e%2e/secret.txt".to_string(),
        "/uploads/..\\secret.txt".to_string(),
        "/uploads/chat.db".to_string(),
        "/uploads/secret.txt".to_string(),
        format!("/uploads/{id}"),
        format!("/uploads/{id}."),
        format!("/uploads/{id}.html"),
        format!("/uploads/{id}.jpg"),
        format!("/uploads/{id}.png.bin"),
        format!("/uploads/{id}.part"),
        format!("/uploads/{upper}.png"),
        format!("/uploads/{short}.png"),
        format!("/uploads/{id}0.png"),
        format!("/uploads/{other}.png"),
        format!("/uploads/{other}.bin"),
        format!("/uploads/%2e%2e%2f{id}.png"),
        format!("/uploads/{id}.png%00"),
        format!("/uploads/{id}.png%2f..%2f..%2fchat.db"),
        format!("/uploads/x/../{id}.png.bin"),
    ] {
        let g = get(&s, &path);
        assert_eq!(g.status, 404, "GET {path}: {} {:?}", g.text(), g.headers);
        assert!(
            !g.body.windows(10).any(|w| w == b"top secret") && !g.body.starts_with(b"SQLite"),
            "GET {path} leaked a file"
        );
    }
    // The real one still works.
    assert_eq!(get(&s, &url).status, 200);
}

#[test]
fn uploads_have_a_quota_a_rate_and_a_directory_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(
        Opts::new()
            .env("CHAT_UPLOAD_DIR", dir.path().to_str().unwrap())
            .env("CHAT_UPLOAD_QUOTA_BYTES", "3000")
            .env("CHAT_UPLOADS_PER_HOUR", "4"),
    );
    let tok = s.mint("u-q", "quota", "user", 600);
    let data = vec![b'x'; 1000];
    for _ in 0..3 {
        let r = upload(&s, Some(&tok), "a.txt", "text/plain", &data);
        assert_eq!(r.status, 201, "{}", r.text());
    }
    assert_eq!(files_in(dir.path()).len(), 3, "stored in CHAT_UPLOAD_DIR");
    assert!(files_in(&s.data_dir.join("uploads")).is_empty());
    // 3,000 bytes kept: the quota is used up.
    let r = upload(&s, Some(&tok), "b.txt", "text/plain", b"more");
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (413, Some("too_large")),
        "{}",
        r.text()
    );
    // Another user has a quota of their own; the first also hit the hourly rate now.
    let other = s.mint("u-r", "other", "user", 600);
    assert_eq!(upload(&s, Some(&other), "c.txt", "text/plain", b"hi").status, 201);
    let r = upload(&s, Some(&tok), "d.txt", "text/plain", b"hi");
    assert_eq!(r.status, 429, "{}", r.text());
}

#[test]
fn uploads_are_streamed_with_ranges_and_names_lose_direction_overrides() {
    let s = TestServer::start_default();
    let tok = s.mint("u-s", "streamer", "user", 600);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let r = upload(&s, Some(&tok), "evil\u{202E}gpj.exe", "application/octet-stream", &data);
    assert_eq!(r.status, 201, "{}", r.text());
    let j = r.json();
    assert_eq!(j["name"], "evilgpj.exe", "{j}");
    let url = assert_upload_url(&j, "bin");
    let g = get(&s, &url);
    assert_eq!(g.status, 200);
    assert_eq!(g.body, data);
    let part = raw_http(
        &s.addr,
        &format!("GET {url} HTTP/1.1\r\nRange: bytes=1000-1009\r\n"),
        b"",
    );
    assert_eq!(part.status, 206, "{:?}", part.headers);
    assert_eq!(part.body, data[1000..1010].to_vec());
    assert_eq!(get(&s, "/uploads/0123456789abcdef0123456789abcdef.png").status, 404);
    assert_eq!(get(&s, "/uploads/..%2Fjwt_secret").status, 404);
}

#[test]
fn voice_messages_upload_play_inline_and_respect_the_limits() {
    let s = TestServer::start(Opts::new().env("CHAT_VOICE_MAX_S", "10"));
    let a = s.user("voice");
    // A WebM (Matroska) header: stored as .webm and served inline as audio or video.
    let mut webm = vec![0x1a, 0x45, 0xdf, 0xa3];
    webm.extend_from_slice(&[0x42; 2000]);
    let r = upload(&s, Some(&a.token), "voice.webm", "audio/webm;codecs=opus", &webm);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let info: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let url = info["url"].as_str().unwrap().to_string();
    assert!(url.ends_with(".webm"), "{info}");
    assert_eq!(info["mime"], "audio/webm", "{info}");
    let got = get(&s, &url);
    assert_eq!(got.status, 200);
    assert!(
        got.header("content-type").unwrap_or("").starts_with("video/webm"),
        "{:?}",
        got.headers
    );
    assert!(
        got.header("content-disposition").unwrap_or("").starts_with("inline"),
        "{:?}",
        got.headers
    );

    let mut c = s.ws_user(&a);
    let voice = |ms: u64, peaks: serde_json::Value| json!({"op":"publish","channel":"room:v","data":{"type":"audio","url":url,"name":"voice.webm","size":2004,"mime":"audio/webm","duration_ms":ms,"peaks":peaks}});
    c.ok(voice(2100, json!([0, 40, 255, 12])));
    assert_eq!(
        c.err(voice(10_001, json!([]))),
        "bad_request",
        "longer than CHAT_VOICE_MAX_S"
    );
    assert_eq!(
        c.err(voice(1000, json!((0..65).collect::<Vec<u32>>()))),
        "bad_request",
        "65 peaks"
    );
    assert_eq!(c.err(voice(1000, json!([300]))), "bad_request", "a peak above 255");
    let forged = json!({"op":"publish","channel":"room:v","data":{"type":"call","call":"x","media":"audio","status":"answered","duration_ms":5}});
    assert_eq!(c.err(forged), "bad_request", "only the server writes call records");
}
