//! Moderation: kick, ban, mute, deleting others' messages, the audit log and the list
//! of connected users; every action refused to those who may not take it.
mod common;

use common::*;
use serde_json::{json, Value};

fn admin(s: &TestServer) -> String {
    s.mint("root", "root", "admin", 3600)
}

fn put(s: &TestServer, path: &str, token: &str, body: Value) -> (u16, Value) {
    let r = s.http("PUT", path, Some(token), Some(&body), &[]);
    (r.status, r.json)
}

fn delete(s: &TestServer, path: &str, token: &str) -> (u16, Value) {
    let r = s.http("DELETE", path, Some(token), None, &[]);
    (r.status, r.json)
}

fn audit(s: &TestServer) -> Vec<Value> {
    let (st, body) = s.get("/api/admin/audit", Some(&admin(s)));
    assert_eq!(st, 200, "{body}");
    body["entries"].as_array().unwrap().clone()
}

#[test]
fn moderation_is_refused_to_other_users() {
    let s = TestServer::start_default();
    let bob = s.user("bob");
    let eve = s.user("eve");
    let (st, body) = s.post("/api/rooms", Some(&bob.token), json!({"name":"bobs"}));
    assert_eq!(st, 201, "{body}");
    let t = &eve.token;
    for (what, (st, body)) in [
        (
            "kick",
            s.post(&format!("/api/admin/users/{}/kick", bob.id), Some(t), json!({})),
        ),
        (
            "ban",
            put(&s, &format!("/api/admin/users/{}/ban", bob.id), t, json!({})),
        ),
        ("unban", delete(&s, &format!("/api/admin/users/{}/ban", bob.id), t)),
        ("bans", s.get("/api/admin/bans", Some(t))),
        ("audit", s.get("/api/admin/audit", Some(t))),
        ("connections", s.get("/api/admin/connections", Some(t))),
        (
            "mute in another's room",
            put(
                &s,
                &format!("/api/rooms/bobs/mutes/{}", bob.id),
                t,
                json!({"duration_s": 60}),
            ),
        ),
    ] {
        assert_eq!(
            (st, body["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{what}: {body}"
        );
    }
    let (st, _) = s.post(&format!("/api/admin/users/{}/kick", bob.id), None, json!({}));
    assert_eq!(st, 401, "without a token");
    assert!(audit(&s).is_empty(), "refused actions are not actions");
}

#[test]
fn a_kicked_user_is_disconnected_everywhere_and_may_come_back() {
    let s = TestServer::start_default();
    let bob = s.user("bob");
    let mut tabs = [s.ws_user(&bob), s.ws_user(&bob)];
    let mut other = s.ws_user(&s.user("carol"));
    let (st, body) = s.post(
        &format!("/api/admin/users/{}/kick", bob.id),
        Some(&admin(&s)),
        json!({"reason":"cool down"}),
    );
    assert_eq!((st, body["closed"].as_u64()), (200, Some(2)), "{body}");
    for t in &mut tabs {
        assert_eq!(t.expect_close(T), Some(4003));
        let ev = t
            .buffered_event(|e| e["ev"] == "disconnect")
            .expect("a disconnect event");
        assert_eq!(ev["code"], 4003, "{ev}");
        assert!(ev["reason"].as_str().unwrap().contains("cool down"), "{ev}");
    }
    other.ping();
    s.ws_user(&bob).ping();
    let log = audit(&s);
    assert_eq!(
        (
            log[0]["action"].as_str(),
            log[0]["actor"].as_str(),
            log[0]["reason"].as_str()
        ),
        (Some("kick"), Some("root"), Some("cool down")),
        "{log:?}"
    );
    assert_eq!(log[0]["target"], bob.id);
}

#[test]
fn a_banned_user_cannot_log_in_or_connect_until_unbanned() {
    let s = TestServer::start_default();
    let bob = s.user("bob");
    let mut c = s.ws_user(&bob);
    let root = admin(&s);
    let (st, body) = put(
        &s,
        &format!("/api/admin/users/{}/ban", bob.id),
        &root,
        json!({"reason":"spam"}),
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(c.expect_close(T), Some(4003));
    let login = || s.post("/api/login", None, json!({"name":"bob","password": PASSWORD}));
    assert_eq!(login().0, 403);
    let auth = format!("Bearer {}", bob.token);
    match WsClient::connect(&s.ws_url(), &[("Authorization", auth.as_str())]) {
        Ok(_) => panic!("a banned user connected"),
        Err(e) => assert_eq!(e.status(), Some(403), "{e:?}"),
    }
    assert_eq!(s.get("/api/me", Some(&bob.token)).0, 403);
    let (_, bans) = s.get("/api/admin/bans", Some(&root));
    assert_eq!(bans["bans"][0]["user_id"], bob.id, "{bans}");
    assert_eq!(bans["bans"][0]["reason"], "spam", "{bans}");
    let (st, body) = put(&s, "/api/admin/users/root/ban", &root, json!({}));
    assert_eq!(st, 400, "an admin banning themselves: {body}");

    let (st, body) = delete(&s, &format!("/api/admin/users/{}/ban", bob.id), &root);
    assert_eq!(st, 200, "{body}");
    assert_eq!(login().0, 200);
    s.ws_user(&bob).ping();
    let (st, _) = delete(&s, &format!("/api/admin/users/{}/ban", bob.id), &root);
    assert_eq!(st, 404, "not banned any more");
    let log = audit(&s);
    let actions: Vec<&str> = log.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["unban", "ban"]);
}

#[test]
fn a_room_owner_mutes_and_deletes_in_their_room_only() {
    let s = TestServer::start_default();
    let owner = s.user("owner");
    let bob = s.user("bob");
    assert_eq!(s.post("/api/rooms", Some(&owner.token), json!({"name":"club"})).0, 201);
    assert_eq!(s.post("/api/rooms", Some(&bob.token), json!({"name":"bobs"})).0, 201);
    let mut b = s.ws_user(&bob);
    b.ok(json!({"op":"join","channel":"room:club"}));
    let seq = b.ok(json!({"op":"publish","channel":"room:club","data":text_msg("hello")}))["seq"].clone();

    let (st, body) = put(
        &s,
        &format!("/api/rooms/club/mutes/{}", bob.id),
        &owner.token,
        json!({"duration_s": 2, "reason":"flood"}),
    );
    assert_eq!(st, 200, "{body}");
    let e = b.err(json!({"op":"publish","channel":"room:club","data":text_msg("muted?")}));
    assert_eq!(e, "forbidden");
    let (st, body) = s.post(
        "/api/publish",
        Some(&bob.token),
        json!({"channel":"room:club","data":text_msg("http")}),
    );
    assert_eq!((st, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    b.ok(json!({"op":"publish","channel":"room:bobs","data":text_msg("elsewhere")}));
    // The owner of another room cannot mute here.
    let (st, _) = put(
        &s,
        &format!("/api/rooms/club/mutes/{}", owner.id),
        &bob.token,
        json!({"duration_s": 60}),
    );
    assert_eq!(st, 403);
    assert!(
        wait_until(secs(5.0), || b
            .request(json!({"op":"publish","channel":"room:club","data":text_msg("back")}))
            .get("ok")
            .is_some()),
        "the mute did not end"
    );
    // Unmuting early.
    put(
        &s,
        &format!("/api/rooms/club/mutes/{}", bob.id),
        &owner.token,
        json!({"duration_s": 600}),
    );
    assert_eq!(
        b.err(json!({"op":"publish","channel":"room:club","data":text_msg("x")})),
        "forbidden"
    );
    assert_eq!(
        delete(&s, &format!("/api/rooms/club/mutes/{}", bob.id), &owner.token).0,
        200
    );
    b.ok(json!({"op":"publish","channel":"room:club","data":text_msg("free")}));

    // The owner deletes bob's message in the club; bob cannot delete the owner's.
    let mut o = s.ws_user(&owner);
    o.ok(json!({"op":"delete","channel":"room:club","seq": seq}));
    let own = o.ok(json!({"op":"publish","channel":"room:club","data":text_msg("mine")}))["seq"].clone();
    assert_eq!(
        b.err(json!({"op":"delete","channel":"room:club","seq": own})),
        "forbidden"
    );
    let log = audit(&s);
    let actions: Vec<&str> = log.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        ["unmute room:club", "mute room:club 600s", "mute room:club 2s"],
        "{log:?}"
    );
}

#[test]
fn admins_see_who_is_connected() {
    let s = TestServer::start_default();
    let bob = s.user("bob");
    let _tabs = [s.ws_user(&bob), s.ws_user(&bob)];
    let _c = s.ws_user(&s.user("carol"));
    let (st, body) = s.get("/api/admin/connections", Some(&admin(&s)));
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["connections"], 3, "{body}");
    assert_eq!(body["users"][0]["id"], bob.id, "most connections first: {body}");
    assert_eq!(body["users"][0]["connections"], 2, "{body}");
    assert_eq!(body["users"][1]["name"], "carol", "{body}");

    // The console's live figures over the WebSocket.
    let mut b = s.ws_user(&bob);
    assert_eq!(b.err(json!({"op":"admin_stats"})), "forbidden");
    b.ok(json!({"op":"join","channel":"room:hall"}));
    b.ok(json!({"op":"publish","channel":"room:hall","data":text_msg("hi")}));
    let mut a = s.ws(&admin(&s));
    let st = a.ok(json!({"op":"admin_stats"}));
    assert_eq!(
        (st["connections"].as_u64(), st["users"].as_u64()),
        (Some(5), Some(3)),
        "{st}"
    );
    assert_eq!(st["busiest"][0]["channel"], "room:hall", "{st}");
    assert_eq!(st["busiest"][0]["seq"], 1, "{st}");
    assert!(st["messages_out"].as_u64().unwrap() >= 1, "{st}");
    let (st, body) = s.get("/api/admin/config", Some(&admin(&s)));
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        body["settings"]["jwt_secret"]
            .as_str()
            .map(|s| s.starts_with("(hidden")),
        Some(true),
        "{body}"
    );
    assert!(!body.to_string().contains(TEST_SECRET));
    assert_eq!(s.get("/api/admin/config", Some(&bob.token)).0, 403);
}

#[test]
fn a_member_removed_from_a_private_room_leaves_it_at_once() {
    let s = TestServer::start_default();
    let owner = s.user("owner");
    let bob = s.user("bob");
    let carol = s.user("carol");
    let (st, body) = s.post(
        "/api/rooms",
        Some(&owner.token),
        json!({"name":"inner","private":true,"members":[bob.id, carol.id]}),
    );
    assert_eq!(st, 201, "{body}");
    let mut b = s.ws_user(&bob);
    b.ok(json!({"op":"join","channel":"room:inner"}));
    b.ok(json!({"op":"publish","channel":"room:inner","data":text_msg("in")}));
    let path = format!("/api/rooms/inner/members/{}", bob.id);
    assert_eq!(
        delete(&s, &path, &carol.token).0,
        403,
        "a member who does not own the room"
    );
    let (st, body) = delete(&s, &format!("/api/rooms/inner/members/{}", owner.id), &owner.token);
    assert_eq!(st, 400, "the owner stays: {body}");
    let (st, body) = delete(&s, &path, &owner.token);
    assert_eq!(st, 200, "{body}");
    b.expect_event(
        |e| e["ev"] == "removed" && e["channel"] == "room:inner",
        T,
        "removed event",
    );
    let e = b.err(json!({"op":"publish","channel":"room:inner","data":text_msg("still here?")}));
    assert!(e == "forbidden" || e == "not_found", "{e}");
    let e = b.err(json!({"op":"join","channel":"room:inner"}));
    assert!(e == "forbidden" || e == "not_found", "{e}");
    // Nothing of the room reaches bob any more.
    let mut o = s.ws_user(&owner);
    o.ok(json!({"op":"publish","channel":"room:inner","data":text_msg("secret")}));
    b.barrier();
    assert!(b
        .buffered_event(|e| e["ev"] == "message" && e["data"]["text"] == "secret")
        .is_none());
    let (st, _) = s.get("/api/channels/room:inner/history", Some(&bob.token));
    assert!(st == 403 || st == 404, "history after removal: {st}");
    let log = audit(&s);
    assert_eq!(log[0]["action"], "remove from room:inner", "{log:?}");
}

#[test]
fn an_archived_room_is_read_only_until_reopened() {
    let s = TestServer::start_default();
    let owner = s.user("owner");
    let bob = s.user("bob");
    assert_eq!(s.post("/api/rooms", Some(&owner.token), json!({"name":"old"})).0, 201);
    let mut b = s.ws_user(&bob);
    b.ok(json!({"op":"join","channel":"room:old"}));
    let seq = b.ok(json!({"op":"publish","channel":"room:old","data":text_msg("kept")}))["seq"].clone();
    assert_eq!(
        put(&s, "/api/rooms/old/archived", &bob.token, json!({})).0,
        403,
        "not the owner"
    );
    assert_eq!(put(&s, "/api/rooms/nosuch/archived", &admin(&s), json!({})).0, 404);
    let (st, body) = put(&s, "/api/rooms/old/archived", &owner.token, json!({}));
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        b.err(json!({"op":"publish","channel":"room:old","data":text_msg("x")})),
        "forbidden"
    );
    assert_eq!(
        b.err(json!({"op":"edit","channel":"room:old","seq": seq,"data":text_msg("y")})),
        "forbidden"
    );
    let (st, h) = s.get("/api/channels/room:old/history", Some(&bob.token));
    assert_eq!((st, seqs(&h["messages"])), (200, vec![1]), "{h}");
    b.ok(json!({"op":"join","channel":"room:old"}));
    assert_eq!(delete(&s, "/api/rooms/old/archived", &owner.token).0, 200);
    b.ok(json!({"op":"publish","channel":"room:old","data":text_msg("again")}));
    let log = audit(&s);
    assert_eq!(log[0]["action"], "reopen room:old", "{log:?}");
    assert_eq!(log[1]["action"], "archive room:old", "{log:?}");
}
