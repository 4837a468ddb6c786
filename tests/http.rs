//! HTTP API: health, publish, batch publish, users, rooms, history/presence.
mod common;

use common::*;
use serde_json::{json, Value};

#[test]
fn health_and_readiness() {
    let s = TestServer::start_default();
    let r = s.http("GET", "/healthz", None, None, &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s.http("GET", "/readyz", None, None, &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s.http("GET", "/metrics", None, None, &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.content_type.starts_with("text/plain"),
        "Prometheus text format: {}",
        r.content_type
    );
    assert!(!r.text.trim().is_empty());
}

#[test]
fn http_publish_reaches_ws_members() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let b = s.user("bob");
    let mut cb = s.ws_user(&b);
    cb.ok(json!({"op":"join","channel":"room:news"}));
    let (st, body) = s.post(
        "/api/publish",
        Some(&a.token),
        json!({"channel":"room:news","data":text_msg("via http"),"client_id":"h-1"}),
    );
    assert_eq!(st, 200, "{body}");
    let seq = body["seq"].as_u64().unwrap_or_else(|| panic!("{body}"));
    assert!(body["ts"].is_number(), "{body}");
    let e = cb.expect_event(is_msg_seq("room:news", seq), T, "HTTP-published message");
    assert_eq!(e["data"], text_msg("via http"));
    assert_eq!(id_string(&e["from"]["id"]).as_deref(), Some(a.id.as_str()), "{e}");
    assert_eq!(e["client_id"], "h-1");

    // resend -> same seq
    let (st, again) = s.post(
        "/api/publish",
        Some(&a.token),
        json!({"channel":"room:news","data":text_msg("via http"),"client_id":"h-1"}),
    );
    assert_eq!(st, 200);
    assert_eq!(again["seq"].as_u64(), Some(seq), "{again}");

    // errors
    let (st, body) = s.post(
        "/api/publish",
        None,
        json!({"channel":"room:news","data":text_msg("x")}),
    );
    assert_eq!(st, 401, "{body}");
    let (st, body) = s.post(
        "/api/publish",
        Some(&a.token),
        json!({"channel":"room:news","data":"not an object"}),
    );
    assert_eq!(st, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_request", "{body}");
    let (st, _) = s.post("/api/publish", Some(&a.token), json!({"channel":"nope:x","data":{}}));
    assert!(st == 400 || st == 404, "unknown namespace: {st}");
    let (st, body) = s.post(
        "/api/publish",
        Some(&a.token),
        json!({"channel":"ticker:ACME","data":{"price":1}}),
    );
    assert_eq!(st, 403, "normal user publishing a ticker: {body}");
    let big = "x".repeat(70_000);
    let (st, body) = s.post(
        "/api/publish",
        Some(&a.token),
        json!({"channel":"room:news","data":text_msg(&big)}),
    );
    assert_eq!(st, 413, "{body}");
    assert_eq!(body["error"]["code"], "too_large");

    // private room the user is not in
    let (st, _) = s.post("/api/rooms", Some(&b.token), json!({"name":"bobonly","private":true}));
    assert!((200..300).contains(&st));
    let (st, _) = s.post(
        "/api/publish",
        Some(&a.token),
        json!({"channel":"room:bobonly","data":text_msg("x")}),
    );
    assert_eq!(st, 403);

    // a publisher-role token (minted by a backend) may publish feeds
    let pubtok = s.mint("svc-1", "feeder", "publisher", 600);
    let (st, body) = s.post(
        "/api/publish",
        Some(&pubtok),
        json!({"channel":"ticker:ACME","data":{"price":12.5}}),
    );
    assert_eq!(st, 200, "{body}");
    assert!(body["seq"].is_number() && body["ts"].is_number(), "{body}");
}

#[test]
fn http_publish_batch_per_item_results() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let mut ca = s.ws_user(&a);
    ca.ok(json!({"op":"join","channel":"room:batch"}));
    let items = json!([
        {"channel":"room:batch","data":text_msg("b1")},
        {"channel":"room:batch","data":"not an object"},
        {"channel":"bogus:ns","data":text_msg("x")},
        {"channel":"room:batch","data":text_msg("b2"),"client_id":"bb-1"},
        {"channel":"room:batch","data":text_msg("b2"),"client_id":"bb-1"},
    ]);
    let (st, body) = s.post("/api/publish/batch", Some(&a.token), items);
    assert_eq!(st, 200, "{body}");
    let res = body
        .as_array()
        .unwrap_or_else(|| panic!("batch reply is an array: {body}"));
    assert_eq!(res.len(), 5, "{body}");
    assert_eq!(res[0]["seq"].as_u64(), Some(1), "{body}");
    assert!(res[0]["ts"].is_number());
    assert_eq!(res[1]["error"]["code"], "bad_request", "{body}");
    assert!(res[1].get("seq").is_none());
    assert!(res[2]["error"]["code"].is_string(), "{body}");
    assert_eq!(res[3]["seq"].as_u64(), Some(2), "{body}");
    assert_eq!(res[4]["seq"].as_u64(), Some(2), "same client_id within a batch: {body}");
    let e1 = ca.expect_event(is_msg_seq("room:batch", 1), T, "b1");
    assert_eq!(e1["data"], text_msg("b1"));
    ca.expect_event(is_msg_seq("room:batch", 2), T, "b2");
    let (st, h) = s.get("/api/channels/room:batch/history", Some(&a.token));
    assert_eq!(st, 200);
    assert_eq!(seqs(&h["messages"]), vec![1, 2], "{h}");

    let (st, _) = s.post("/api/publish/batch", None, json!([]));
    assert_eq!(st, 401);
    let (st, _) = s.post("/api/publish/batch", Some(&a.token), json!({"not":"a list"}));
    assert_eq!(st, 400);
}

#[test]
fn users_search() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let _ = s.user("albert");
    let _ = s.user("bob");
    let (st, body) = s.get("/api/users?q=ali", Some(&a.token));
    assert_eq!(st, 200, "{body}");
    let list: Vec<Value> = body
        .get("users")
        .and_then(|v| v.as_array().cloned())
        .or_else(|| body.as_array().cloned())
        .unwrap_or_else(|| panic!("users list: {body}"));
    assert!(
        list.iter()
            .any(|u| u["name"] == "alice" && id_string(&u["id"]).as_deref() == Some(a.id.as_str())),
        "{body}"
    );
    assert!(!list.iter().any(|u| u["name"] == "bob"), "{body}");
    assert!(
        !body.to_string().contains("password") && !body.to_string().contains("argon2"),
        "no secrets: {body}"
    );
    let (st, _) = s.get("/api/users?q=ali", None);
    assert_eq!(st, 401);
}

fn room_names(v: &Value) -> Vec<String> {
    let list = v
        .get("rooms")
        .and_then(|r| r.as_array().cloned())
        .or_else(|| v.as_array().cloned())
        .unwrap_or_else(|| panic!("rooms list: {v}"));
    list.iter()
        .map(|r| {
            let n = r
                .get("name")
                .or_else(|| r.get("channel"))
                .and_then(|n| n.as_str())
                .unwrap_or_else(|| panic!("room entry: {r}"));
            n.trim_start_matches("room:").to_string()
        })
        .collect()
}

#[test]
fn rooms_list_public_and_own_private() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let b = s.user("bob");
    for (u, name, private) in [
        (&a, "town", false),
        (&a, "alicepriv", true),
        (&b, "bobpriv", true),
        (&b, "square", false),
    ] {
        let (st, body) = s.post("/api/rooms", Some(&u.token), json!({"name":name,"private":private}));
        assert!((200..300).contains(&st), "{name}: {st} {body}");
    }
    // created with members
    let (st, body) = s.post(
        "/api/rooms",
        Some(&b.token),
        json!({"name":"shared","private":true,"members":[a.id]}),
    );
    assert!((200..300).contains(&st), "{st} {body}");

    let (st, ra) = s.get("/api/rooms", Some(&a.token));
    assert_eq!(st, 200, "{ra}");
    let na = room_names(&ra);
    for want in ["town", "square", "alicepriv", "shared"] {
        assert!(na.contains(&want.to_string()), "alice should see {want}: {ra}");
    }
    assert!(
        !na.contains(&"bobpriv".to_string()),
        "alice must not see bob's private room: {ra}"
    );

    let (_, rb) = s.get("/api/rooms", Some(&b.token));
    let nb = room_names(&rb);
    assert!(
        nb.contains(&"bobpriv".to_string()) && nb.contains(&"town".to_string()) && nb.contains(&"shared".to_string()),
        "{rb}"
    );
    assert!(!nb.contains(&"alicepriv".to_string()), "{rb}");

    // alice is a member of "shared" from creation
    let mut ca = s.ws_user(&a);
    ca.ok(json!({"op":"join","channel":"room:shared"}));
}

#[test]
fn http_history_and_presence() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let mut ca = s.ws_user(&a);
    ca.ok(json!({"op":"join","channel":"room:h"}));
    for i in 1..=8 {
        ca.ok(json!({"op":"publish","channel":"room:h","data":text_msg(&format!("m{i}"))}));
    }
    let get = |q: &str| -> Vec<u64> {
        let (st, body) = s.get(&format!("/api/channels/room:h/history{q}"), Some(&a.token));
        assert_eq!(st, 200, "{q}: {body}");
        seqs(&body["messages"])
    };
    assert_eq!(get(""), (1..=8).collect::<Vec<_>>());
    assert_eq!(get("?limit=2"), vec![7, 8]);
    assert_eq!(get("?before=4"), vec![1, 2, 3]);
    assert_eq!(get("?after=5&limit=2"), vec![6, 7]);
    let (st, body) = s.get("/api/channels/room:h/presence", Some(&a.token));
    assert_eq!(st, 200, "{body}");
    let m = body["members"].as_array().unwrap_or_else(|| panic!("{body}"));
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["name"], "alice");
    assert_eq!(m[0]["conns"].as_u64(), Some(1));
    let (st, _) = s.get("/api/channels/room:h/history", None);
    assert_eq!(st, 401);
    let (st, body) = s.get("/api/channels/bogus:x/history", Some(&a.token));
    assert!(st == 400 || st == 404, "{st} {body}");
}

#[test]
fn control_characters_are_refused_at_the_edge() {
    control_characters_are_refused_alone(&TestServer::start_default());
}

#[test]
fn ice_servers_for_calls() {
    let s = TestServer::start_default();
    let a = s.user("alice");
    let (st, v) = s.get("/api/ice", Some(&a.token));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["ice_servers"], json!([]));
    assert_eq!(s.get("/api/ice", None).0, 401);

    let servers = r#"[{"urls":"stun:stun.example.org:3478"},{"urls":["turn:turn.example.org"],"username":"u","credential":"pw"}]"#;
    let s = TestServer::start(Opts::new().env("CHAT_ICE_SERVERS", servers));
    let a = s.user("alice");
    let (st, v) = s.get("/api/ice", Some(&a.token));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["ice_servers"], serde_json::from_str::<Value>(servers).unwrap());
}
