//! The bus between nodes: Redis pub/sub carrying what one node committed or fanned
//! out to every other node sharing the same database.
//!
//! Each node publishes its events (stored messages after commit, edits, deletes, feed
//! values, typing, signals) on one Redis channel and subscribes to it; events of its
//! own node id are ignored. Stored messages carry their `seq`: a hub shard delivers
//! them in order and fills a gap (an event lost or late on the bus) from the database,
//! so the bus may lose or reorder without members missing anything.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{
    hub::{Hub, Remote},
    protocol::{Message, PresenceMember, UserRef},
};

/// Prefix of the Redis channel the nodes of one cluster share.
const TOPIC_PREFIX: &str = "chatserver:bus:v1:";

/// Events queued for publishing before new ones are dropped (the receiving shards
/// fill stored-message gaps from the database).
const QUEUE: usize = 65_536;

/// A stored message on the wire between nodes.
#[derive(Serialize, Deserialize)]
pub struct WireMessage {
    pub channel: Arc<str>,
    pub seq: i64,
    pub ts: i64,
    pub from: UserRef,
    pub data: Box<RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Arc<str>>,
}

impl From<&Message> for WireMessage {
    fn from(m: &Message) -> Self {
        WireMessage {
            channel: m.channel.clone(),
            seq: m.seq,
            ts: m.ts,
            from: m.from.clone(),
            data: m.data.as_ref().to_owned(),
            client_id: m.client_id.clone(),
        }
    }
}

impl From<WireMessage> for Message {
    fn from(w: WireMessage) -> Message {
        Message {
            channel: w.channel,
            seq: w.seq,
            ts: w.ts,
            from: w.from,
            data: w.data.into(),
            client_id: w.client_id,
            edited_ts: None,
            deleted: false,
        }
    }
}

/// What travels between nodes.
/// (Externally tagged: raw JSON values cannot pass through serde's buffering of
/// internally tagged or flattened representations.)
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusEvent {
    /// A committed message of a stored channel.
    Message(WireMessage),
    Edit {
        channel: Arc<str>,
        seq: i64,
        from: UserRef,
        data: Box<RawValue>,
        edited_ts: i64,
    },
    Delete {
        channel: Arc<str>,
        seq: i64,
    },
    /// A value of an in-memory feed channel (each node keeps its own seq).
    Feed {
        channel: Arc<str>,
        from: UserRef,
        data: Box<RawValue>,
    },
    Typing {
        channel: Arc<str>,
        user: UserRef,
    },
    /// A signal frame for every connection of user `to`.
    Signal {
        to: Arc<str>,
        frame: Box<RawValue>,
    },
    /// Users who became present or absent on the sending node.
    Presence {
        channel: Arc<str>,
        joined: Vec<UserRef>,
        left: Vec<UserRef>,
    },
    /// Everyone present on the sending node (periodic, and the answer to an ask).
    PresenceState {
        channel: Arc<str>,
        users: Vec<PresenceMember>,
    },
    /// A node started watching the channel: others answer with their state.
    PresenceAsk {
        channel: Arc<str>,
    },
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    node: Arc<str>,
    ev: BusEvent,
}

/// Handle to publish on the bus; a no-op on a single node.
#[derive(Clone, Default)]
pub struct Bus {
    inner: Option<Arc<BusInner>>,
}

struct BusInner {
    node: Arc<str>,
    tx: tokio::sync::mpsc::Sender<Bytes>,
}

impl Bus {
    /// A bus that publishes nothing (single node).
    pub fn single_node() -> Bus {
        Bus { inner: None }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Queues an event for the other nodes (never blocks; drops when the queue is full).
    pub fn publish(&self, ev: BusEvent) {
        let Some(inner) = &self.inner else { return };
        let env = Envelope {
            node: inner.node.clone(),
            ev,
        };
        let Ok(bytes) = serde_json::to_vec(&env) else { return };
        if inner.tx.try_send(Bytes::from(bytes)).is_err() {
            log::warn!("bus queue full: an event for other nodes was dropped");
        }
    }

    /// Connects to Redis (checking it answers) and starts the publishing and the
    /// subscribing tasks on the current arbiter. Incoming events go to `hub`.
    pub async fn connect(url: &str, cluster: &str, hub: Hub) -> Result<Bus, String> {
        let topic: Arc<str> = format!("{TOPIC_PREFIX}{cluster}").into();
        let client = redis::Client::open(url).map_err(|e| format!("bad REDIS_URL: {e}"))?;
        let mut probe = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| format!("cannot reach Redis: {e}"))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut probe)
            .await
            .map_err(|e| format!("Redis: {e}"))?;
        let node: Arc<str> = hex::encode(rand::random::<[u8; 6]>()).into();
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(QUEUE);
        actix::spawn(publisher(client.clone(), topic.clone(), rx));
        actix::spawn(subscriber(client, topic, node.clone(), hub));
        log::info!("bus: node {node} of cluster {cluster:?} on Redis");
        Ok(Bus {
            inner: Some(Arc::new(BusInner { node, tx })),
        })
    }
}

async fn backoff(attempt: &mut u32) {
    let ms = (100u64 << (*attempt).min(6)).min(5_000);
    *attempt += 1;
    actix_web::rt::time::sleep(std::time::Duration::from_millis(ms)).await;
}

async fn publisher(client: redis::Client, topic: Arc<str>, mut rx: tokio::sync::mpsc::Receiver<Bytes>) {
    let mut attempt = 0;
    let mut pending: Option<Bytes> = None;
    loop {
        let mut con = match client.get_multiplexed_async_connection().await {
            Ok(c) => c,
            Err(e) => {
                log::warn!("bus: cannot connect to Redis for publishing: {e}");
                backoff(&mut attempt).await;
                continue;
            }
        };
        attempt = 0;
        loop {
            let payload = match pending.take() {
                Some(p) => p,
                None => match rx.recv().await {
                    Some(p) => p,
                    None => return,
                },
            };
            let r: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(&*topic)
                .arg(payload.as_ref())
                .query_async(&mut con)
                .await;
            if let Err(e) = r {
                log::warn!("bus: publish failed ({e}); reconnecting");
                pending = Some(payload);
                break;
            }
        }
    }
}

async fn subscriber(client: redis::Client, topic: Arc<str>, node: Arc<str>, hub: Hub) {
    let mut attempt = 0;
    let mut first = true;
    loop {
        let mut pubsub = match client.get_async_pubsub().await {
            Ok(p) => p,
            Err(e) => {
                log::warn!("bus: cannot connect to Redis for subscribing: {e}");
                backoff(&mut attempt).await;
                continue;
            }
        };
        if let Err(e) = pubsub.subscribe(&*topic).await {
            log::warn!("bus: subscribe failed: {e}");
            backoff(&mut attempt).await;
            continue;
        }
        attempt = 0;
        if !first {
            // Events may have been missed while disconnected: shards re-read the
            // stored channels their members watch.
            hub.resync();
        }
        first = false;
        let mut stream = pubsub.on_message();
        while let Some(msg) = stream.next().await {
            let payload: &[u8] = msg.get_payload_bytes();
            match serde_json::from_slice::<Envelope>(payload) {
                Ok(env) if env.node == node => {}
                Ok(env) => dispatch(&hub, env.node, env.ev),
                Err(e) => log::warn!("bus: undecodable event: {e}"),
            }
        }
        log::warn!("bus: subscription ended; reconnecting");
    }
}

fn dispatch(hub: &Hub, node: Arc<str>, ev: BusEvent) {
    let channel = match &ev {
        BusEvent::Signal { to, frame } => {
            let frame = Bytes::from(frame.get().to_owned());
            for c in hub.registry.connections(to) {
                c.outbox.push(frame.clone());
            }
            return;
        }
        BusEvent::Message(m) => m.channel.clone(),
        BusEvent::Edit { channel, .. }
        | BusEvent::Delete { channel, .. }
        | BusEvent::Feed { channel, .. }
        | BusEvent::Typing { channel, .. }
        | BusEvent::Presence { channel, .. }
        | BusEvent::PresenceState { channel, .. }
        | BusEvent::PresenceAsk { channel } => channel.clone(),
    };
    hub.shard(&channel).do_send(Remote { node, ev });
}
