//! Access on every operation: what a caller may not see is `not_found`, the same as
//! what does not exist, so nobody can probe for private rooms, other people's DMs or
//! their messages; and reading never creates anything.

mod common;

use common::*;
use serde_json::json;

#[test]
fn operations_on_what_the_caller_cannot_see_are_not_found() {
    let s = TestServer::start_default();
    let (a, b, c) = (s.user("alice"), s.user("bob"), s.user("carol"));
    let (st, body) = s.post("/api/rooms", Some(&a.token), json!({"name":"inner","private":true}));
    assert_eq!(st, 201, "{body}");
    let mut ca = s.ws_user(&a);
    let dm = dm_channel(&a.id, &b.id);
    let mut seq = std::collections::HashMap::new();
    for ch in ["room:inner", dm.as_str()] {
        ca.ok(json!({"op":"join","channel":ch}));
        let p = ca.ok(json!({"op":"publish","channel":ch,"data":text_msg("hidden")}));
        seq.insert(ch.to_string(), p["seq"].as_u64().unwrap());
    }
    let mut cc = s.ws_user(&c);
    for ch in ["room:inner", dm.as_str()] {
        let real = seq[ch];
        // A message that exists and one that does not answer the same.
        for n in [real, real + 100] {
            assert_eq!(
                cc.err(json!({"op":"edit","channel":ch,"seq":n,"data":text_msg("x")})),
                "not_found",
                "edit {ch} {n}"
            );
            assert_eq!(
                cc.err(json!({"op":"delete","channel":ch,"seq":n})),
                "not_found",
                "delete {ch} {n}"
            );
        }
        assert_eq!(
            cc.err(json!({"op":"read","channel":ch,"seq":real})),
            "not_found",
            "read {ch}"
        );
        assert_eq!(cc.err(json!({"op":"typing","channel":ch})), "not_found", "typing {ch}");
    }
    // A private room that does not exist looks the same as one carol is not in.
    assert_eq!(
        cc.err(json!({"op":"delete","channel":"room:nowhere","seq":1})),
        "not_found"
    );
    // Nothing was changed or stored for carol.
    let h = ca.ok(json!({"op":"history","channel":"room:inner"}));
    assert_eq!(h["messages"][0]["data"], text_msg("hidden"));
    let l = cc.ok(json!({"op":"channels"}));
    assert_eq!(
        l["channels"],
        json!([]),
        "carol stored read markers or memberships: {l}"
    );
    // Signals to a stranger and to nobody answer the same.
    assert_eq!(
        cc.err(json!({"op":"signal","to":a.id,"call":"c","data":{"kind":"ring"}})),
        "not_found"
    );
    assert_eq!(
        cc.err(json!({"op":"signal","to":"99999","call":"c","data":{"kind":"ring"}})),
        "not_found"
    );
    // Members still may: alice edits and reads in both.
    for ch in ["room:inner", dm.as_str()] {
        ca.ok(json!({"op":"edit","channel":ch,"seq":seq[ch],"data":text_msg("edited")}));
        ca.ok(json!({"op":"read","channel":ch,"seq":seq[ch]}));
    }
}

#[test]
fn reading_a_room_that_does_not_exist_creates_nothing() {
    let s = TestServer::start_default();
    let (a, b) = (s.user("alice"), s.user("bob"));
    let (st, body) = s.get("/api/channels/room:ghost/history", Some(&a.token));
    assert_eq!((st, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");
    let (st, _) = s.get("/api/channels/room:ghost/presence", Some(&a.token));
    assert_eq!(st, 404);
    let mut ca = s.ws_user(&a);
    assert_eq!(ca.err(json!({"op":"history","channel":"room:ghost"})), "not_found");
    assert_eq!(ca.err(json!({"op":"read","channel":"room:ghost","seq":1})), "not_found");
    let (st, rooms) = s.get("/api/rooms", Some(&b.token));
    assert_eq!(st, 200);
    assert!(
        !rooms["rooms"].as_array().unwrap().iter().any(|r| r["name"] == "ghost"),
        "a read created the room: {rooms}"
    );
}
