//! Feed namespaces (ticker, sports, loc): publish rights, last value on join, anonymous readers.
mod common;

use common::*;
use serde_json::json;

#[test]
fn ticker_publisher_role_and_last_value() {
    let s = TestServer::start(Opts::new().env("CHAT_ALLOW_ANONYMOUS", "true"));
    let mut p = s.ws(&s.mint("feed-1", "feeder", "publisher", 600));
    let u = s.user("viewer");
    let mut v = s.ws_user(&u);
    let j = v.ok(json!({"op":"join","channel":"ticker:acme"}));
    assert!(
        j.get("presence").is_none_or(|p| p.is_null()),
        "tickers have no presence: {j}"
    );
    assert_eq!(j["messages"], json!([]), "{j}");

    assert_eq!(
        v.err(json!({"op":"publish","channel":"ticker:acme","data":{"price":1.0}})),
        "forbidden"
    );
    v.ping();
    p.ok(json!({"op":"publish","channel":"ticker:acme","data":{"price":10.5}}));
    p.ok(json!({"op":"publish","channel":"ticker:acme","data":{"price":11.25}}));
    let e = v.expect_event(
        |e| e["ev"] == "message" && e["data"]["price"] == 11.25,
        T,
        "latest quote",
    );
    assert_eq!(e["channel"], "ticker:acme");

    // a new subscriber gets the last value only
    let mut v2 = s.ws_user(&u);
    let j = v2.ok(json!({"op":"join","channel":"ticker:acme"}));
    let msgs = j["messages"].as_array().unwrap_or_else(|| panic!("{j}"));
    assert_eq!(msgs.len(), 1, "last value only: {j}");
    assert_eq!(msgs[0]["data"]["price"], 11.25, "{j}");

    // anonymous reader
    let mut anon = WsClient::connect(&s.ws_url(), &[]).expect("anonymous upgrade");
    anon.expect_welcome(secs(8.0));
    let j = anon.ok(json!({"op":"join","channel":"ticker:acme"}));
    assert_eq!(j["messages"][0]["data"]["price"], 11.25, "{j}");
    p.ok(json!({"op":"publish","channel":"ticker:acme","data":{"price":12.0}}));
    anon.expect_event(
        |e| e["ev"] == "message" && e["data"]["price"] == 12.0,
        T,
        "quote at anonymous reader",
    );
}

#[test]
fn sports_events_are_stored_and_replayed() {
    let s = TestServer::start_default();
    let mut p = s.ws(&s.mint("feed-2", "referee", "publisher", 600));
    let u = s.user("fan");
    let mut f = s.ws_user(&u);
    assert_eq!(
        f.err(json!({"op":"publish","channel":"sports:m1","data":{"goal":"x"}})),
        "forbidden"
    );
    let mut seqs_pub = vec![];
    for i in 0..3 {
        let r = p.ok(json!({"op":"publish","channel":"sports:m1","data":{"minute":i,"event":"shot"}}));
        seqs_pub.push(r["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs_pub, vec![1, 2, 3], "sports events get gap-free seqs");
    let j = f.ok(json!({"op":"join","channel":"sports:m1"}));
    let mut got = seqs(&j["messages"]);
    got.dedup();
    assert!(
        got.ends_with(&[1, 2, 3]) || got == vec![1, 2, 3],
        "last value + events: {j}"
    );
    let h = f.ok(json!({"op":"history","channel":"sports:m1"}));
    assert_eq!(seqs(&h["messages"]), vec![1, 2, 3], "{h}");
}

#[test]
fn loc_entity_publishes_only_itself() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let b = s.user("bob");
    // Entities are a space of their own: a user's id is no entity, and user alice may
    // not publish `loc:<her id>` (registered ids are small numbers anyone can guess).
    let mut alice = s.ws_user(&a);
    assert_eq!(
        alice.err(json!({"op":"publish","channel":format!("loc:{}", a.id),"data":{"lat":1.0,"lon":1.0}})),
        "forbidden"
    );
    // Her phone, with a device token for entity `phone-a`, may publish its own.
    let mut ca = s.ws(&s.mint_entity(&a.id, "phone-a"));
    let mut cb = s.ws_user(&b);
    let ch = "loc:phone-a".to_string();
    cb.ok(json!({"op":"join","channel":ch}));
    ca.ok(json!({"op":"publish","channel":ch,"data":{"lat":52.52,"lon":13.405,"heading":90}}));
    let e = cb.expect_event(is_msg(&ch), T, "location update");
    assert_eq!(e["data"]["lat"], 52.52);
    assert_eq!(
        cb.err(json!({"op":"publish","channel":ch,"data":{"lat":1.0,"lon":1.0}})),
        "forbidden"
    );
    for bad in [
        json!({"lat":91.0,"lon":0.0}),
        json!({"lat":0.0,"lon":181.0}),
        json!({"lat":"x","lon":0.0}),
        json!({"lon":0.0}),
    ] {
        assert_eq!(
            ca.err(json!({"op":"publish","channel":ch,"data":bad})),
            "bad_request",
            "{bad}"
        );
        ca.ping();
    }
    // a late joiner gets the last value
    let mut cb2 = s.ws_user(&b);
    let j = cb2.ok(json!({"op":"join","channel":ch}));
    assert_eq!(j["messages"].as_array().map(|m| m.len()), Some(1), "{j}");
    assert_eq!(j["messages"][0]["data"]["lon"], 13.405, "{j}");
    // a publisher-role service may publish any entity
    let mut p = s.ws(&s.mint("fleet", "fleet", "publisher", 600));
    p.ok(json!({"op":"publish","channel":ch,"data":{"lat":48.1,"lon":11.6}}));
}

// =======================================================================================
// Helpers local to this file
// =======================================================================================

use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const EARTH_R: f64 = 6_371_008.8;

/// Haversine distance (the contract's sphere: radius 6,371,008.8 m).
fn haversine(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let p1 = lat1.to_radians();
    let p2 = lat2.to_radians();
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    let a = a.clamp(0.0, 1.0);
    2.0 * EARTH_R * a.sqrt().atan2((1.0 - a).sqrt())
}

/// Small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }
}

fn msgs(j: &Value) -> Vec<Value> {
    j["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("join reply without messages array: {j}"))
        .clone()
}

/// POST /api/publish/batch, expect 200 and an array of the same length.
fn batch(s: &TestServer, token: &str, items: &[Value]) -> Vec<Value> {
    let r = s.http(
        "POST",
        "/api/publish/batch",
        Some(token),
        Some(&Value::Array(items.to_vec())),
        &[],
    );
    assert_eq!(r.status, 200, "batch publish: {}", r.text);
    let arr = r
        .json
        .as_array()
        .unwrap_or_else(|| panic!("batch reply must be an array: {}", r.text))
        .clone();
    assert_eq!(arr.len(), items.len(), "one result per item: {}", r.text);
    arr
}

fn batch_all_ok(s: &TestServer, token: &str, items: &[Value]) {
    for (i, r) in batch(s, token, items).iter().enumerate() {
        assert!(
            r["seq"].is_u64() && r["ts"].is_i64() && r.get("error").is_none(),
            "batch item {i} ({}) must succeed: {r}",
            items[i]
        );
    }
}

fn track(s: &TestServer, token: &str, entity: &str) -> Vec<(f64, f64, i64)> {
    let (st, j) = s.get(&format!("/api/locations/{entity}/track?limit=10000"), Some(token));
    assert_eq!(st, 200, "track {entity}: {j}");
    j["points"]
        .as_array()
        .unwrap_or_else(|| panic!("track reply without points: {j}"))
        .iter()
        .map(|p| {
            (
                p["lat"].as_f64().unwrap_or_else(|| panic!("point lat: {p}")),
                p["lon"].as_f64().unwrap_or_else(|| panic!("point lon: {p}")),
                p["ts"].as_i64().unwrap_or_else(|| panic!("point ts: {p}")),
            )
        })
        .collect()
}

/// Waits until the writer stored everything published before: a sentinel point
/// published now is stored after all of it (the writer keeps the order).
fn writer_caught_up(s: &TestServer, pub_tok: &str, tok: &str) {
    batch_all_ok(
        s,
        pub_tok,
        &[json!({"channel":"loc:sentinel","data":{"lat":1.0,"lon":1.0}})],
    );
    assert!(
        wait_until(secs(10.0), || track(s, tok, "sentinel").len() == 1),
        "writer did not catch up"
    );
}

fn nearby(s: &TestServer, token: &str, lat: f64, lon: f64, radius_m: f64, limit: Option<usize>) -> Vec<Value> {
    let mut q = format!("/api/locations/nearby?lat={lat}&lon={lon}&radius_m={radius_m}");
    if let Some(l) = limit {
        q.push_str(&format!("&limit={l}"));
    }
    let (st, j) = s.get(&q, Some(token));
    assert_eq!(st, 200, "{q}: {j}");
    j["entities"]
        .as_array()
        .unwrap_or_else(|| panic!("{q}: no entities array: {j}"))
        .clone()
}

/// Latitude step (degrees) for `m` metres along a meridian.
fn lat_step(m: f64) -> f64 {
    (m / EARTH_R).to_degrees()
}

// =======================================================================================
// Last value on join, and across a restart
// =======================================================================================

#[test]
fn last_value_on_join_and_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Opts::new().data_dir(dir.path()).env("CHAT_PUBLISH_RATE", "10000");
    let mut s = TestServer::start(opts.clone());
    let pub_tok = s.mint("feeder", "Feeder", "publisher", 3600);
    let user_tok = s.mint("viewer-1", "viewer", "user", 3600);
    let mut p = s.ws(&pub_tok);
    for i in 1..=5 {
        p.ok(json!({"op":"publish","channel":"ticker:ACME","data":{"price": i as f64 + 0.5}}));
    }
    for i in 0..4 {
        p.ok(json!({"op":"publish","channel":"loc:veh-1",
            "data":{"lat": 52.5 + i as f64 * 0.001, "lon": 13.4, "speed": i as f64, "heading": 0.0}}));
    }
    for i in 1..=60 {
        let r = p.ok(json!({"op":"publish","channel":"sports:final","data":{"type":"clock","minute":i,"n":i}}));
        assert_eq!(r["seq"].as_u64(), Some(i), "sports seq: {r}");
    }

    let mut c = s.ws(&user_tok);
    let j = c.ok(json!({"op":"join","channel":"ticker:ACME"}));
    let m = msgs(&j);
    assert_eq!(m.len(), 1, "ticker join: the last value only: {j}");
    assert_eq!(m[0]["data"]["price"], json!(5.5), "ticker join: newest value: {j}");
    assert_eq!(m[0]["channel"], "ticker:ACME", "{j}");

    let j = c.ok(json!({"op":"join","channel":"loc:veh-1"}));
    let m = msgs(&j);
    assert_eq!(m.len(), 1, "loc join: the last value only: {j}");
    assert_eq!(m[0]["data"]["lat"], json!(52.503), "loc join: newest value: {j}");
    assert_eq!(m[0]["data"]["speed"], json!(3.0), "{j}");
    let loc_last = m[0].clone();

    let j = c.ok(json!({"op":"join","channel":"sports:final"}));
    let m = msgs(&j);
    assert_eq!(
        seqs(&j["messages"]),
        (11..=60).collect::<Vec<u64>>(),
        "sports join: last 50 events ascending: {j}"
    );
    let ns: Vec<i64> = m.iter().map(|x| x["data"]["n"].as_i64().unwrap_or(-1)).collect();
    assert_eq!(ns, (11..=60).collect::<Vec<i64>>(), "sports join payloads: {j}");
    assert_eq!(m.last().unwrap()["data"]["n"], 60, "last event = last published");
    let sports_before: Vec<(u64, Value)> = m
        .iter()
        .map(|x| (x["seq"].as_u64().unwrap(), x["data"].clone()))
        .collect();

    let (st, j) = s.get("/api/feeds", None);
    assert_eq!(st, 200, "/api/feeds needs no auth: {j}");
    for ch in ["ticker:ACME", "loc:veh-1", "sports:final"] {
        assert!(
            j["channels"].as_array().is_some_and(|a| a.iter().any(|c| c == ch)),
            "/api/feeds lists {ch}: {j}"
        );
    }

    drop(c);
    drop(p);
    let st = s.stop();
    assert!(st.success() || st.code().is_some(), "server exit: {st:?}");

    // Same data dir, new process.
    let s2 = TestServer::start(opts);
    let mut c = s2.ws(&user_tok);
    let j = c.ok(json!({"op":"join","channel":"loc:veh-1"}));
    let m = msgs(&j);
    assert_eq!(m.len(), 1, "loc last value must survive a restart: {j}");
    assert_eq!(m[0]["data"], loc_last["data"], "loc last value after restart: {j}");
    assert_eq!(m[0]["seq"], loc_last["seq"], "loc last value seq after restart: {j}");

    let j = c.ok(json!({"op":"join","channel":"sports:final"}));
    let after: Vec<(u64, Value)> = msgs(&j)
        .iter()
        .map(|x| (x["seq"].as_u64().unwrap_or(0), x["data"].clone()))
        .collect();
    assert_eq!(after, sports_before, "sports events after restart: {j}");

    // Ticker values are in memory only: either nothing or the same last value.
    let j = c.ok(json!({"op":"join","channel":"ticker:ACME"}));
    let m = msgs(&j);
    assert!(
        m.is_empty() || (m.len() == 1 && m[0]["data"]["price"] == json!(5.5)),
        "ticker after restart: nothing or the last value: {j}"
    );

    // The restored last position is known to the geo index as well.
    let near = nearby(&s2, &user_tok, 52.503, 13.4, 1000.0, None);
    assert!(
        near.iter().any(|e| e["channel"] == "loc:veh-1"),
        "nearby after restart lists the restored loc:veh-1: {near:?}"
    );
}

// =======================================================================================
// Publish rights on every path
// =======================================================================================

#[test]
fn publisher_only_on_every_path() {
    let s = TestServer::start(Opts::new().env("CHAT_PUBLISH_RATE", "10000"));
    let user_tok = s.mint("u-7", "user7", "user", 3600);
    let pub_tok = s.mint("feeder", "feeder", "publisher", 3600);
    let veh_tok = s.mint_entity("veh-7", "veh-7");
    let quote = |p: f64| json!({"price": p});
    let ev = |n: i64| json!({"type":"clock","minute":n});
    let pos = json!({"lat": 52.5, "lon": 13.4});
    let bad_pos = json!({"lat": 66.6, "lon": 66.6});

    // ---- WebSocket
    let mut u = s.ws(&user_tok);
    let mut v = s.ws(&veh_tok);
    let mut p = s.ws(&pub_tok);
    for (ch, data) in [
        ("ticker:ACME", quote(666.0)),
        ("sports:m1", ev(666)),
        ("loc:veh-7", bad_pos.clone()),
        ("loc:veh-8", bad_pos.clone()),
    ] {
        assert_eq!(
            u.err(json!({"op":"publish","channel":ch,"data":data})),
            "forbidden",
            "WS: a plain user publishing to {ch}"
        );
    }
    assert_eq!(
        u.err(json!({"op":"publish","channel":"loc:u-7","data":pos})),
        "forbidden",
        "a user's id is no entity"
    );
    assert_eq!(
        v.err(json!({"op":"publish","channel":"ticker:ACME","data":quote(666.0)})),
        "forbidden"
    );
    assert_eq!(
        v.err(json!({"op":"publish","channel":"sports:m1","data":ev(666)})),
        "forbidden"
    );
    assert_eq!(
        v.err(json!({"op":"publish","channel":"loc:veh-8","data":bad_pos})),
        "forbidden"
    );
    v.ok(json!({"op":"publish","channel":"loc:veh-7","data":{"lat":52.51,"lon":13.41}}));
    p.ok(json!({"op":"publish","channel":"ticker:ACME","data":quote(1.0)}));
    p.ok(json!({"op":"publish","channel":"sports:m1","data":ev(1)}));
    p.ok(json!({"op":"publish","channel":"loc:veh-8","data":{"lat":52.52,"lon":13.42}}));

    // ---- POST /api/publish
    let publish = |tok: Option<&str>, ch: &str, data: &Value| {
        let r = s.http(
            "POST",
            "/api/publish",
            tok,
            Some(&json!({"channel":ch,"data":data})),
            &[],
        );
        (r.status, r.json)
    };
    for (ch, data) in [
        ("ticker:ACME", quote(666.0)),
        ("sports:m1", ev(666)),
        ("loc:veh-7", bad_pos.clone()),
    ] {
        let (st, j) = publish(Some(&user_tok), ch, &data);
        assert_eq!(st, 403, "HTTP: plain user publishing to {ch}: {j}");
        assert_eq!(j["error"]["code"], "forbidden", "{j}");
    }
    let (st, j) = publish(Some(&veh_tok), "loc:veh-8", &bad_pos);
    assert_eq!(
        (st, j["error"]["code"].clone()),
        (403, json!("forbidden")),
        "HTTP: other entity: {j}"
    );
    let (st, j) = publish(Some(&veh_tok), "ticker:ACME", &quote(666.0));
    assert_eq!(
        (st, j["error"]["code"].clone()),
        (403, json!("forbidden")),
        "HTTP: entity to ticker: {j}"
    );
    let (st, j) = publish(Some(&veh_tok), "loc:veh-7", &json!({"lat":52.53,"lon":13.43}));
    assert_eq!(st, 200, "HTTP: entity publishes itself: {j}");
    assert!(j["seq"].is_u64() && j["ts"].is_i64(), "{j}");
    for (ch, data) in [
        ("ticker:ACME", quote(2.0)),
        ("sports:m1", ev(2)),
        ("loc:veh-8", json!({"lat":52.54,"lon":13.44})),
    ] {
        let (st, j) = publish(Some(&pub_tok), ch, &data);
        assert_eq!(st, 200, "HTTP: publisher to {ch}: {j}");
        assert!(j["seq"].is_u64() && j["ts"].is_i64(), "{j}");
    }
    // No credential at all.
    let (st, j) = publish(None, "ticker:ACME", &quote(666.0));
    assert_eq!(st, 401, "HTTP publish without a token: {j}");
    assert_eq!(j["error"]["code"], "unauthorized", "{j}");

    // ---- POST /api/publish/batch (per item)
    let items = vec![
        json!({"channel":"ticker:ACME","data":quote(666.0)}),
        json!({"channel":"sports:m1","data":ev(666)}),
        json!({"channel":"loc:veh-7","data":bad_pos}),
        json!({"channel":"loc:u-7","data":{"lat":52.55,"lon":13.45}}),
    ];
    let res = batch(&s, &user_tok, &items);
    for (i, r) in res.iter().enumerate() {
        assert_eq!(
            r["error"]["code"], "forbidden",
            "batch item {i} by a plain user (its own id is no entity): {res:?}"
        );
        assert!(r.get("seq").is_none(), "{r}");
    }
    let res = batch(
        &s,
        &veh_tok,
        &[
            json!({"channel":"loc:veh-7","data":{"lat":52.56,"lon":13.46}}),
            json!({"channel":"loc:veh-8","data":bad_pos}),
            json!({"channel":"sports:m1","data":ev(666)}),
        ],
    );
    assert!(res[0]["seq"].is_u64(), "{res:?}");
    assert_eq!(res[1]["error"]["code"], "forbidden", "{res:?}");
    assert_eq!(res[2]["error"]["code"], "forbidden", "{res:?}");
    batch_all_ok(
        &s,
        &pub_tok,
        &[
            json!({"channel":"ticker:ACME","data":quote(3.0)}),
            json!({"channel":"sports:m1","data":ev(3)}),
            json!({"channel":"loc:veh-7","data":{"lat":52.57,"lon":13.47}}),
            json!({"channel":"loc:veh-8","data":{"lat":52.58,"lon":13.48}}),
        ],
    );
    let r = s.http(
        "POST",
        "/api/publish/batch",
        None,
        Some(&json!([{"channel":"ticker:ACME","data":quote(666.0)}])),
        &[],
    );
    assert_eq!(r.status, 401, "batch without a token: {}", r.text);

    // Nothing forbidden got through.
    let mut c = s.ws(&user_tok);
    let j = c.ok(json!({"op":"join","channel":"ticker:ACME"}));
    assert_eq!(msgs(&j)[0]["data"]["price"], json!(3.0), "{j}");
    let j = c.ok(json!({"op":"join","channel":"sports:m1"}));
    let minutes: Vec<i64> = msgs(&j).iter().map(|m| m["data"]["minute"].as_i64().unwrap()).collect();
    assert_eq!(
        minutes,
        vec![1, 2, 3],
        "only the publisher's sports events are stored: {j}"
    );
    let j = c.ok(json!({"op":"join","channel":"loc:veh-7"}));
    assert_eq!(msgs(&j)[0]["data"]["lat"], json!(52.57), "{j}");
    let j = c.ok(json!({"op":"join","channel":"loc:veh-8"}));
    assert_eq!(msgs(&j)[0]["data"]["lat"], json!(52.58), "{j}");
    let near = nearby(&s, &user_tok, 66.6, 66.6, 10_000.0, None);
    assert!(near.is_empty(), "forbidden positions must not be indexed: {near:?}");
}

// =======================================================================================
// Anonymous readers
// =======================================================================================

#[test]
fn anonymous_reads_feeds_only_when_allowed() {
    let s = TestServer::start(Opts::new().env("CHAT_ALLOW_ANONYMOUS", "true"));
    let pub_tok = s.mint("feeder", "feeder", "publisher", 3600);
    let mut p = s.ws(&pub_tok);
    p.ok(json!({"op":"publish","channel":"ticker:ACME","data":{"price":1.5}}));
    p.ok(json!({"op":"publish","channel":"sports:m1","data":{"type":"kickoff","minute":0}}));
    p.ok(json!({"op":"publish","channel":"loc:veh-1","data":{"lat":52.5,"lon":13.4}}));

    let mut a = WsClient::connect(&s.ws_url(), &[]).expect("anonymous upgrade must be accepted");
    a.label = "anon".into();
    a.expect_welcome(T);
    let j = a.ok(json!({"op":"join","channel":"ticker:ACME"}));
    assert_eq!(msgs(&j)[0]["data"]["price"], json!(1.5), "{j}");
    let j = a.ok(json!({"op":"join","channel":"sports:m1"}));
    assert_eq!(msgs(&j).len(), 1, "{j}");
    assert_eq!(
        a.err(json!({"op":"join","channel":"loc:veh-1"})),
        "forbidden",
        "anonymous join loc:"
    );
    assert_eq!(
        a.err(json!({"op":"join","channel":"room:lobby"})),
        "forbidden",
        "anonymous join room:"
    );
    let anon_id = a.user_id();
    for (ch, data) in [
        ("ticker:ACME".to_string(), json!({"price":666.0})),
        ("sports:m1".to_string(), json!({"type":"goal"})),
        ("loc:veh-1".to_string(), json!({"lat":1.0,"lon":1.0})),
        (format!("loc:{anon_id}"), json!({"lat":1.0,"lon":1.0})),
        ("room:lobby".to_string(), text_msg("hi")),
    ] {
        assert_eq!(
            a.err(json!({"op":"publish","channel":ch,"data":data})),
            "forbidden",
            "anonymous publish to {ch}"
        );
    }
    // Live updates reach the anonymous reader.
    p.ok(json!({"op":"publish","channel":"ticker:ACME","data":{"price":2.5}}));
    a.expect_event(|e| is_msg("ticker:ACME")(e) && e["data"]["price"] == 2.5, T, "quote");
    // The geo routes need a credential.
    let (st, j) = s.get("/api/locations/nearby?lat=52.5&lon=13.4&radius_m=1000", None);
    assert_eq!(st, 401, "nearby without a credential: {j}");
    let (st, j) = s.get("/api/locations/veh-1/track", None);
    assert_eq!(st, 401, "track without a credential: {j}");
    // Nothing the anonymous client tried was stored.
    let mut c = s.ws(&s.mint("v", "v", "user", 600));
    let j = c.ok(json!({"op":"join","channel":"ticker:ACME"}));
    assert_eq!(msgs(&j)[0]["data"]["price"], json!(2.5), "{j}");
}

#[test]
fn anonymous_refused_when_off() {
    let s = TestServer::start_default(); // CHAT_ALLOW_ANONYMOUS unset, CHAT_DEMO=false
    let mut p = s.ws(&s.mint("feeder", "feeder", "publisher", 3600));
    p.ok(json!({"op":"publish","channel":"ticker:ACME","data":{"price":1.5}}));
    match WsClient::connect(&s.ws_url(), &[]) {
        Err(e) => {
            // refusing the upgrade outright is fine
            let _ = e;
        }
        Ok(mut a) => {
            a.label = "anon-off".into();
            // A session greets a connection that has an identity before it handles any
            // frame of the client, so the answer to this join (a reply, or a disconnect
            // and a close) is the barrier: a welcome, if there is one, comes first.
            let id = a.send_request(json!({"op":"join","channel":"ticker:ACME"}));
            let mut frame = a.read_frame(T);
            match frame {
                Frame::Json(v) if v["ev"] == "welcome" => {
                    // Some identity was granted: it still may not read feeds.
                    let r = a.wait_reply(id, T);
                    assert!(r.get("ok").is_none(), "expected an error for the join, got {r}");
                    let code = r["error"]["code"]
                        .as_str()
                        .unwrap_or_else(|| panic!("error without code: {r}"));
                    assert!(r["error"]["message"].is_string(), "error.message must be a string: {r}");
                    assert!(code == "forbidden" || code == "unauthorized", "{code}");
                }
                _ => loop {
                    // No identity: the join must not be served (error or close 4001).
                    match frame {
                        Frame::Json(v) => {
                            assert!(
                                v.get("ok").is_none(),
                                "anonymous join served while anonymous is off: {v}"
                            );
                            assert!(
                                v.get("error").is_some() || v["ev"] == "disconnect",
                                "unexpected frame without identity: {v}"
                            );
                            if v.get("error").is_some() {
                                let code = v["error"]["code"].as_str().unwrap_or("");
                                assert!(code == "forbidden" || code == "unauthorized", "{v}");
                                break;
                            }
                        }
                        Frame::Closed(c) => {
                            assert!(c.is_none() || c == Some(4001), "close code {c:?}");
                            break;
                        }
                        Frame::Timeout => panic!("no answer to an unauthenticated join"),
                    }
                    frame = a.read_frame(T);
                },
            }
        }
    }
}

// =======================================================================================
// Conflation of a slow ticker subscriber
// =======================================================================================

#[test]
fn slow_ticker_subscriber_is_conflated_not_closed() {
    const SYMS: usize = 20;
    const ROUNDS: usize = 500;
    const ROUNDS_PER_BATCH: usize = 5;
    let s = TestServer::start(Opts::new().env("CHAT_OUTBOX_MAX_FRAMES", "64"));
    let pub_tok = s.mint("feeder", "feeder", "publisher", 3600);
    let sub_tok = s.mint("slow-1", "slow", "user", 3600);
    let auth = format!("Bearer {sub_tok}");
    let mut raw = RawWs::connect(&s.addr, "/ws", &[("Authorization", auth.as_str())], Some(4096)).expect("upgrade");
    raw.read_json_until(|v| v["ev"] == "welcome", T).expect("welcome");
    let chans: Vec<String> = (0..SYMS).map(|i| format!("ticker:SYM{i:02}")).collect();
    for (i, ch) in chans.iter().enumerate() {
        raw.send_json(&json!({"id": i + 1, "op":"join","channel":ch})).unwrap();
    }
    let mut pending: HashSet<u64> = (1..=SYMS as u64).collect();
    while !pending.is_empty() {
        let v = raw
            .read_json_until(|v| v.get("id").is_some(), T)
            .unwrap_or_else(|| panic!("join replies missing: {pending:?}"));
        assert!(v.get("ok").is_some(), "join failed: {v}");
        pending.remove(&v["id"].as_u64().unwrap());
    }
    // From now on the subscriber does not read.
    std::thread::sleep(Duration::from_millis(200));
    let rss0 = s.rss_kb().expect("rss");
    let mut peak = rss0;
    let pad = "q".repeat(2048);
    let mut published = 0usize;
    let started = Instant::now();
    for r0 in (0..ROUNDS).step_by(ROUNDS_PER_BATCH) {
        let mut items = Vec::with_capacity(ROUNDS_PER_BATCH * SYMS);
        for r in r0..r0 + ROUNDS_PER_BATCH {
            for ch in &chans {
                items.push(json!({"channel": ch, "data": {"price": r as f64 + 1.25, "round": r, "pad": pad}}));
            }
        }
        published += items.len();
        batch_all_ok(&s, &pub_tok, &items);
        peak = peak.max(s.rss_kb().unwrap_or(0));
    }
    let pub_time = started.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    peak = peak.max(s.rss_kb().unwrap_or(0));
    let last_price = ROUNDS as f64 - 1.0 + 1.25;

    // Resume reading, up to the reply to a ping sent now: every publish was answered,
    // and a feed's shard queues a value for its subscribers before it answers, so every
    // pending value is queued ahead of that reply.
    raw.send_json(&json!({"id": 998, "op":"ping"})).unwrap();
    let mut last: HashMap<String, f64> = HashMap::new();
    let mut received = 0usize;
    loop {
        match raw.read_frame(T) {
            RawFrame::Frame(1, payload) => {
                let v: Value = serde_json::from_slice(&payload).expect("json frame");
                if v["ev"] == "disconnect" {
                    panic!("slow ticker subscriber was disconnected: {v}");
                }
                if v["id"] == 998 {
                    assert!(v.get("ok").is_some(), "{v}");
                    break;
                }
                if v["ev"] == "message" {
                    received += 1;
                    let ch = v["channel"].as_str().unwrap().to_string();
                    let price = v["data"]["price"].as_f64().expect("price");
                    if let Some(prev) = last.get(&ch) {
                        assert!(price > *prev, "{ch}: values must arrive in order ({prev} then {price})");
                    }
                    last.insert(ch, price);
                }
            }
            RawFrame::Frame(8, payload) => panic!(
                "slow ticker subscriber was closed with {} (conflation should keep it alive)",
                close_code(&payload)
            ),
            RawFrame::Frame(_, _) => {}
            RawFrame::Eof => panic!("slow ticker subscriber: connection ended"),
            RawFrame::Timeout => panic!("slow ticker subscriber: no reply to a ping within {T:?}"),
        }
    }
    for ch in &chans {
        assert_eq!(
            last.get(ch).copied(),
            Some(last_price),
            "{ch}: the last value received must be the last one published"
        );
    }
    eprintln!(
        "conflation: published {published} quotes in {pub_time:?}, received {received}; rss {rss0} kB -> peak {peak} kB"
    );
    assert!(
        received * 4 <= published,
        "expected conflation: received {received} of {published} published quotes"
    );
    // Still usable.
    raw.send_json(&json!({"id": 999, "op":"ping"})).unwrap();
    let v = raw
        .read_json_until(|v| v["id"] == 999, T)
        .expect("ping reply after the backlog");
    assert!(v.get("ok").is_some(), "{v}");
    // ~20 MB of quotes went through; a server that queued them all would grow by that much.
    assert!(
        peak.saturating_sub(rss0) < 16 * 1024,
        "server RSS grew from {rss0} kB to {peak} kB while a subscriber was stalled"
    );
}

// =======================================================================================
// Nearby vs. a brute-force scan
// =======================================================================================

fn check_nearby(
    s: &TestServer,
    token: &str,
    ents: &HashMap<String, (f64, f64)>,
    (lat, lon, radius, limit): (f64, f64, f64, Option<usize>),
) {
    const TOL: f64 = 0.01; // metres
    let what = format!("nearby lat={lat} lon={lon} radius_m={radius} limit={limit:?}");
    let got = nearby(s, token, lat, lon, radius, limit);
    let mut brute: Vec<(f64, &String)> = ents
        .iter()
        .map(|(c, (a, o))| (haversine(lat, lon, *a, *o), c))
        .filter(|(d, _)| *d <= radius + TOL)
        .collect();
    brute.sort_by(|x, y| x.0.partial_cmp(&y.0).unwrap().then(x.1.cmp(y.1)));
    let must: Vec<&String> = brute
        .iter()
        .filter(|(d, _)| *d <= radius - TOL)
        .map(|(_, c)| *c)
        .collect();
    let k = limit.unwrap_or(500);

    let mut prev = -1.0f64;
    let mut seen = HashSet::new();
    for e in &got {
        let ch = e["channel"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: entity without channel: {e}"));
        let (plat, plon) = *ents.get(ch).unwrap_or_else(|| panic!("{what}: unknown channel {ch}"));
        assert!(seen.insert(ch.to_string()), "{what}: {ch} listed twice");
        // (the server's JSON float parsing may differ from ours in the last bit)
        let near = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
        assert!(near(e["lat"].as_f64(), plat), "{what}: lat {plat}: {e}");
        assert!(near(e["lon"].as_f64(), plon), "{what}: lon {plon}: {e}");
        assert!(e["ts"].is_i64(), "{what}: ts: {e}");
        let d = haversine(lat, lon, plat, plon);
        assert!(d <= radius + TOL, "{what}: {ch} at {d} m is outside the radius");
        if let Some(sd) = e["distance_m"].as_f64() {
            assert!((sd - d).abs() <= 0.2, "{what}: {ch} distance_m {sd} vs {d}");
        }
        assert!(d + 1e-3 >= prev, "{what}: not nearest first ({ch} at {d} after {prev})");
        prev = d;
    }
    eprintln!("{what}: {} results, brute force {} within", got.len(), must.len());
    if must.len() <= k {
        for c in &must {
            assert!(
                seen.contains(*c),
                "{what}: missing {c} (brute force: {} within)",
                must.len()
            );
        }
        assert!(
            got.len() <= k.min(brute.len()),
            "{what}: {} results, brute force {}",
            got.len(),
            brute.len()
        );
    } else {
        assert_eq!(got.len(), k, "{what}: limit not filled");
        for (d, c) in &brute {
            if *d < prev - 1e-3 {
                assert!(
                    seen.contains(*c),
                    "{what}: {c} at {d} m missing though nearer than the last result {prev}"
                );
            }
        }
    }
}

#[test]
fn nearby_matches_brute_force() {
    let s = TestServer::start_default();
    let pub_tok = s.mint("fleet", "fleet", "publisher", 3600);
    let tok = s.mint("viewer", "viewer", "user", 3600);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ents: HashMap<String, (f64, f64)> = HashMap::new();
    let add = |ents: &mut HashMap<String, (f64, f64)>, name: String, lat: f64, lon: f64| {
        ents.insert(format!("loc:{name}"), (lat, lon));
    };
    for i in 0..130 {
        let lat = (2.0 * rng.f64() - 1.0).asin().to_degrees();
        let lon = rng.range(-180.0, 180.0);
        add(&mut ents, format!("g-{i:03}"), lat, lon);
    }
    for i in 0..40 {
        add(
            &mut ents,
            format!("np-{i:03}"),
            rng.range(84.0, 90.0),
            rng.range(-180.0, 180.0),
        );
        add(
            &mut ents,
            format!("sp-{i:03}"),
            rng.range(-90.0, -84.0),
            rng.range(-180.0, 180.0),
        );
    }
    for i in 0..40 {
        let lon = if i % 2 == 0 {
            rng.range(179.0, 180.0)
        } else {
            rng.range(-180.0, -179.0)
        };
        add(&mut ents, format!("am-{i:03}"), rng.range(-10.0, 10.0), lon);
    }
    for i in 0..40 {
        add(
            &mut ents,
            format!("eu-{i:03}"),
            rng.range(47.0, 55.0),
            rng.range(5.0, 20.0),
        );
    }
    for (n, lat, lon) in [
        ("x-np1", 90.0, 0.0),
        ("x-np2", 90.0, 120.0),
        ("x-np3", 89.999, -179.99),
        ("x-sp1", -90.0, 0.0),
        ("x-sp2", -90.0, -45.0),
        ("x-sp3", -89.9995, 179.99),
        ("x-e180", 0.0, 180.0),
        ("x-w180", 0.0, -180.0),
        ("x-e17999", 0.0, 179.99),
        ("x-w17999", 0.0, -179.99),
        ("x-n17999", 5.0, 179.99),
        ("x-s17999", -5.0, -179.99),
        ("x-antipode", 0.0, 0.0),
    ] {
        add(&mut ents, n.to_string(), lat, lon);
    }
    assert!(ents.len() >= 300, "{}", ents.len());
    let items: Vec<Value> = ents
        .iter()
        .map(|(c, (lat, lon))| json!({"channel": c, "data": {"lat": lat, "lon": lon}}))
        .collect();
    batch_all_ok(&s, &pub_tok, &items);

    for q in [
        (90.0, 0.0, 300_000.0, None),
        (90.0, 77.0, 5.0, None),
        (89.95, -170.0, 500_000.0, None),
        (-90.0, 123.0, 1_000_000.0, None),
        (-89.99, 10.0, 2_000.0, None),
        (0.0, 180.0, 1_500_000.0, None),
        (0.0, -180.0, 1_500_000.0, None),
        (0.0, 180.0, 1_200.0, None),
        (5.0, 179.995, 100_000.0, None),
        (-5.0, -179.99, 800_000.0, None),
        (3.0, -179.9999, 400_000.0, Some(7)),
        (51.0, 12.0, 300_000.0, None),
        (40.0, 10.0, 20_000_000.0, None),
        (0.0, 0.0, 20_000_000.0, Some(25)),
        (0.0, 0.0, 20_000_000.0, None),
        (-5.0, 0.01, 20_000_000.0, None),
        (90.0, 0.0, 20_000_000.0, None),
        (-89.9, 45.0, 20_030_000.0, None),
        (-30.0, 100.0, 20_000_000.0, None),
        (12.0, 34.0, 3_000_000.0, Some(5)),
        (0.0, 0.0, 0.0, None),
    ] {
        check_nearby(&s, &tok, &ents, q);
    }
    // Out-of-range queries are rejected.
    for q in [
        "lat=91&lon=0&radius_m=10",
        "lat=0&lon=-181&radius_m=10",
        "lat=0&lon=0&radius_m=-1",
        "lat=x&lon=0&radius_m=10",
        "lat=0&radius_m=10",
    ] {
        let (st, j) = s.get(&format!("/api/locations/nearby?{q}"), Some(&tok));
        assert_eq!(st, 400, "{q}: {j}");
        assert_eq!(j["error"]["code"], "bad_request", "{q}: {j}");
    }
}

// =======================================================================================
// Bad coordinates
// =======================================================================================

#[test]
fn bad_coordinates_rejected_and_not_stored() {
    let s = TestServer::start(
        Opts::new()
            .env("CHAT_TRACK_MIN_INTERVAL_S", "0")
            .env("CHAT_TRACK_MIN_DISTANCE_M", "0")
            .env("CHAT_PUBLISH_RATE", "10000"),
    );
    let pub_tok = s.mint("fleet", "fleet", "publisher", 3600);
    let tok = s.mint("viewer", "viewer", "user", 3600);
    let mut p = s.ws(&pub_tok);
    p.ok(json!({"op":"publish","channel":"loc:good-1","data":{"lat":48.0,"lon":11.0,"heading":10.0,"speed":3.0}}));
    let bad = vec![
        json!({"lat": 91.0, "lon": 0.0}),
        json!({"lat": -90.0001, "lon": 0.0}),
        json!({"lat": 0.0, "lon": -181.0}),
        json!({"lat": 0.0, "lon": 180.5}),
        json!({"lat": "45", "lon": 10.0}),
        json!({"lat": 45.0}),
        json!({"lon": 10.0}),
        json!({"lat": "NaN", "lon": 0.0}),
        json!({"lat": 0.0, "lon": "Infinity"}),
        json!({"lat": "-inf", "lon": "nan"}),
        json!({"lat": null, "lon": 0.0}),
        json!({"lat": [1.0], "lon": 2.0}),
        json!({"lat": true, "lon": 2.0}),
        json!({"lat": 10.0, "lon": 10.0, "heading": 400.0}),
        json!({"lat": 10.0, "lon": 10.0, "heading": -1.0}),
        json!({"lat": 10.0, "lon": 10.0, "heading": "north"}),
        json!({"lat": 10.0, "lon": 10.0, "speed": -1.0}),
        json!({"lat": 10.0, "lon": 10.0, "speed": "fast"}),
        json!({"lat": 10.0, "lon": 10.0, "accuracy": -5.0}),
    ];
    for ch in ["loc:good-1", "loc:bad-1"] {
        for d in &bad {
            assert_eq!(
                p.err(json!({"op":"publish","channel":ch,"data":d})),
                "bad_request",
                "WS publish {ch} {d}"
            );
        }
        p.ping();
        for d in &bad {
            let r = s.http(
                "POST",
                "/api/publish",
                Some(&pub_tok),
                Some(&json!({"channel":ch,"data":d})),
                &[],
            );
            assert_eq!(r.status, 400, "HTTP publish {ch} {d}: {}", r.text);
            assert_eq!(r.json["error"]["code"], "bad_request", "{}", r.text);
        }
        let items: Vec<Value> = bad.iter().map(|d| json!({"channel":ch,"data":d})).collect();
        for (i, r) in batch(&s, &pub_tok, &items).iter().enumerate() {
            assert_eq!(r["error"]["code"], "bad_request", "batch item {}: {r}", bad[i]);
        }
    }
    // Literal NaN / out-of-range numbers are not JSON: the frame is a bad_request,
    // the connection stays open.
    for (i, raw) in [
        r#"{"id":9001,"op":"publish","channel":"loc:bad-1","data":{"lat":NaN,"lon":0}}"#,
        r#"{"id":9002,"op":"publish","channel":"loc:bad-1","data":{"lat":1e999,"lon":0}}"#,
        r#"{"id":9003,"op":"publish","channel":"loc:bad-1","data":{"lat":-Infinity,"lon":0}}"#,
    ]
    .iter()
    .enumerate()
    {
        let id = 9001 + i as i64;
        p.send_text(raw).unwrap();
        let f = p
            .next_frame(|v| v.get("error").is_some() && (v["id"] == id || v["id"].is_null()), T)
            .unwrap_or_else(|| panic!("no error reply to {raw}"));
        assert_eq!(f["error"]["code"], "bad_request", "{raw}: {f}");
        p.ping();
    }
    for raw in [
        r#"{"channel":"loc:bad-1","data":{"lat":NaN,"lon":0}}"#,
        r#"{"channel":"loc:bad-1","data":{"lat":1e999,"lon":0}}"#,
    ] {
        let r = ureq::post(&format!("{}/api/publish", s.base()))
            .set("Authorization", &format!("Bearer {pub_tok}"))
            .set("Content-Type", "application/json")
            .send_string(raw);
        let (st, body) = match r {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap_or_default()),
            Err(e) => panic!("{raw}: {e}"),
        };
        assert_eq!(st, 400, "HTTP {raw}: {body}");
        let j: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert_eq!(j["error"]["code"], "bad_request", "HTTP {raw}: {body}");
    }
    // The entity's own token takes the same checks.
    let mut own = s.ws(&s.mint_entity("bad-1", "bad-1"));
    assert_eq!(
        own.err(json!({"op":"publish","channel":"loc:bad-1","data":{"lat":95.0,"lon":0.0}})),
        "bad_request"
    );
    // A valid point after all that, to know the writer has caught up: it stores points
    // in the order the shards handed them over, and every publish above was answered
    // (after its hand-over) before this one was sent, so once the sentinel is stored,
    // any point of theirs is too.
    p.ok(json!({"op":"publish","channel":"loc:sentinel","data":{"lat":1.0,"lon":1.0}}));
    assert!(
        wait_until(secs(10.0), || track(&s, &tok, "sentinel").len() == 1),
        "sentinel track point never appeared"
    );
    let t = track(&s, &tok, "good-1");
    assert_eq!(t.len(), 1, "only the valid point is in the track: {t:?}");
    assert_eq!((t[0].0, t[0].1), (48.0, 11.0), "{t:?}");
    assert!(track(&s, &tok, "bad-1").is_empty(), "no track point for rejected data");

    let near = nearby(&s, &tok, 48.0, 11.0, 20_000_000.0, None);
    let chans: Vec<&str> = near.iter().map(|e| e["channel"].as_str().unwrap_or("")).collect();
    assert!(chans.contains(&"loc:good-1"), "{near:?}");
    assert!(!chans.contains(&"loc:bad-1"), "rejected entity listed: {near:?}");
    let g = near.iter().find(|e| e["channel"] == "loc:good-1").unwrap();
    assert_eq!((g["lat"].as_f64(), g["lon"].as_f64()), (Some(48.0), Some(11.0)), "{g}");
    for (lat, lon) in [(10.0, 10.0), (0.0, 0.0), (45.0, 10.0), (90.0, 0.0)] {
        let n = nearby(&s, &tok, lat, lon, 1000.0, None);
        assert!(n.is_empty(), "nothing near ({lat},{lon}): {n:?}");
    }

    let mut c = s.ws(&tok);
    let j = c.ok(json!({"op":"join","channel":"loc:good-1"}));
    let m = msgs(&j);
    assert_eq!(m.len(), 1, "{j}");
    assert_eq!(
        m[0]["data"],
        json!({"lat":48.0,"lon":11.0,"heading":10.0,"speed":3.0}),
        "{j}"
    );
    let j = c.ok(json!({"op":"join","channel":"loc:bad-1"}));
    assert!(msgs(&j).is_empty(), "no last value for rejected data: {j}");
}

// =======================================================================================
// Track sampling
// =======================================================================================

fn line_points(n: usize, step_m: f64) -> Vec<(f64, f64)> {
    (0..n).map(|i| (40.0 + i as f64 * lat_step(step_m), -3.7)).collect()
}

#[test]
fn track_sampled_by_distance() {
    let s = TestServer::start(
        Opts::new()
            .env("CHAT_TRACK_MIN_INTERVAL_S", "3600")
            .env("CHAT_TRACK_MIN_DISTANCE_M", "100"),
    );
    let pub_tok = s.mint("fleet", "fleet", "publisher", 3600);
    let tok = s.mint("viewer", "viewer", "user", 3600);
    let pts = line_points(100, 10.0);
    let items: Vec<Value> = pts
        .iter()
        .map(|(lat, lon)| json!({"channel":"loc:walker","data":{"lat":lat,"lon":lon}}))
        .collect();
    batch_all_ok(&s, &pub_tok, &items);
    writer_caught_up(&s, &pub_tok, &tok);
    let t = track(&s, &tok, "walker");
    // 990 m walked: a point about every 100 m -> about 10 points.
    assert!(
        (9..=11).contains(&t.len()),
        "expected about 10 stored points, got {}: {t:?}",
        t.len()
    );
    let close = |p: &(f64, f64, i64), q: &(f64, f64)| (p.0 - q.0).abs() < 1e-9 && (p.1 - q.1).abs() < 1e-9;
    assert!(close(&t[0], &pts[0]), "the first point is always stored: {t:?}");
    for w in t.windows(2) {
        let d = haversine(w[0].0, w[0].1, w[1].0, w[1].1);
        assert!(d >= 100.0 - 1e-6, "stored points {d} m apart (< 100 m): {w:?}");
        assert!(
            d <= 110.0 + 1e-6,
            "stored points {d} m apart (a point was skipped): {w:?}"
        );
        assert!(w[0].2 <= w[1].2, "track ascending by ts: {w:?}");
    }
    for p in &t {
        assert!(pts.iter().any(|q| close(p, q)), "stored point was not published: {p:?}");
    }
    // The last value is still the newest point, sampled or not.
    let mut c = s.ws(&tok);
    let j = c.ok(json!({"op":"join","channel":"loc:walker"}));
    assert_eq!(msgs(&j)[0]["data"]["lat"].as_f64(), Some(pts[99].0), "{j}");
}

#[test]
fn track_keeps_every_point_when_sampling_off() {
    let s = TestServer::start(
        Opts::new()
            .env("CHAT_TRACK_MIN_INTERVAL_S", "0")
            .env("CHAT_TRACK_MIN_DISTANCE_M", "0"),
    );
    let pub_tok = s.mint("fleet", "fleet", "publisher", 3600);
    let tok = s.mint("viewer", "viewer", "user", 3600);
    let pts = line_points(100, 10.0);
    let items: Vec<Value> = pts
        .iter()
        .map(|(lat, lon)| json!({"channel":"loc:walker","data":{"lat":lat,"lon":lon}}))
        .collect();
    batch_all_ok(&s, &pub_tok, &items);
    assert!(
        wait_until(secs(10.0), || track(&s, &tok, "walker").len() >= 100),
        "every point must be stored: {}",
        track(&s, &tok, "walker").len()
    );
    // Exactly once: a sentinel published after the batch was answered is stored after
    // every point of the batch (the writer keeps the order), so once it is there, so is
    // any extra copy.
    writer_caught_up(&s, &pub_tok, &tok);
    let t = track(&s, &tok, "walker");
    assert_eq!(t.len(), 100, "every point stored exactly once");
    for (i, (p, q)) in t.iter().zip(&pts).enumerate() {
        assert!(
            (p.0 - q.0).abs() < 1e-9 && (p.1 - q.1).abs() < 1e-9,
            "track point {i} is {p:?}, published {q:?} (ascending, in publish order)"
        );
    }
    for w in t.windows(2) {
        assert!(w[0].2 <= w[1].2, "track ascending by ts: {w:?}");
    }
    // since/until/limit narrow the result
    let ts_mid = t[50].2;
    let (st, j) = s.get(
        &format!("/api/locations/walker/track?since={ts_mid}&limit=5"),
        Some(&tok),
    );
    assert_eq!(st, 200, "{j}");
    let pts2 = j["points"].as_array().unwrap();
    assert!(pts2.len() <= 5 && !pts2.is_empty(), "{j}");
    assert!(pts2.iter().all(|p| p["ts"].as_i64().unwrap() >= ts_mid), "{j}");
}

// =======================================================================================
// Demo feeds
// =======================================================================================

#[test]
fn demo_feeds_run_and_anonymous_can_watch() {
    let s = TestServer::start(Opts::new().env("CHAT_DEMO", "true").env("CHAT_ALLOW_ANONYMOUS", "true"));
    let mut chans: Vec<String> = vec![];
    let has = |c: &[String], p: &str| c.iter().any(|x| x.starts_with(p));
    let ok = wait_until(secs(6.0), || {
        let (st, j) = s.get("/api/feeds", None);
        assert_eq!(st, 200, "/api/feeds: {j}");
        chans = j["channels"]
            .as_array()
            .unwrap_or_else(|| panic!("/api/feeds: {j}"))
            .iter()
            .map(|c| {
                c.as_str()
                    .unwrap_or_else(|| panic!("channel names are strings: {j}"))
                    .to_string()
            })
            .collect();
        has(&chans, "ticker:") && has(&chans, "sports:") && has(&chans, "loc:")
    });
    assert!(
        ok,
        "/api/feeds must list ticker:, sports: and loc: channels within 6 s: {chans:?}"
    );
    let ticker = chans.iter().find(|c| c.starts_with("ticker:")).unwrap().clone();
    let mut a = WsClient::connect(&s.ws_url(), &[]).expect("anonymous upgrade");
    a.label = "anon".into();
    a.expect_welcome(T);
    let j = a.ok(json!({"op":"join","channel":ticker}));
    for m in msgs(&j) {
        assert!(m["data"]["price"].as_f64().is_some_and(|p| p > 0.0), "{j}");
    }
    for _ in 0..2 {
        let e = a.expect_event(is_msg(&ticker), secs(15.0), "live demo quote");
        let price = e["data"]["price"].as_f64();
        assert!(price.is_some_and(|p| p > 0.0), "quote with numeric price: {e}");
    }
}
