//! The [`RedisBroker`]: Redis pub/sub between the nodes of one cluster.
//!
//! Each node publishes its events on one Redis channel and subscribes to it; events of
//! its own node id are ignored. Publishing goes through a bounded queue drained by one
//! task; subscribing reconnects with backoff and, after a reconnect, asks the handler
//! to resync (events may have been missed meanwhile).
//!
//! Redis is not trusted: every envelope is sealed with an HMAC-SHA256 under the
//! cluster's secret and carries its time; a node drops what does not verify, and what
//! is older (or newer) than [`MAX_SKEW_MS`], so nobody who can merely publish on the
//! Redis channel can speak as a user, and an old envelope cannot be replayed.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{Broker, BusEvent, RemoteHandler};
use crate::protocol::now_ms;

/// Prefix of the Redis channel the nodes of one cluster share.
const TOPIC_PREFIX: &str = "chatserver:bus:v1:";

/// Events queued for publishing. Overflow policy: new events are dropped with a
/// warning (the receiving shards fill stored-message gaps from the database).
const QUEUE: usize = 65_536;

/// Envelopes further than this from the receiver's clock are dropped (replays; the
/// nodes' clocks must agree this well).
pub const MAX_SKEW_MS: i64 = 5 * 60 * 1000;

#[derive(Serialize, Deserialize)]
struct Envelope {
    node: Arc<str>,
    /// When it was sealed (ms since the Unix epoch).
    ts: i64,
    ev: BusEvent,
}

/// Bytes of the MAC in front of every envelope.
const MAC_LEN: usize = 32;

/// Seals and opens envelopes with the cluster's secret.
#[derive(Clone)]
pub struct Seal(Hmac<Sha256>);

impl Seal {
    pub fn new(key: &[u8]) -> Seal {
        Seal(Hmac::new_from_slice(key).expect("HMAC takes keys of any length"))
    }

    /// The seal of a cluster whose nodes share `secret` (the JWT secret) but no cluster
    /// secret of their own: the key is derived from it, never the secret itself.
    pub fn derived(secret: &[u8]) -> Seal {
        let mut kdf = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
        kdf.update(b"chatserver cluster bus v1");
        Seal::new(&kdf.finalize().into_bytes())
    }

    /// The MAC of `payload`, then `payload`.
    fn seal(&self, payload: &[u8]) -> Vec<u8> {
        let mut mac = self.0.clone();
        mac.update(payload);
        let mut out = mac.finalize().into_bytes().to_vec();
        out.extend_from_slice(payload);
        out
    }

    /// The payload of a sealed frame whose MAC verifies (in constant time).
    fn open<'a>(&self, frame: &'a [u8]) -> Option<&'a [u8]> {
        if frame.len() < MAC_LEN {
            return None;
        }
        let (tag, payload) = frame.split_at(MAC_LEN);
        let mut mac = self.0.clone();
        mac.update(payload);
        mac.verify_slice(tag).ok().map(|()| payload)
    }

    fn envelope(&self, node: &Arc<str>, ev: BusEvent) -> Option<Vec<u8>> {
        let env = Envelope {
            node: node.clone(),
            ts: now_ms(),
            ev,
        };
        serde_json::to_vec(&env).ok().map(|p| self.seal(&p))
    }

    /// The envelope of a sealed frame, if it verifies and is fresh.
    fn receive(&self, frame: &[u8], now: i64) -> Result<Envelope, &'static str> {
        let payload = self.open(frame).ok_or("bad seal")?;
        let env: Envelope = serde_json::from_slice(payload).map_err(|_| "undecodable")?;
        if (now - env.ts).abs() > MAX_SKEW_MS {
            return Err("stale");
        }
        Ok(env)
    }
}

/// A node of a cluster on Redis.
pub struct RedisBroker {
    node: Arc<str>,
    seal: Seal,
    topic: Arc<str>,
    client: redis::Client,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    /// The subscribing task was started (once).
    subscribed: Mutex<bool>,
}

impl RedisBroker {
    /// Connects to Redis (checking it answers) and starts the publishing task on the
    /// current arbiter. Other nodes' events flow once [`Broker::subscribe`] is called.
    pub async fn connect(url: &str, cluster: &str, seal: Seal) -> Result<RedisBroker, String> {
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
            seal,
            topic,
            client,
            tx,
            subscribed: Mutex::new(false),
        })
    }
}

impl Broker for RedisBroker {
    fn publish(&self, ev: BusEvent) {
        let Some(bytes) = self.seal.envelope(&self.node, ev) else {
            return;
        };
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
            self.seal.clone(),
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

async fn subscriber(
    client: redis::Client,
    topic: Arc<str>,
    node: Arc<str>,
    seal: Seal,
    handler: Arc<dyn RemoteHandler>,
) {
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
            match seal.receive(msg.get_payload_bytes(), now_ms()) {
                Ok(env) if env.node == node => {}
                Ok(env) => {
                    let age = (now_ms() - env.ts).max(0) as f64 / 1000.0;
                    crate::metrics::get().bus_lag.observe(age);
                    handler.event(env.node, env.ev)
                }
                Err(why) => log::warn!("broker: dropped an event from Redis ({why})"),
            }
        }
        log::warn!("broker: subscription ended; reconnecting");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typing() -> BusEvent {
        BusEvent::Typing {
            channel: "room:a".into(),
            user: crate::protocol::UserRef::new("1", "a"),
        }
    }

    #[test]
    fn only_sealed_fresh_envelopes_are_received() {
        let seal = Seal::new(b"cluster-secret-cluster-secret-32b");
        let node: Arc<str> = "n1".into();
        let frame = seal.envelope(&node, typing()).unwrap();
        let now = now_ms();
        assert_eq!(&*seal.receive(&frame, now).unwrap().node, "n1");
        // Another secret, a changed byte, a bare JSON envelope: dropped.
        let other = Seal::new(b"another-secret-another-secret-32");
        assert_eq!(other.receive(&frame, now).err(), Some("bad seal"));
        let mut forged = frame.clone();
        *forged.last_mut().unwrap() ^= 1;
        assert_eq!(seal.receive(&forged, now).err(), Some("bad seal"));
        let bare = serde_json::to_vec(&Envelope {
            node: node.clone(),
            ts: now,
            ev: typing(),
        })
        .unwrap();
        assert!(seal.receive(&bare, now).is_err());
        assert!(seal.receive(b"short", now).is_err());
        // Replayed later: stale.
        assert_eq!(seal.receive(&frame, now + MAX_SKEW_MS + 1_000).err(), Some("stale"));
    }
}
