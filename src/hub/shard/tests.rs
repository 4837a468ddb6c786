//! The shard actor driven through its mailbox, with a real (temporary) SQLite
//! database behind it and connections read without a socket.

use std::{
    collections::VecDeque,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use actix::Actor;
use serde_json::Value;
use tokio::sync::oneshot;

use super::Shard;
use crate::{
    broker::LocalBroker,
    channels::{Channel, Namespace},
    conn::{Ack, ConnHandle, Outbox},
    error::AppError,
    feeds::Feeds,
    hub::{
        snapshots::{ReadKey, SnapshotSource, Snapshots},
        Committed, ResyncRequests, Subscribe,
    },
    protocol::{Message, UserRef},
    storage::{queries::JoinSnapshot, writer, writer::Commit, Db, DbTarget},
};

/// How the test answers a parked read: the top of the snapshot, or an error.
type Answer = oneshot::Sender<Result<i64, AppError>>;

/// Snapshot reads that wait until the test answers them, oldest first.
#[derive(Default)]
struct Scripted {
    parked: Mutex<VecDeque<Answer>>,
    reads: Mutex<usize>,
}

impl SnapshotSource for Scripted {
    fn read(&self, _: Arc<str>, keys: Vec<ReadKey>) -> Pin<Box<dyn Future<Output = Snapshots>>> {
        let (tx, rx) = oneshot::channel();
        self.parked.lock().unwrap().push_back(tx);
        *self.reads.lock().unwrap() += 1;
        let n = keys.len();
        Box::pin(async move {
            let r = rx.await.unwrap_or_else(|_| Err(AppError::internal("dropped")));
            (0..n).map(|_| r.clone().map(|top| Arc::new(snapshot(top)))).collect()
        })
    }
}

impl Scripted {
    /// Answers the oldest read (waiting for one to start) with a snapshot ending at
    /// `top`, or with an error, and lets the shard handle it.
    async fn answer(&self, r: Result<i64, AppError>) {
        for _ in 0..200 {
            let next = self.parked.lock().unwrap().pop_front();
            if let Some(tx) = next {
                tx.send(r).unwrap();
                actix_web::rt::time::sleep(Duration::from_millis(20)).await;
                return;
            }
            actix_web::rt::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("no snapshot read started");
    }

    async fn release(&self, top: i64) {
        self.answer(Ok(top)).await
    }

    fn reads(&self) -> usize {
        *self.reads.lock().unwrap()
    }

    fn parked(&self) -> usize {
        self.parked.lock().unwrap().len()
    }
}

fn shard(dir: &std::path::Path) -> (actix::Addr<Shard>, Arc<Scripted>) {
    let db = Db::open(&DbTarget::resolve(None, dir).unwrap(), 2).unwrap();
    let (w, _queue) = writer::queue(16);
    let feeds = Feeds::new(w, 5.0, 25.0, Duration::from_secs(60));
    let source = Arc::new(Scripted::default());
    let shard = Shard::new(
        "epoch".into(),
        feeds,
        db,
        Arc::new(LocalBroker),
        Arc::new(ResyncRequests::default()),
        Duration::from_secs(10),
        source.clone(),
    )
    .start();
    (shard, source)
}

fn conn(id: u64) -> Arc<ConnHandle> {
    Arc::new(ConnHandle {
        token_ver: 0,
        id,
        user: UserRef::new(id.to_string(), format!("user-{id}")),
        outbox: Outbox::new(1 << 20, 1 << 30, None),
    })
}

fn commits(channel: &Channel, seqs: std::ops::RangeInclusive<i64>) -> Committed {
    Committed {
        commits: seqs
            .map(|seq| Commit::Message {
                ns: Namespace::Room,
                msg: Message {
                    channel: channel.full.clone(),
                    seq,
                    ts: seq,
                    from: UserRef::new("9", "nine"),
                    data: serde_json::value::RawValue::from_string("{}".into()).unwrap().into(),
                    client_id: None,
                    edited_ts: None,
                    deleted: false,
                },
                ack: Ack::None,
                accepted: std::time::Instant::now(),
            })
            .collect(),
        at: std::time::Instant::now(),
    }
}

fn snapshot(top: i64) -> JoinSnapshot {
    JoinSnapshot {
        top,
        epoch: "e".into(),
        messages: Vec::new(),
        recovered: None,
        more: false,
    }
}

/// The seqs of the `message` events, and the `id` of replies, as read by a client.
fn read(c: &ConnHandle) -> (Vec<i64>, Vec<i64>) {
    let (mut seqs, mut replies) = (Vec::new(), Vec::new());
    for f in c.outbox.take_frames() {
        let v: Value = serde_json::from_slice(&f).unwrap();
        if v["ev"] == "message" {
            seqs.push(v["seq"].as_i64().unwrap());
        } else if let Some(id) = v["id"].as_i64() {
            replies.push(id);
        }
    }
    (seqs, replies)
}

async fn join(shard: &actix::Addr<Shard>, c: &Arc<ConnHandle>, ch: &Channel) {
    let sub = Subscribe {
        conn: c.clone(),
        channel: ch.clone(),
        req_id: Some(1),
        since: None,
        epoch: None,
        limit: 50,
    };
    shard.send(sub).await.unwrap();
}

#[actix_web::test]
async fn held_events_overflow_and_the_joiner_reads_a_new_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (shard, snaps) = shard(dir.path());
    let ch = Channel::parse("room:busy").unwrap();
    // `a` is in the channel: delivery runs from seq 0 on.
    let a = conn(1);
    join(&shard, &a, &ch).await;
    snaps.release(0).await;
    assert_eq!(read(&a), (vec![], vec![1]));
    // `b` joins; while its snapshot is read, more arrives than it may hold.
    let b = conn(2);
    join(&shard, &b, &ch).await;
    shard.send(commits(&ch, 1..=3000)).await.unwrap();
    snaps.release(0).await;
    assert_eq!(read(&b), (vec![], vec![]), "nothing is sent on a restart");
    assert_eq!(snaps.reads(), 3, "b reads a second snapshot at once");
    // The second snapshot ends at 3000; 3001.. are held.
    shard.send(commits(&ch, 3001..=3005)).await.unwrap();
    snaps.release(3000).await;
    shard.send(commits(&ch, 3006..=3006)).await.unwrap();
    assert_eq!(read(&b), ((3001..=3006).collect(), vec![1]));
    assert_eq!(
        read(&a),
        ((1..=3006).collect(), vec![]),
        "a got everything once, in order"
    );
}

#[actix_web::test]
async fn joins_arriving_during_a_read_share_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let (shard, snaps) = shard(dir.path());
    let ch = Channel::parse("room:storm").unwrap();
    let first = conn(1);
    join(&shard, &first, &ch).await;
    let rest: Vec<_> = (2..=50).map(conn).collect();
    for c in &rest {
        join(&shard, c, &ch).await;
    }
    assert_eq!(snaps.reads(), 1, "one read under way; the others wait");
    // Committed while the first read runs: held by everyone.
    shard.send(commits(&ch, 1..=2)).await.unwrap();
    snaps.release(0).await;
    assert_eq!(read(&first), (vec![1, 2], vec![1]));
    assert_eq!(snaps.reads(), 2, "one read for the 49 that waited");
    snaps.release(2).await;
    for c in &rest {
        assert_eq!(read(c), (vec![], vec![1]), "in the snapshot, not sent twice");
    }
    shard.send(commits(&ch, 3..=3)).await.unwrap();
    for c in rest.iter().chain([&first]) {
        assert_eq!(read(c).0, [3]);
    }
    let page = shard
        .send(crate::hub::PresencePage {
            channel: ch.full.clone(),
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(page.count, 50);
    assert_eq!(snaps.parked(), 0);
}

#[actix_web::test]
async fn a_failed_read_answers_its_joins_and_a_join_that_left_is_superseded() {
    let dir = tempfile::tempdir().unwrap();
    let (shard, snaps) = shard(dir.path());
    let ch = Channel::parse("room:fail").unwrap();
    let (a, b) = (conn(1), conn(2));
    join(&shard, &a, &ch).await;
    snaps.answer(Err(AppError::unavailable("storage down"))).await;
    let f = a.outbox.take_frames();
    let v: Value = serde_json::from_slice(&f[0]).unwrap();
    assert_eq!(v["error"]["code"], "unavailable", "{v}");
    join(&shard, &b, &ch).await;
    shard
        .send(crate::hub::Unsubscribe {
            conn_id: 2,
            channels: vec![ch.full.clone()],
        })
        .await
        .unwrap();
    snaps.release(0).await;
    let f = b.outbox.take_frames();
    let v: Value = serde_json::from_slice(&f[0]).unwrap();
    assert_eq!(v["error"]["code"], "bad_request", "{v}");
    let stats = shard.send(crate::hub::Stats).await.unwrap();
    assert_eq!(stats.subscriptions, 0, "neither stayed a member");
}

#[actix_web::test]
async fn a_member_whose_connection_closed_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (shard, snaps) = shard(dir.path());
    let ch = Channel::parse("room:x").unwrap();
    let (a, b) = (conn(1), conn(2));
    for c in [&a, &b] {
        join(&shard, c, &ch).await;
    }
    snaps.release(0).await;
    snaps.release(0).await;
    assert_eq!(read(&b).1, [1]);
    b.outbox.close(4008, "slow consumer", false);
    shard.send(commits(&ch, 1..=1)).await.unwrap();
    let stats = shard.send(crate::hub::Stats).await.unwrap();
    assert_eq!(stats.subscriptions, 1, "b left the channel with its connection");
    assert_eq!(read(&a).0, [1]);
}

#[actix_web::test]
async fn a_gap_is_filled_from_storage() {
    let dir = tempfile::tempdir().unwrap();
    let (shard, snaps) = shard(dir.path());
    let ch = Channel::parse("room:gap").unwrap();
    let a = conn(1);
    join(&shard, &a, &ch).await;
    snaps.release(0).await;
    // Seq 1 and 2 are stored, but only 3 reaches the shard (lost between nodes).
    let db = Db::open(&DbTarget::resolve(None, dir.path()).unwrap(), 1).unwrap();
    db.run(|c| {
        use crate::storage::schema::messages;
        use diesel::prelude::*;
        for seq in 1..=2i64 {
            diesel::insert_into(messages::table)
                .values((
                    messages::channel.eq("room:gap"),
                    messages::seq.eq(seq),
                    messages::ts.eq(seq),
                    messages::sender_id.eq("9"),
                    messages::sender_name.eq("nine"),
                    messages::data.eq("{}"),
                    messages::deleted.eq(false),
                ))
                .execute(c)?;
        }
        Ok(())
    })
    .await
    .unwrap();
    shard.send(commits(&ch, 3..=3)).await.unwrap();
    assert_eq!(read(&a).0, Vec::<i64>::new(), "3 waits for its predecessors");
    let mut got = Vec::new();
    for _ in 0..100 {
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        got.extend(read(&a).0);
        if got.len() == 3 {
            break;
        }
    }
    assert_eq!(got, [1, 2, 3]);
}

#[actix_web::test]
async fn racing_joins_of_one_connection_count_its_presence_once() {
    let dir = tempfile::tempdir().unwrap();
    let (shard, snaps) = shard(dir.path());
    let ch = Channel::parse("room:twice").unwrap();
    let a = conn(1);
    join(&shard, &a, &ch).await;
    join(&shard, &a, &ch).await;
    snaps.release(0).await;
    snaps.release(0).await;
    assert_eq!(read(&a).1, [1, 1], "both joins answered");
    let query = || crate::hub::PresencePage {
        channel: ch.full.clone(),
        after: None,
        limit: 10,
    };
    let page = shard.send(query()).await.unwrap();
    assert_eq!(page.members.iter().map(|m| m.conns).collect::<Vec<_>>(), [1]);
    assert_eq!(page.count, 1);
    shard
        .send(crate::hub::Unsubscribe {
            conn_id: 1,
            channels: vec![ch.full.clone()],
        })
        .await
        .unwrap();
    assert_eq!(shard.send(query()).await.unwrap().count, 0, "nobody left behind");
}
