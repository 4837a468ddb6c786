//! The process's metrics, served by `/metrics` in the Prometheus text format
//! (through `prometheus-client`). Every name starts with `chat_`, counters end in
//! `_total`, times are in seconds.
//!
//! Counting is atomics only: labelled counters are looked up once, here, and the hot
//! paths add to them by index ([`Namespace`], [`Limit`]); the histograms are
//! lock-free ([`histogram`]). Gauges of state the hub owns (connections, channels,
//! subscriptions) are set when scraped.

pub mod histogram;

use std::sync::LazyLock;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

pub use self::histogram::Histogram;
use crate::channels::Namespace;

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every namespace, in the order of the per-namespace counters.
const NAMESPACES: [Namespace; 5] = [
    Namespace::Room,
    Namespace::Dm,
    Namespace::Ticker,
    Namespace::Sports,
    Namespace::Loc,
];

/// What a rate or connection limit refused (the `what` label of
/// `chat_rate_limited_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Requests over one WebSocket connection.
    Requests,
    /// A user's write budget (publish, edit, delete, read markers, joins, signals).
    Writes,
    /// Rooms created per hour.
    Rooms,
    /// Rings to one user.
    Rings,
    /// Uploads per hour.
    Uploads,
    /// Failed logins (per address or account) and password attempts.
    Logins,
    /// Registrations per address.
    Registrations,
    /// WebSocket handshakes per address.
    Handshakes,
    /// Open connections per user or per address.
    Connections,
}

impl Limit {
    const ALL: [Limit; 9] = [
        Limit::Requests,
        Limit::Writes,
        Limit::Rooms,
        Limit::Rings,
        Limit::Uploads,
        Limit::Logins,
        Limit::Registrations,
        Limit::Handshakes,
        Limit::Connections,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Requests => "requests",
            Limit::Writes => "writes",
            Limit::Rooms => "rooms",
            Limit::Rings => "rings",
            Limit::Uploads => "uploads",
            Limit::Logins => "logins",
            Limit::Registrations => "registrations",
            Limit::Handshakes => "handshakes",
            Limit::Connections => "connections",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceLabel {
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WhatLabel {
    what: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// Bounds of the latency histograms, in seconds.
const LATENCY_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every family, registered once.
pub struct Metrics {
    registry: Registry,
    /// Open WebSocket connections (authenticated); set when scraped.
    pub connections: Gauge,
    pub connections_accepted: Counter,
    /// Channels with state in the hub; set when scraped.
    pub channels: Gauge,
    /// Channel memberships of connections; set when scraped.
    pub subscriptions: Gauge,
    pub frames_in: Counter,
    pub bad_requests: Counter,
    messages_in: [Counter; 5],
    messages_out: [Counter; 5],
    /// From the writer accepting a publish to its commit.
    pub publish_commit: Histogram,
    /// From a commit to its messages queued into the subscribers' outboxes (once per
    /// commit batch per shard).
    pub commit_delivery: Histogram,
    pub write_batch_size: Histogram,
    pub write_commit: Histogram,
    pub outbox_overflows: Counter,
    rate_limited: [Counter; 9],
    /// Age of the events received from other nodes.
    pub bus_lag: Histogram,
    pub gap_fills: Counter,
    pub gaps_skipped: Counter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let mut r = Registry::with_prefix("chat");
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        r.register("build_info", "The server's version (always 1)", build);

        let connections = Gauge::default();
        r.register(
            "connections",
            "Open WebSocket connections (authenticated)",
            connections.clone(),
        );
        let connections_accepted = Counter::default();
        r.register(
            "connections_accepted",
            "WebSocket connections accepted (authenticated)",
            connections_accepted.clone(),
        );
        let channels = Gauge::default();
        r.register("channels", "Channels with state in the hub", channels.clone());
        let subscriptions = Gauge::default();
        r.register(
            "subscriptions",
            "Channel memberships of connections",
            subscriptions.clone(),
        );
        let frames_in = Counter::default();
        r.register("frames_in", "WebSocket frames received from clients", frames_in.clone());
        let bad_requests = Counter::default();
        r.register("bad_requests", "Malformed client frames", bad_requests.clone());

        let per_ns = |r: &mut Registry, name: &str, help: &str| {
            let family = Family::<NamespaceLabel, Counter>::default();
            let counters = NAMESPACES.map(|ns| {
                family.get_or_create_owned(&NamespaceLabel {
                    namespace: ns.prefix().into(),
                })
            });
            r.register(name, help, family);
            counters
        };
        let messages_in = per_ns(
            &mut r,
            "messages_in",
            "Messages published on this node (accepted for storing or fan-out), by namespace",
        );
        let messages_out = per_ns(
            &mut r,
            "messages_out",
            "Message frames queued to subscribers' connections, by namespace",
        );

        let histogram = |r: &mut Registry, name: &str, help: &str, h: Histogram| {
            r.register(name, help, h.clone());
            h
        };
        let publish_commit = histogram(
            &mut r,
            "publish_commit_seconds",
            "Time from the writer accepting a publish to its commit",
            Histogram::new(LATENCY_BOUNDS),
        );
        let commit_delivery = histogram(
            &mut r,
            "commit_delivery_seconds",
            "Time from a commit to its messages queued for the subscribers (per commit batch and shard)",
            Histogram::new(LATENCY_BOUNDS),
        );
        let write_batch_size = histogram(
            &mut r,
            "write_batch_size",
            "Operations in one write batch (transaction)",
            Histogram::exponential(1.0, 2.0, 13),
        );
        let write_commit = histogram(
            &mut r,
            "write_commit_seconds",
            "Time of a write batch's COMMIT",
            Histogram::new(LATENCY_BOUNDS),
        );
        let outbox_overflows = Counter::default();
        r.register(
            "outbox_overflows",
            "Connections closed with 4008: their outbound queue overflowed (slow consumers)",
            outbox_overflows.clone(),
        );
        let limited = Family::<WhatLabel, Counter>::default();
        let rate_limited = Limit::ALL.map(|l| {
            limited.get_or_create_owned(&WhatLabel {
                what: l.as_str().into(),
            })
        });
        r.register(
            "rate_limited",
            "Requests refused by rate and connection limits, by limit",
            limited,
        );
        let bus_lag = histogram(
            &mut r,
            "bus_lag_seconds",
            "Age of events received from other nodes (from sealing to receipt)",
            Histogram::new(LATENCY_BOUNDS.into_iter().chain([30.0, 60.0])),
        );
        let gap_fills = Counter::default();
        r.register(
            "gap_fills",
            "Reads of stored messages to fill a gap in a channel's sequence",
            gap_fills.clone(),
        );
        let gaps_skipped = Counter::default();
        r.register(
            "gaps_skipped",
            "Gaps in stored channels given up on (the messages were in no storage read)",
            gaps_skipped.clone(),
        );
        Metrics {
            registry: r,
            connections,
            connections_accepted,
            channels,
            subscriptions,
            frames_in,
            bad_requests,
            messages_in,
            messages_out,
            publish_commit,
            commit_delivery,
            write_batch_size,
            write_commit,
            outbox_overflows,
            rate_limited,
            bus_lag,
            gap_fills,
            gaps_skipped,
        }
    }

    fn ns_index(ns: Namespace) -> usize {
        NAMESPACES.iter().position(|n| *n == ns).unwrap_or(0)
    }

    /// One message published into `ns`.
    pub fn message_in(&self, ns: Namespace) {
        self.messages_in[Self::ns_index(ns)].inc();
    }

    /// `n` message frames of `ns` queued to subscribers.
    pub fn messages_out(&self, ns: Namespace, n: u64) {
        if n > 0 {
            self.messages_out[Self::ns_index(ns)].inc_by(n);
        }
    }

    /// One refusal by `limit`.
    pub fn rate_limited(&self, limit: Limit) {
        self.rate_limited[Limit::ALL.iter().position(|l| *l == limit).unwrap_or(0)].inc();
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8192);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions() {
        let text = get().encode();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut parts = line.split_whitespace().skip(2);
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(name.starts_with("chat_"), "{line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
        }
        assert!(text.contains("chat_build_info{version=\""), "{text}");
        assert!(text.contains("chat_rate_limited_total{what=\"handshakes\"} "), "{text}");
        assert!(
            text.contains("chat_messages_out_total{namespace=\"ticker\"} "),
            "{text}"
        );
    }
}
