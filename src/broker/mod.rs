//! The seam between nodes. A [`Broker`] carries what one node committed or fanned out
//! ([`BusEvent`]s) to every other node sharing the same database, and hands the other
//! nodes' events to a [`RemoteHandler`] (the hub). A single node runs the
//! [`LocalBroker`], which has nobody to talk to; a cluster runs the
//! [`redis::RedisBroker`]. Nothing else in the server asks which one it has.
//!
//! Stored messages carry their `seq`: the hub delivers them in order and fills a gap
//! (an event lost or late between nodes) from the database, so a broker may lose or
//! reorder events without members missing anything.

pub mod event;
pub mod redis;

use std::sync::Arc;

pub use event::{BusEvent, WireMessage};

/// Publishes this node's events to the other nodes and delivers theirs.
pub trait Broker: Send + Sync + 'static {
    /// Queues an event for the other nodes. Never blocks: a broker whose queue is full
    /// drops the event (receivers repair stored channels from the database).
    fn publish(&self, ev: BusEvent);

    /// Starts delivering the other nodes' events to `handler`.
    fn subscribe(&self, handler: Arc<dyn RemoteHandler>);

    /// Are there other nodes (presence is then announced periodically)?
    fn clustered(&self) -> bool;
}

/// Receives the other nodes' events.
pub trait RemoteHandler: Send + Sync + 'static {
    /// An event from node `node`.
    fn event(&self, node: Arc<str>, ev: BusEvent);

    /// Events may have been missed (the connection to the other nodes was lost and is
    /// back): re-read what the local members watch.
    fn resync(&self);
}

/// The broker of a single node: there is nobody to publish to or hear from.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalBroker;

impl Broker for LocalBroker {
    fn publish(&self, _: BusEvent) {}

    fn subscribe(&self, _: Arc<dyn RemoteHandler>) {}

    fn clustered(&self) -> bool {
        false
    }
}
