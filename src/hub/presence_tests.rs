//! Tests of the presence state machine: joins, leaves, node diffs, node expiry,
//! coalescing, and the ordered member list read in pages.

use super::*;

/// The diff of the next flush (a small channel), if any.
fn take_event(p: &mut Presence) -> Option<(Vec<UserRef>, Vec<UserRef>)> {
    match p.flush(Instant::now()) {
        Flush::Diff { joined, left, .. } => Some((joined, left)),
        Flush::Nothing => None,
        other => panic!("{other:?}"),
    }
}

fn u(id: &str) -> UserRef {
    UserRef::new(id, format!("n-{id}"))
}

fn ids(v: &[UserRef]) -> Vec<&str> {
    v.iter().map(|u| &*u.id).collect()
}

fn member(id: &str, conns: u32) -> PresenceMember {
    PresenceMember {
        id: id.into(),
        name: format!("n-{id}").into(),
        conns,
    }
}

#[test]
fn joins_and_leaves_count_connections() {
    let mut p = Presence::default();
    assert!(p.join(&u("a")));
    assert!(!p.join(&u("a")), "a second connection changes nothing");
    assert!(p.join(&u("b")));
    let list = p.page(None, 1000).members;
    assert_eq!(
        list.iter().map(|m| (&*m.id, m.conns)).collect::<Vec<_>>(),
        [("a", 2), ("b", 1)]
    );
    let (joined, left) = take_event(&mut p).unwrap();
    assert_eq!((ids(&joined), ids(&left)), (vec!["a", "b"], vec![]));
    assert_eq!(ids(&p.take_announcement().unwrap().0), ["a", "b"]);
    assert!(!p.leave(&u("a")), "one of two connections left");
    assert!(take_event(&mut p).is_none());
    assert!(p.leave(&u("a")));
    assert!(!p.leave(&u("a")), "leaving twice is harmless");
    let (joined, left) = take_event(&mut p).unwrap();
    assert_eq!((ids(&joined), ids(&left)), (vec![], vec!["a"]));
    assert!(p.leave(&u("b")));
    take_event(&mut p);
    p.take_announcement();
    assert!(p.is_idle());
}

#[test]
fn changes_coalesce_between_flushes() {
    let mut p = Presence::default();
    p.join(&u("a"));
    p.leave(&u("a"));
    assert!(take_event(&mut p).is_none(), "join then leave is no change");
    assert!(p.take_announcement().is_none());
    p.join(&u("b"));
    take_event(&mut p);
    p.leave(&u("b"));
    p.join(&u("b"));
    assert!(take_event(&mut p).is_none(), "leave then join is no change");
}

#[test]
fn node_diffs_merge_with_local_presence() {
    let n1: Arc<str> = "n1".into();
    let t = Instant::now();
    let mut p = Presence::default();
    p.join(&u("a"));
    take_event(&mut p);
    p.take_announcement();
    // `a` also on n1, `c` only there.
    assert!(p.remote_diff(&n1, vec![u("a"), u("c")], vec![], t));
    let (joined, _) = take_event(&mut p).unwrap();
    assert_eq!(ids(&joined), ["c"], "a was present already");
    assert_eq!(
        p.page(None, 1000)
            .members
            .iter()
            .map(|m| (&*m.id, m.conns))
            .collect::<Vec<_>>(),
        [("a", 2), ("c", 1)]
    );
    // `a` leaves here but stays on n1: nobody left cluster-wide.
    assert!(p.leave(&u("a")));
    assert!(take_event(&mut p).is_none());
    assert_eq!(ids(&p.take_announcement().unwrap().1), ["a"]);
    // n1 lets go of both.
    assert!(p.remote_diff(&n1, vec![], vec![u("a"), u("c")], t));
    let (_, left) = take_event(&mut p).unwrap();
    assert_eq!(ids(&left), ["a", "c"]);
    assert!(p.page(None, 1000).members.is_empty());
    assert!(!p.remote_diff(&n1, vec![], vec![u("zz")], t), "unknown leaver");
}

#[test]
fn node_state_replaces_its_list() {
    let n1: Arc<str> = "n1".into();
    let t = Instant::now();
    let mut p = Presence::default();
    assert!(p.remote_state(&n1, vec![member("a", 3), member("b", 1)], t));
    take_event(&mut p);
    assert_eq!(p.page(None, 1000).members[0].conns, 3);
    // The next state drops b and adds c.
    assert!(p.remote_state(&n1, vec![member("a", 1), member("c", 1)], t));
    let (joined, left) = take_event(&mut p).unwrap();
    assert_eq!((ids(&joined), ids(&left)), (vec!["c"], vec!["b"]));
    assert!(
        !p.remote_state(&n1, vec![member("a", 1), member("c", 1)], t),
        "same state"
    );
    assert!(!p.has_local());
    assert!(p.is_idle(), "remote-only presence does not keep a channel");
}

#[test]
fn silent_nodes_expire() {
    let (n1, n2): (Arc<str>, Arc<str>) = ("n1".into(), "n2".into());
    let t0 = Instant::now();
    let ttl = Duration::from_secs(30);
    let mut p = Presence::default();
    p.remote_state(&n1, vec![member("a", 1)], t0);
    p.remote_state(&n2, vec![member("a", 1), member("b", 1)], t0);
    take_event(&mut p);
    // n2 keeps talking, n1 does not.
    p.remote_diff(&n2, vec![], vec![], t0 + Duration::from_secs(20));
    assert!(
        !p.expire(t0 + Duration::from_secs(25), ttl),
        "nobody silent for 30 s yet"
    );
    assert!(
        !p.expire(t0 + Duration::from_secs(31), ttl),
        "n1 expired, but a is still on n2"
    );
    assert_eq!(p.page(None, 1000).members.len(), 2);
    assert!(p.expire(t0 + Duration::from_secs(51), ttl));
    let (_, left) = take_event(&mut p).unwrap();
    assert_eq!(ids(&left), ["a", "b"]);
    assert!(p.page(None, 1000).members.is_empty());
}

#[test]
fn pages_walk_the_ordered_list_once() {
    let mut p = Presence::default();
    // Names out of order, two users with the same name (ordered by id then).
    for (id, name) in [
        ("3", "carol"),
        ("1", "alice"),
        ("2", "bob"),
        ("5", "bob"),
        ("4", "dave"),
    ] {
        p.join(&UserRef::new(id, name));
    }
    let first = p.page(None, 2);
    assert_eq!(first.count, 5);
    let names = |pg: &Page| {
        pg.members
            .iter()
            .map(|m| format!("{}/{}", m.name, m.id))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&first), ["alice/1", "bob/2"]);
    // A user who joins before the cursor does not shift the next page.
    p.join(&UserRef::new("0", "aaron"));
    let second = p.page(first.next.as_ref(), 2);
    assert_eq!(names(&second), ["bob/5", "carol/3"]);
    let third = p.page(second.next.as_ref(), 2);
    assert_eq!(names(&third), ["dave/4"]);
    assert!(third.next.is_none(), "the last page has no cursor");
    assert_eq!(third.count, 6);
    // A cursor whose user left still positions the next page.
    p.leave(&UserRef::new("5", "bob"));
    let again = p.page(first.next.as_ref(), 10);
    assert_eq!(names(&again), ["carol/3", "dave/4"]);
}

#[test]
fn count_and_pages_stay_right_in_a_large_room() {
    let n1: Arc<str> = "n1".into();
    let t = Instant::now();
    let mut p = Presence::default();
    for i in 0..3000 {
        p.join(&u(&format!("{i:05}")));
    }
    // Half of them are also on another node, plus 500 only there.
    let remote: Vec<PresenceMember> = (1500..3500).map(|i| member(&format!("{i:05}"), 2)).collect();
    p.remote_state(&n1, remote, t);
    assert_eq!(p.count(), 3500);
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = p.page(cursor.as_ref(), 500);
        assert!(page.members.len() <= 500);
        seen.extend(page.members.iter().map(|m| (m.id.to_string(), m.conns)));
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 3500, "every member exactly once");
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "in order");
    assert_eq!(seen[0].1, 1);
    assert_eq!(seen[2000].1, 3, "one here, two on n1");
    assert_eq!(seen[3400].1, 2);
    for i in 0..3000 {
        p.leave(&u(&format!("{i:05}")));
    }
    assert_eq!(p.count(), 2000, "the other node's users stay");
    p.remote_state(&n1, Vec::new(), t);
    assert_eq!(p.count(), 0);
    assert!(p.page(None, 10).members.is_empty());
}

#[test]
fn diffs_carry_the_count() {
    let mut p = Presence::default();
    p.join(&u("a"));
    p.join(&u("b"));
    assert_eq!(
        p.flush(Instant::now()),
        Flush::Diff {
            joined: vec![u("a"), u("b")],
            left: vec![],
            count: 2
        }
    );
    assert_eq!(p.flush(Instant::now()), Flush::Nothing);
}

#[test]
fn large_channels_tell_only_the_count_once_a_second() {
    let t0 = Instant::now();
    let mut p = Presence::default();
    for i in 0..LARGE {
        p.join(&u(&i.to_string()));
    }
    assert!(matches!(p.flush(t0), Flush::Diff { count: LARGE, .. }));
    p.join(&u("x"));
    assert_eq!(p.flush(t0), Flush::Count(LARGE + 1));
    assert_eq!(p.flush(t0), Flush::Nothing, "nothing new");
    p.join(&u("y"));
    let soon = t0 + Duration::from_millis(300);
    assert_eq!(p.flush(soon), Flush::Later, "told less than a second ago");
    p.leave(&u("y"));
    p.join(&u("z"));
    assert_eq!(p.flush(t0 + COUNT_EVERY), Flush::Count(LARGE + 2));
    // Back under the threshold: diffs again, of the changes since the last flush (a
    // client that knew only the count re-reads the list).
    p.leave(&u("x"));
    p.leave(&u("z"));
    p.leave(&u("0"));
    let later = t0 + COUNT_EVERY * 3;
    assert_eq!(
        p.flush(later),
        Flush::Diff {
            joined: vec![],
            left: vec![u("0"), u("x"), u("z")],
            count: LARGE - 1
        }
    );
}
