//! An actor-based realtime event server: chat rooms and DMs with durable history and
//! recovery, live feeds (quotes, sports, locations) with conflation, over one
//! WebSocket protocol (`docs/PROTOCOL.md`).
//!
//! The parts, in the order a message flows through them:
//!
//! * [`http`] – routes: the `/ws` upgrade, the JSON API, pages, health, metrics.
//! * [`session`] – one actix actor per connection: frame decoding with size limits
//!   ([`session::transport`]), auth, heartbeat, rate limits, and the bounded
//!   outbound queue drained at the client's pace ([`session::outbox`]).
//! * [`protocol`] – wire types: requests in, shared serialized frames out.
//! * [`channels`] – channel names and namespace policies.
//! * [`hub`] – shards (actors on their own threads) owning channels, membership,
//!   presence and fan-out.
//! * [`storage`] – diesel + r2d2 over SQLite or PostgreSQL, and the group-commit writer.
//! * [`bus`] – Redis pub/sub between nodes sharing one PostgreSQL database.
//! * [`feeds`] – last values, location validation, geo index, demo publishers.
//! * [`auth`] – JWT, passwords, credentials.
//! * [`config`] and [`startup`] – settings and assembly.

pub mod auth;
pub mod bus;
pub mod channels;
pub mod config;
pub mod error;
pub mod feeds;
pub mod http;
pub mod hub;
pub mod protocol;
pub mod session;
pub mod startup;
pub mod state;
pub mod storage;
