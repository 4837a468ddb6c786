//! The writer against a temporary SQLite database, reporting into a test sink.

use std::sync::{mpsc, Arc};

use super::*;
use crate::{
    auth::Role,
    error::ErrorCode,
    protocol::UserRef,
    storage::{Db, DbTarget},
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
