//! Where work from outside the request path enters the hub:
//! * the writer's commits ([`CommitSink`]): published to the other nodes, then handed
//!   to the shard of each channel, which acknowledges and fans out;
//! * the other nodes' events ([`RemoteHandler`]): per-user signals go straight to the
//!   user's connections, everything else to the channel's shard.

use std::{
    future::Future,
    pin::pin,
    sync::Arc,
    task::{Context, Poll, Wake, Waker},
};

use actix::dev::SendError;

use super::{Committed, Hub, Remote};
use crate::{
    broker::{BusEvent, RemoteHandler},
    error::AppError,
    metrics,
    storage::writer::{BatchStats, Commit, CommitSink},
};

impl CommitSink for Hub {
    /// Runs on the writer thread. Overflow policy: when a shard's mailbox is full the
    /// writer waits for room (it never drops a commit: each carries an
    /// acknowledgement); meanwhile new writes queue up in the writer's own bounded
    /// queue and are refused with `unavailable` when it is full.
    fn committed(&mut self, commits: Vec<Commit>) {
        let at = std::time::Instant::now();
        let m = metrics::get();
        for c in &commits {
            self.publish(match c {
                Commit::Message { msg, accepted, .. } => {
                    m.publish_commit
                        .observe_duration(at.saturating_duration_since(*accepted));
                    BusEvent::Message(msg.into())
                }
                Commit::Edit { edit, .. } => BusEvent::Edit(edit.clone()),
                Commit::Delete { delete, .. } => BusEvent::Delete(delete.clone()),
            });
        }
        let mut per: Vec<Vec<Commit>> = (0..self.shards.len()).map(|_| Vec::new()).collect();
        for c in commits {
            per[self.shard_index(c.channel())].push(c);
        }
        for (i, batch) in per.into_iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            let shard = &self.shards[i];
            let lost = match shard.try_send(Committed { commits: batch, at }) {
                Ok(()) => None,
                Err(SendError::Full(msg)) => block_on(shard.send(msg)).err().map(|_| ()),
                Err(SendError::Closed(Committed { commits, .. })) => {
                    for c in commits {
                        fail(c, AppError::unavailable("hub unavailable"));
                    }
                    None
                }
            };
            if lost.is_some() {
                log::error!("hub shard {i} is gone: committed writes were not fanned out");
            }
        }
    }

    fn batch_done(&mut self, stats: &BatchStats) {
        let m = metrics::get();
        m.write_batch_size.observe(stats.ops as f64);
        m.write_commit.observe_duration(stats.commit);
    }
}

fn fail(c: Commit, e: AppError) {
    match c {
        Commit::Message { ack, .. } => ack.err(e),
        Commit::Edit { ack, .. } | Commit::Delete { ack, .. } => ack.err(e),
    }
}

impl RemoteHandler for Hub {
    /// Overflow policy: an event that cannot be queued on its shard is dropped; for a
    /// stored channel the shard re-reads the channel from storage (as after a broker
    /// reconnect). Typing and feed values are transient; presence is repaired by the
    /// periodic announcements.
    fn event(&self, node: Arc<str>, ev: BusEvent) {
        let channel = match &ev {
            BusEvent::Signal { to, frame } => {
                let frame = bytes::Bytes::from(frame.get().to_owned());
                for c in self.registry.connections(to) {
                    c.outbox.push(frame.clone());
                }
                return;
            }
            BusEvent::Revoke { user, version } => {
                self.revoke_local(user, *version);
                return;
            }
            BusEvent::Kick { user, reason } => {
                self.registry.close_user(user, crate::protocol::close::KICKED, reason);
                return;
            }
            other => other.channel().cloned().expect("a channel event"),
        };
        let stored = matches!(ev, BusEvent::Message(_) | BusEvent::Edit(_) | BusEvent::Delete(_));
        if self.shard(&channel).try_send(Remote { node, ev }).is_err() && stored {
            log::warn!("hub shard busy: an event of {channel} from another node was dropped; re-reading it");
            self.resync_channel(channel);
        }
    }

    fn resync(&self) {
        self.resync_all();
    }
}

/// Runs a future to completion on the current (non-async) thread.
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}
