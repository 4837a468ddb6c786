//! `/metrics` (every family, the naming rules, counters that move with traffic, the
//! private listener of `CHAT_METRICS_BIND`, the Grafana dashboard's names) and JSON
//! log lines (`CHAT_LOG_FORMAT=json`).
mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use serde_json::{json, Value};

/// A parsed exposition: the families (`# TYPE`) and every sample's value, keyed by
/// the sample as written (`name{labels}`).
struct Exposition {
    types: BTreeMap<String, String>,
    helps: BTreeSet<String>,
    samples: BTreeMap<String, f64>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut e = Exposition {
            types: BTreeMap::new(),
            helps: BTreeSet::new(),
            samples: BTreeMap::new(),
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line: {line}"));
                e.types.insert(name.into(), kind.into());
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                e.helps.insert(rest.split(' ').next().unwrap().into());
            } else {
                assert!(!line.starts_with('#'), "unexpected comment: {line}");
                let (sample, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample: {line}"));
                let v: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
                e.samples.insert(sample.into(), v);
            }
        }
        e
    }

    /// The value of one sample (`name` or `name{labels}`), 0 when absent.
    fn get(&self, sample: &str) -> f64 {
        self.samples.get(sample).copied().unwrap_or(0.0)
    }

    /// The family a sample belongs to.
    fn family_of(&self, sample: &str) -> Option<&str> {
        let name = sample.split('{').next().unwrap();
        if self.types.contains_key(name) {
            return self.types.get_key_value(name).map(|(k, _)| k.as_str());
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let base = name.strip_suffix(suffix)?;
            (self.types.get(base).map(String::as_str) == Some("histogram"))
                .then(|| self.types.get_key_value(base).unwrap().0.as_str())
        })
    }
}

fn scrape_url(url: &str) -> Exposition {
    let r = ureq::get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(
        r.content_type().starts_with("text/plain"),
        "Prometheus text format: {}",
        r.content_type()
    );
    Exposition::parse(&r.into_string().unwrap())
}

fn scrape(s: &TestServer) -> Exposition {
    scrape_url(&format!("{}/metrics", s.base()))
}

/// Every family the server exports, with its type.
const FAMILIES: &[(&str, &str)] = &[
    ("chat_build_info", "gauge"),
    ("chat_connections", "gauge"),
    ("chat_connections_accepted_total", "counter"),
    ("chat_channels", "gauge"),
    ("chat_subscriptions", "gauge"),
    ("chat_frames_in_total", "counter"),
    ("chat_bad_requests_total", "counter"),
    ("chat_messages_in_total", "counter"),
    ("chat_messages_out_total", "counter"),
    ("chat_publish_commit_seconds", "histogram"),
    ("chat_commit_delivery_seconds", "histogram"),
    ("chat_write_batch_size", "histogram"),
    ("chat_write_commit_seconds", "histogram"),
    ("chat_outbox_overflows_total", "counter"),
    ("chat_rate_limited_total", "counter"),
    ("chat_bus_lag_seconds", "histogram"),
    ("chat_gap_fills_total", "counter"),
    ("chat_gaps_skipped_total", "counter"),
];

#[test]
fn every_family_exists_and_follows_the_naming_rules() {
    let s = TestServer::start_default();
    let m = scrape(&s);
    for (name, kind) in FAMILIES {
        assert_eq!(m.types.get(*name).map(String::as_str), Some(*kind), "family {name}");
    }
    for (name, kind) in &m.types {
        assert!(name.starts_with("chat_"), "{name}: no chat_ prefix");
        assert!(m.helps.contains(name), "{name}: no HELP");
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name} ({kind}): _total is for counters"
        );
        if name.contains("latency") || name.contains("_lag") || name.contains("_time") {
            assert!(name.ends_with("_seconds"), "{name}: times are in seconds");
        }
        assert!(!name.contains("millis") && !name.contains("_ms"), "{name}: base units");
    }
    for sample in m.samples.keys() {
        assert!(m.family_of(sample).is_some(), "{sample} belongs to no declared family");
    }
    // Labelled families: every namespace and every limit has its series from the start.
    for ns in ["room", "dm", "ticker", "sports", "loc"] {
        for dir in ["in", "out"] {
            let sample = format!("chat_messages_{dir}_total{{namespace=\"{ns}\"}}");
            assert!(m.samples.contains_key(&sample), "{sample}");
        }
    }
    for what in ["requests", "writes", "logins", "handshakes", "connections"] {
        let sample = format!("chat_rate_limited_total{{what=\"{what}\"}}");
        assert!(m.samples.contains_key(&sample), "{sample}");
    }
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(m.get(&format!("chat_build_info{{version=\"{version}\"}}")), 1.0);
}

#[test]
fn counters_and_histograms_move_with_traffic() {
    let s = TestServer::start(Opts::new().env("CHAT_HANDSHAKES_PER_MIN_PER_ADDRESS", "3"));
    let before = scrape(&s);
    let a = s.user("alice");
    let b = s.user("bob");
    let mut ca = s.ws_user(&a);
    let mut cb = s.ws_user(&b);
    let mut feeder = s.ws(&s.mint("feed-1", "feeder", "publisher", 600));

    ca.ok(json!({"op":"join","channel":"room:metrics"}));
    cb.ok(json!({"op":"join","channel":"room:metrics"}));
    cb.ok(json!({"op":"join","channel":"ticker:m"}));
    let mut last = 0;
    for i in 0..3 {
        let r = ca.ok(json!({"op":"publish","channel":"room:metrics","data":text_msg(&format!("m{i}"))}));
        last = r["seq"].as_u64().unwrap();
    }
    cb.expect_event(is_msg_seq("room:metrics", last), T, "the last room message");
    for p in [1.0, 2.0] {
        feeder.ok(json!({"op":"publish","channel":"ticker:m","data":{"price":p}}));
    }
    cb.expect_event(
        |e| e["ev"] == "message" && e["data"]["price"] == 2.0,
        T,
        "the last quote",
    );

    // A fourth handshake within the minute is refused.
    let t = s.mint("9", "carol", "user", 600);
    let refused = WsClient::connect(&s.ws_url(), &[("Authorization", &format!("Bearer {t}"))]);
    assert_eq!(refused.err().and_then(|e| e.status()), Some(429));

    let delta = |m: &Exposition, sample: &str| m.get(sample) - before.get(sample);
    let mut m = scrape(&s);
    // The histograms of delivery are observed right after the frames are queued: wait
    // for the scrape to see them.
    assert!(
        wait_until(T, || {
            m = scrape(&s);
            delta(&m, "chat_commit_delivery_seconds_count") >= 1.0
        }),
        "chat_commit_delivery_seconds_count did not move"
    );
    assert_eq!(delta(&m, "chat_messages_in_total{namespace=\"room\"}"), 3.0);
    assert_eq!(delta(&m, "chat_messages_in_total{namespace=\"ticker\"}"), 2.0);
    assert_eq!(delta(&m, "chat_messages_in_total{namespace=\"dm\"}"), 0.0);
    // Two members of the room get every message; one subscriber gets the quotes.
    assert_eq!(delta(&m, "chat_messages_out_total{namespace=\"room\"}"), 6.0);
    assert_eq!(delta(&m, "chat_messages_out_total{namespace=\"ticker\"}"), 2.0);
    assert_eq!(delta(&m, "chat_publish_commit_seconds_count"), 3.0);
    assert!(delta(&m, "chat_publish_commit_seconds_sum") > 0.0);
    assert_eq!(
        m.get("chat_publish_commit_seconds_bucket{le=\"+Inf\"}"),
        m.get("chat_publish_commit_seconds_count")
    );
    assert!(delta(&m, "chat_write_batch_size_count") >= 1.0);
    // Batches hold the publishes (and the joins' admissions): as many ops as that.
    assert!(delta(&m, "chat_write_batch_size_sum") >= 3.0);
    assert!(delta(&m, "chat_write_commit_seconds_count") >= 1.0);
    assert_eq!(m.get("chat_connections"), 3.0);
    assert_eq!(delta(&m, "chat_connections_accepted_total"), 3.0);
    assert!(m.get("chat_subscriptions") >= 3.0);
    assert!(m.get("chat_channels") >= 2.0);
    assert!(delta(&m, "chat_frames_in_total") >= 8.0);
    assert_eq!(delta(&m, "chat_rate_limited_total{what=\"handshakes\"}"), 1.0);
    assert_eq!(delta(&m, "chat_bad_requests_total"), 0.0);

    // A malformed frame is counted.
    cb.send_text("{not json").unwrap();
    cb.ping();
    assert_eq!(delta(&scrape(&s), "chat_bad_requests_total"), 1.0);
}

/// Two nodes on one PostgreSQL database and Redis (skipped without them, like
/// tests/cluster.rs): a message published on one node reaches the other over the
/// bus, whose age there is observed; a message missing from the bus is a gap filled
/// from the database.
#[test]
fn bus_lag_and_gap_fills_are_observed_on_the_receiving_node() {
    let Some(redis) = redis_url() else { return };
    let Some(db) = PgDb::create() else { return };
    let name = format!("test-{}", hex::encode(rand::random::<[u8; 6]>()));
    let start = || {
        TestServer::start(
            Opts::new()
                .env("DATABASE_URL", &db.url)
                .env("REDIS_URL", &redis)
                .env("CHAT_CLUSTER_NAME", &name),
        )
    };
    let (n1, n2) = (start(), start());
    let before = scrape(&n2);
    let mut member = n2.ws(&n2.mint("m", "member", "user", 600));
    member.ok(json!({"op":"join","channel":"room:lag"}));
    let mut author = n1.ws(&n1.mint("a", "author", "user", 600));
    let seq = author.ok(json!({"op":"publish","channel":"room:lag","data":text_msg("hi")}))["seq"]
        .as_u64()
        .unwrap();
    member.expect_event(is_msg_seq("room:lag", seq), T, "the message from the other node");
    let m = scrape(&n2);
    let delta = |sample: &str| m.get(sample) - before.get(sample);
    assert!(
        delta("chat_bus_lag_seconds_count") >= 1.0,
        "no bus lag observed on the receiving node"
    );
    assert_eq!(delta("chat_messages_out_total{namespace=\"room\"}"), 1.0);
    assert_eq!(
        delta("chat_messages_in_total{namespace=\"room\"}"),
        0.0,
        "published on the other node"
    );
    assert_eq!(delta("chat_gap_fills_total"), 0.0);

    // A message that never came over the bus (written behind the nodes' backs) is a
    // gap the receiving node fills from the database.
    use diesel::{connection::SimpleConnection, Connection};
    let mut pg = diesel::pg::PgConnection::establish(&db.url).unwrap();
    pg.batch_execute(
        "UPDATE channels SET seq = seq + 1 WHERE name = 'room:lag';
         INSERT INTO messages (channel, seq, ts, sender_id, sender_name, data, deleted)
           SELECT 'room:lag', seq, 0, 'ghost', 'ghost', '{\"type\":\"text\",\"text\":\"x\"}', FALSE
           FROM channels WHERE name = 'room:lag';",
    )
    .unwrap();
    let seq = author.ok(json!({"op":"publish","channel":"room:lag","data":text_msg("after")}))["seq"]
        .as_u64()
        .unwrap();
    member.expect_event(is_msg_seq("room:lag", seq), T, "the message after the gap");
    let m = scrape(&n2);
    assert!(m.get("chat_gap_fills_total") - before.get("chat_gap_fills_total") >= 1.0);
}

/// The address the server printed for its metrics listener.
fn metrics_addr(s: &TestServer) -> String {
    let mut addr = None;
    wait_until(T, || {
        addr = s
            .stdout_lines()
            .iter()
            .find_map(|l| l.strip_prefix("metrics on ").map(|a| a.trim().to_string()));
        addr.is_some()
    });
    addr.unwrap_or_else(|| panic!("no `metrics on ADDR` line: {:?}", s.stdout_lines()))
}

#[test]
fn metrics_bind_serves_them_on_their_own_address() {
    let s = TestServer::start(Opts::new().env("CHAT_METRICS_BIND", "127.0.0.1:0"));
    let addr = metrics_addr(&s);
    assert_ne!(addr, format!("127.0.0.1:{}", s.port));
    let m = scrape_url(&format!("http://{addr}/metrics"));
    assert!(m.types.contains_key("chat_connections"));
    assert_eq!(s.http("GET", "/metrics", None, None, &[]).status, 404);
    // Only /metrics is there.
    let other = ureq::get(&format!("http://{addr}/healthz")).call();
    assert!(matches!(other, Err(ureq::Error::Status(404, _))), "{other:?}");
    // The main listener serves everything else as before.
    assert_eq!(s.http("GET", "/healthz", None, None, &[]).status, 200);
}

/// The metric names in the PromQL of `docs/grafana-dashboard.json`.
fn dashboard_names() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana-dashboard.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut names = BTreeSet::new();
    for panel in dash["panels"].as_array().expect("panels") {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}: no query", panel["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(i) = rest.find("chat_") {
                let tail = &rest[i..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                names.insert(tail[..end].to_string());
                rest = &tail[end..];
            }
        }
    }
    names
}

#[test]
fn every_name_in_the_dashboard_is_exported() {
    let names = dashboard_names();
    let s = TestServer::start_default();
    let m = scrape(&s);
    let exported: BTreeSet<&str> = m.samples.keys().map(|k| k.split('{').next().unwrap()).collect();
    for name in &names {
        assert!(
            exported.contains(name.as_str()),
            "the dashboard queries {name}, which /metrics does not have"
        );
    }
    // The dashboard shows what the issue asks for.
    for family in [
        "chat_connections",
        "chat_messages_in_total",
        "chat_messages_out_total",
        "chat_publish_commit_seconds_bucket",
        "chat_commit_delivery_seconds_bucket",
        "chat_write_batch_size_bucket",
        "chat_outbox_overflows_total",
        "chat_rate_limited_total",
        "chat_bus_lag_seconds_bucket",
    ] {
        assert!(names.contains(family), "the dashboard does not show {family}");
    }
}

/// `2026-01-02T03:04:05.678Z`.
fn is_rfc3339_millis(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
        && t.chars().filter(char::is_ascii_digit).count() == 17
}

#[test]
fn json_logs_are_one_object_per_line() {
    let s = TestServer::start(
        Opts::new()
            .env("CHAT_LOG_FORMAT", "json")
            .env("RUST_LOG", "debug")
            .env("CHAT_HEARTBEAT_S", "0.2")
            .env("CHAT_CLIENT_TIMEOUT_S", "0.6"),
    );
    let u = s.user("alice");
    let mut c = s.ws_user(&u);
    c.ok(json!({"op":"join","channel":"room:logs"}));
    assert_eq!(s.http("GET", "/api/rooms", Some(&u.token), None, &[]).status, 200);
    // A silent client times out: the session logs that with its id.
    let closed = wait_until(T, || s.stderr_tail(400).contains("timed out"));
    assert!(closed, "no timeout logged:\n{}", s.stderr_tail(40));

    let lines = s.stderr_tail(400);
    let lines: Vec<&str> = lines.lines().collect();
    assert!(lines.len() > 5, "{lines:?}");
    let mut session_lines = 0;
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let o = v.as_object().unwrap_or_else(|| panic!("not an object: {line}"));
        assert!(is_rfc3339_millis(o["time"].as_str().unwrap_or("")), "time: {line}");
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&o["level"].as_str().unwrap_or("")),
            "level: {line}"
        );
        assert!(o["target"].is_string(), "target: {line}");
        assert!(o["message"].is_string(), "message: {line}");
        if let Some(id) = o.get("session") {
            assert!(id.is_u64(), "session: {line}");
            let msg = o["message"].as_str().unwrap();
            assert!(msg.contains(&format!("session {id}")), "{line}");
            session_lines += 1;
        }
    }
    assert!(
        session_lines >= 1,
        "no line carries a session id:\n{}",
        lines.join("\n")
    );
    // The access log of the HTTP request is among them.
    assert!(lines.iter().any(|l| l.contains("\"target\":\"http\"")), "{lines:?}");
}
