//! Small shared pieces: the clock, arguments, HS256 tokens, event counters, the target kind.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// clock

pub static T0: OnceLock<Instant> = OnceLock::new();

/// Microseconds since the process started (monotonic; senders and receivers share it).
pub fn now_us() -> u64 {
    T0.get_or_init(Instant::now).elapsed().as_micros() as u64
}

pub fn unix_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

// ---------------------------------------------------------------------------------------------
// arguments: `--name value` pairs after the subcommand

pub struct Args {
    pub map: HashMap<String, String>,
    pub rest: Vec<String>,
}

impl Args {
    pub fn parse(v: &[String]) -> Args {
        let mut map = HashMap::new();
        let mut rest = Vec::new();
        let mut i = 0;
        while i < v.len() {
            if let Some(k) = v[i].strip_prefix("--") {
                if let Some((k, val)) = k.split_once('=') {
                    map.insert(k.to_string(), val.to_string());
                    i += 1;
                } else if i + 1 < v.len() && !v[i + 1].starts_with("--") {
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
    pub fn s(&self, k: &str, d: &str) -> String {
        self.map.get(k).cloned().unwrap_or_else(|| d.to_string())
    }
    pub fn n(&self, k: &str, d: f64) -> f64 {
        self.map
            .get(k)
            .map(|v| v.parse().unwrap_or_else(|_| panic!("--{k}: not a number: {v}")))
            .unwrap_or(d)
    }
}

// ---------------------------------------------------------------------------------------------
// HS256 JWT

pub fn b64url(d: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)
}

pub fn mint(secret: &str, sub: &str, name: &str, role: &str) -> String {
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
// shared counters

#[repr(align(64))]
#[derive(Default)]
pub struct Padded(pub AtomicU64);

#[derive(Default)]
pub struct Events(pub Mutex<BTreeMap<String, u64>>);

impl Events {
    pub fn add(&self, k: impl Into<String>) {
        *self.0.lock().unwrap().entry(k.into()).or_default() += 1;
    }
    pub fn json(&self) -> Value {
        json!(self.0.lock().unwrap().clone())
    }
}

#[derive(Clone, Copy, PartialEq)]
pub enum Target {
    Chat,
    Bare,
}
