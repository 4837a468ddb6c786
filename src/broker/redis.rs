//! The [`RedisBroker`]: Redis pub/sub between the nodes of one cluster.
//!
//! Each node publishes its events on one Redis channel and subscribes to it; events of
//! its own node id are ignored. Publishing goes through a bounded queue drained by one
//! task; subscribing reconnects with backoff and, after a reconnect, asks the handler
//! to resync (events may have been missed meanwhile).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{Broker, BusEvent, RemoteHandler};

/// Prefix of the Redis channel the nodes of one cluster share.
const TOPIC_PREFIX: &str = "chatserver:bus:v1:";

/// Events queued for publishing. Overflow policy: new events are dropped with a
/// warning (the receiving shards fill stored-message gaps from the database).
const QUEUE: usize = 65_536;

#[derive(Serialize, Deserialize)]
struct Envelope {
    node: Arc<str>,
    ev: BusEvent,
}

/// A node of a cluster on Redis.
pub struct RedisBroker {
    node: Arc<str>,
    topic: Arc<str>,
    client: redis::Client,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    /// The subscribing task was started (once).
    subscribed: Mutex<bool>,
}

impl RedisBroker {
    /// Connects to Redis (checking it answers) and starts the publishing task on the
    /// current arbiter. Other nodes' events flow once [`Broker::subscribe`] is called.
    pub async fn connect(url: &str, cluster: &str) -> Result<RedisBroker, String> {
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
        log::info!("broker: node {node} of cluster {cluster:?} on Redis");
        Ok(RedisBroker {
            node,
            topic,
            client,
            tx,
            subscribed: Mutex::new(false),
        })
    }
}

impl Broker for RedisBroker {
    fn publish(&self, ev: BusEvent) {
        let env = Envelope {
            node: self.node.clone(),
            ev,
        };
        let Ok(bytes) = serde_json::to_vec(&env) else { return };
        if self.tx.try_send(Bytes::from(bytes)).is_err() {
            log::warn!("broker queue full: an event for other nodes was dropped");
        }
    }

    fn subscribe(&self, handler: Arc<dyn RemoteHandler>) {
        let mut s = self.subscribed.lock().unwrap_or_else(|p| p.into_inner());
        if std::mem::replace(&mut *s, true) {
            return;
        }
        actix::spawn(subscriber(
            self.client.clone(),
            self.topic.clone(),
            self.node.clone(),
            handler,
        ));
    }

    fn clustered(&self) -> bool {
        true
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
                log::warn!("broker: cannot connect to Redis for publishing: {e}");
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
                log::warn!("broker: publish failed ({e}); reconnecting");
                pending = Some(payload);
                break;
            }
        }
    }
}

async fn subscriber(client: redis::Client, topic: Arc<str>, node: Arc<str>, handler: Arc<dyn RemoteHandler>) {
    let mut attempt = 0;
    let mut first = true;
    loop {
        let mut pubsub = match client.get_async_pubsub().await {
            Ok(p) => p,
            Err(e) => {
                log::warn!("broker: cannot connect to Redis for subscribing: {e}");
                backoff(&mut attempt).await;
                continue;
            }
        };
        if let Err(e) = pubsub.subscribe(&*topic).await {
            log::warn!("broker: subscribe failed: {e}");
            backoff(&mut attempt).await;
            continue;
        }
        attempt = 0;
        if !first {
            handler.resync();
        }
        first = false;
        let mut stream = pubsub.on_message();
        while let Some(msg) = stream.next().await {
            let payload: &[u8] = msg.get_payload_bytes();
            match serde_json::from_slice::<Envelope>(payload) {
                Ok(env) if env.node == node => {}
                Ok(env) => handler.event(env.node, env.ev),
                Err(e) => log::warn!("broker: undecodable event: {e}"),
            }
        }
        log::warn!("broker: subscription ended; reconnecting");
    }
}
