//! The writer against a temporary SQLite database, reporting into a test sink.

use std::{
    sync::{mpsc, Arc},
    thread,
};

use super::*;
use crate::{
    auth::Role,
    error::ErrorCode,
    protocol::UserRef,
    storage::{queries, Db, DbTarget},
};

/// Forwards each batch of commits to the test.
struct Sink(mpsc::Sender<Vec<Commit>>);

impl CommitSink for Sink {
    fn committed(&mut self, commits: Vec<Commit>) {
        let _ = self.0.send(commits);
    }
}

fn who(id: &str) -> Identity {
    Identity {
        user: UserRef::new(id, id),
        role: Role::User,
        anonymous: false,
        entity: None,
    }
}

fn data() -> Arc<RawValue> {
    RawValue::from_string(r#"{"text":"hi"}"#.into()).unwrap().into()
}

fn append(channel: &Channel, who: Identity, client_id: Option<&str>) -> (WriteOp, mpsc::Receiver<AppResultOf>) {
    let (tx, rx) = mpsc::channel();
    let ack = Ack::Wait(oneshot(tx));
    let op = WriteOp::Append(AppendReq {
        channel: channel.clone(),
        who,
        check_room: false,
        data: data(),
        client_id: client_id.map(Into::into),
        ack,
    });
    (op, rx)
}

type AppResultOf = crate::error::AppResult<PublishOk>;

/// A oneshot whose result lands in a std channel (the test thread is not async).
fn oneshot<T: Send + 'static>(
    tx: mpsc::Sender<crate::error::AppResult<T>>,
) -> tokio::sync::oneshot::Sender<crate::error::AppResult<T>> {
    let (otx, orx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        if let Ok(r) = orx.blocking_recv() {
            let _ = tx.send(r);
        }
    });
    otx
}

#[test]
fn one_failing_operation_does_not_fail_the_rest_of_its_batch() {
    use diesel::RunQueryDsl;
    let dir = tempfile::tempdir().unwrap();
    let target = DbTarget::resolve(None, dir.path()).unwrap();
    Db::open(&target, 1).unwrap();
    let mut conn = target.connect().unwrap();
    // A row the database refuses although it passed every check before the batch.
    diesel::sql_query(
        "CREATE TRIGGER poison BEFORE INSERT ON messages WHEN NEW.client_id = 'poison' \
         BEGIN SELECT RAISE(ABORT, 'poisoned row'); END",
    )
    .execute(&mut conn)
    .unwrap();
    let (handle, q) = queue(64);
    let ch = Channel::parse("dm:1,2").unwrap();
    let (a, _ra) = append(&ch, who("1"), Some("a"));
    let (p, poisoned) = append(&ch, who("1"), Some("poison"));
    let (b, _rb) = append(&ch, who("2"), Some("b"));
    // Queued before the writer starts: one batch of three.
    for op in [a, p, b] {
        handle.submit(op);
    }
    let (tx, commits) = mpsc::channel();
    let thread = start(conn, q, Box::new(Sink(tx)), 512);
    let e = poisoned.recv().unwrap().unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable);
    let mut seqs = Vec::new();
    while seqs.len() < 2 {
        let batch = commits
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the others commit");
        for c in batch {
            if let Commit::Message { msg, .. } = c {
                seqs.push(msg.seq);
            }
        }
    }
    assert_eq!(seqs, [1, 2]);
    handle.shutdown();
    thread.join().unwrap();
}

#[test]
fn commits_go_to_the_sink_and_duplicates_are_answered_by_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let target = DbTarget::resolve(None, dir.path()).unwrap();
    Db::open(&target, 1).unwrap();
    let (handle, q) = queue(64);
    let (tx, commits) = mpsc::channel();
    let thread = start(target.connect().unwrap(), q, Box::new(Sink(tx)), 512);
    let ch = Channel::parse("dm:1,2").unwrap();

    let (op, _first) = append(&ch, who("1"), Some("c-1"));
    handle.submit(op);
    let batch = commits.recv().unwrap();
    assert_eq!(batch.len(), 1);
    let Commit::Message { ns, msg, .. } = &batch[0] else {
        panic!("a message commit")
    };
    assert_eq!((*ns, msg.seq, &*msg.channel), (Namespace::Dm, 1, "dm:1,2"));

    // The resend is answered by the writer itself: nothing new to fan out.
    let (op, resend) = append(&ch, who("1"), Some("c-1"));
    handle.submit(op);
    let r = resend.recv().unwrap().unwrap();
    assert_eq!((r.seq, r.duplicate), (1, true));

    // Another user's edit is refused; nothing reaches the sink for it.
    let (etx, erx) = mpsc::channel();
    handle.submit(WriteOp::Edit {
        channel: ch.clone(),
        seq: 1,
        who: who("2"),
        data: data(),
        ack: Ack::Wait(oneshot(etx)),
    });
    assert_eq!(erx.recv().unwrap().unwrap_err().code, ErrorCode::Forbidden);

    let (op, _third) = append(&ch, who("2"), None);
    handle.submit(op);
    let batch = commits.recv().unwrap();
    assert!(matches!(&batch[..], [Commit::Message { msg, .. }] if msg.seq == 2));

    handle.shutdown();
    thread.join().unwrap();
    assert!(commits.try_recv().is_err());
}

#[test]
fn member_cache_is_bounded() {
    let mut c = MemberCache::default();
    let key = |i: usize| -> MemberKey { ("room:a".into(), i.to_string().into()) };
    c.extend((0..MEMBER_CACHE_MAX).map(key));
    assert!(c.contains(&key(0)));
    c.extend(std::iter::once(key(MEMBER_CACHE_MAX)));
    assert!(!c.contains(&key(0)), "emptied when full");
    assert!(c.contains(&key(MEMBER_CACHE_MAX)));
}

/// A writer over a fresh SQLite database whose first batch is `ops` (queued before
/// it starts); returns its handle, the commits it reports and a reader connection.
fn writer_with_first_batch(
    dir: &std::path::Path,
    ops: Vec<WriteOp>,
) -> (WriterHandle, thread::JoinHandle<()>, mpsc::Receiver<Vec<Commit>>, Conn) {
    let target = DbTarget::resolve(None, dir).unwrap();
    Db::open(&target, 1).unwrap();
    let (handle, q) = queue(1024);
    for op in ops {
        handle.submit(op);
    }
    let (tx, commits) = mpsc::channel();
    let thread = start(target.connect().unwrap(), q, Box::new(Sink(tx)), 512);
    (handle, thread, commits, target.connect().unwrap())
}

fn room_append(channel: &Channel, who: Identity, client_id: Option<&str>) -> (WriteOp, mpsc::Receiver<AppResultOf>) {
    let (mut op, rx) = append(channel, who, client_id);
    if let WriteOp::Append(r) = &mut op {
        r.check_room = true;
    }
    (op, rx)
}

#[test]
fn one_batch_over_many_channels_numbers_each_gap_free_and_dedupes_inside_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let rooms: Vec<Channel> = (0..5).map(|i| Channel::parse(&format!("room:r{i}")).unwrap()).collect();
    let dm = Channel::parse("dm:1,2").unwrap();
    let mut ops = Vec::new();
    let mut acks = Vec::new();
    for k in 0..3 {
        for r in rooms.iter().rev() {
            let (op, rx) = room_append(r, who("1"), Some(&format!("c{k}")));
            ops.push(op);
            acks.push(rx);
        }
    }
    // The same client_id again in the same batch: answered as a duplicate.
    let (op, dup) = room_append(&rooms[2], who("1"), Some("c1"));
    ops.push(op);
    let (op, _dm) = append(&dm, who("2"), None);
    ops.push(op);
    let (handle, thread, commits, mut c) = writer_with_first_batch(dir.path(), ops);

    let batch = commits.recv().unwrap();
    assert_eq!(batch.len(), 16, "15 room messages and the DM, the duplicate not");
    let mut per: std::collections::HashMap<&str, Vec<i64>> = Default::default();
    for commit in &batch {
        let Commit::Message { msg, .. } = commit else {
            panic!("a message commit")
        };
        per.entry(&msg.channel).or_default().push(msg.seq);
    }
    for r in &rooms {
        assert_eq!(per[&*r.full], vec![1, 2, 3], "{}", r.full);
    }
    assert_eq!(per["dm:1,2"], vec![1]);
    let d = dup.recv().unwrap().unwrap();
    assert_eq!((d.seq, d.duplicate), (2, true));
    // The counters were stored, the public rooms created, the DM members recorded.
    for r in &rooms {
        assert_eq!(queries::channel_top(&mut c, &r.full).unwrap().0, 3);
        assert!(queries::get_room(&mut c, r.name()).unwrap().is_some());
    }
    assert!(queries::is_member(&mut c, "dm:1,2", "1").unwrap());
    assert!(queries::is_member(&mut c, "dm:1,2", "2").unwrap());

    // The next batch continues every counter, and finds earlier client_ids stored.
    let (op, again) = room_append(&rooms[0], who("1"), Some("c0"));
    handle.submit(op);
    let (op, _next) = room_append(&rooms[0], who("1"), None);
    handle.submit(op);
    let r = again.recv().unwrap().unwrap();
    assert_eq!((r.seq, r.duplicate), (1, true));
    let batch = commits.recv().unwrap();
    assert!(matches!(&batch[..], [Commit::Message { msg, .. }] if msg.seq == 4));
    handle.shutdown();
    thread.join().unwrap();
}

#[test]
fn a_private_room_refuses_strangers_in_the_batch_without_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let target = DbTarget::resolve(None, dir.path()).unwrap();
    Db::open(&target, 1).unwrap();
    let mut c = target.connect().unwrap();
    queries::create_room(&mut c, "club", true, &UserRef::new("owner", "owner"), &[]).unwrap();
    drop(c);
    let club = Channel::parse("room:club").unwrap();
    let (a, first) = room_append(&club, who("owner"), None);
    let (b, stranger) = room_append(&club, who("stranger"), None);
    let (d, second) = room_append(&club, who("owner"), None);
    let admin = Identity {
        role: Role::Admin,
        ..who("admin")
    };
    let (e, by_admin) = room_append(&club, admin, None);
    let (handle, thread, commits, _c) = writer_with_first_batch(dir.path(), vec![a, b, d, e]);
    let seqs: Vec<i64> = commits
        .recv()
        .unwrap()
        .iter()
        .map(|c| match c {
            Commit::Message { msg, .. } => msg.seq,
            _ => panic!("a message commit"),
        })
        .collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(stranger.recv().unwrap().unwrap_err().code, ErrorCode::Forbidden);
    // Acks of stored messages go with the commits (to the sink), not back here.
    assert!(first.try_recv().is_err() && second.try_recv().is_err() && by_admin.try_recv().is_err());
    handle.shutdown();
    thread.join().unwrap();
}

#[test]
fn the_writer_connection_still_checkpoints_past_a_larger_wal() {
    // Without any checkpoint of its own the WAL never starts over while the writer
    // keeps committing: it grows without bound.
    #[derive(diesel::QueryableByName)]
    struct Pages {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        wal_autocheckpoint: i32,
    }
    let dir = tempfile::tempdir().unwrap();
    let target = DbTarget::resolve(None, dir.path()).unwrap();
    Db::open(&target, 1).unwrap();
    let mut c = target.connect().unwrap();
    let cp = checkpoint::Checkpointer::start(&mut c).expect("a checkpoint thread for a SQLite file");
    let Conn::Sqlite(sc) = &mut c else { panic!("sqlite") };
    let p: Pages = diesel::RunQueryDsl::get_result(diesel::sql_query("PRAGMA wal_autocheckpoint"), sc).unwrap();
    assert_eq!(p.wal_autocheckpoint, checkpoint::WRITER_CHECKPOINT_PAGES as i32);
    cp.nudge();
    drop(cp);
}

#[test]
fn the_dedupe_lookup_uses_the_client_id_index_which_leaves_out_messages_without_one() {
    #[derive(diesel::QueryableByName)]
    struct Plan {
        #[diesel(sql_type = diesel::sql_types::Text)]
        detail: String,
    }
    let dir = tempfile::tempdir().unwrap();
    let target = DbTarget::resolve(None, dir.path()).unwrap();
    Db::open(&target, 1).unwrap();
    let Conn::Sqlite(mut c) = target.connect().unwrap() else {
        panic!("sqlite")
    };
    use diesel::RunQueryDsl;
    let plan: Vec<Plan> = diesel::sql_query(
        "EXPLAIN QUERY PLAN SELECT seq, ts FROM messages WHERE channel = ? AND sender_id = ? AND client_id = ?",
    )
    .bind::<diesel::sql_types::Text, _>("room:a")
    .bind::<diesel::sql_types::Text, _>("1")
    .bind::<diesel::sql_types::Text, _>("c")
    .load(&mut c)
    .unwrap();
    assert!(
        plan.iter().any(|p| p.detail.contains("INDEX messages_client_id")),
        "{:?}",
        plan.iter().map(|p| &p.detail).collect::<Vec<_>>()
    );
    #[derive(diesel::QueryableByName)]
    struct Sql {
        #[diesel(sql_type = diesel::sql_types::Text)]
        sql: String,
    }
    let index: Sql = diesel::sql_query("SELECT sql FROM sqlite_master WHERE name = 'messages_client_id'")
        .get_result(&mut c)
        .unwrap();
    assert!(index.sql.contains("WHERE client_id IS NOT NULL"), "{}", index.sql);
}
