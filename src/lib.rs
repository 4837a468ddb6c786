//! An actor-based realtime event server: chat rooms and DMs with durable history and
//! recovery, live feeds (quotes, sports, locations) with conflation, over one
//! WebSocket protocol (`docs/PROTOCOL.md`).
//!
//! The layers, top to bottom (a module only uses the ones below it):
//!
//! * [`startup`] – builds everything from [`config::Settings`]; owns the shutdown order.
//! * [`http`], [`session`] – adapters: the routes and the per-connection actor decode a
//!   request or frame, call a use case, encode the reply. The session owns only
//!   connection state (auth, joined channels, heartbeat, rate limits).
//! * [`demo`] – the built-in demo publishers (another caller of the use cases).
//! * [`chat`] – the use cases, one file per family of operations, shared by all of the
//!   above.
//! * [`hub`] – shard actors owning channels, membership, presence, in-order delivery and
//!   fan-out, driving the pure state machines [`hub::presence`] and [`hub::ordering`].
//! * [`broker`] – the seam between nodes: [`broker::LocalBroker`] on one node,
//!   [`broker::redis::RedisBroker`] in a cluster.
//! * [`feeds`] – last-known positions (geo index), track sampling, known feeds, demo
//!   simulators.
//! * [`storage`] – diesel + r2d2 over SQLite or PostgreSQL, and the group-commit writer,
//!   which reports its commits into a sink and knows nothing of hub or broker.
//! * [`conn`] – a connection as everyone else sees it: its bounded outbox, the
//!   registry, and [`conn::Ack`] (where a request's result goes).
//! * leaves: [`protocol`] (wire types), [`channels`] (names and policies), [`auth`],
//!   [`limit`], [`net`], [`config`], [`error`], [`metrics`] (the process's counters,
//!   atomics only, served by `/metrics`), [`logging`] (text or JSON lines).

pub mod auth;
pub mod broker;
pub mod channels;
pub mod chat;
pub mod cli;
pub mod config;
pub mod conn;
pub mod demo;
pub mod error;
pub mod feeds;
pub mod http;
pub mod hub;
pub mod limit;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod protocol;
pub mod session;
pub mod startup;
pub mod state;
pub mod storage;
