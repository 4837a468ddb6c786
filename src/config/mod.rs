//! Settings: built-in defaults, then an optional TOML file, then `CHAT_*` environment
//! variables (the environment wins). See the README for the full table.
//!
//! The layers are combined with [figment]: the file and the environment are each a
//! [`Provider`], merged in that order over the defaults that `#[serde(default)]` supplies,
//! and figment's metadata tells which layer each value came from
//! ([`Settings::load_with_sources`]).
//!
//! * [`layers`] – the file and environment providers (every variable and its parsing).
//! * [`sources`] – where each effective value came from.

mod layers;
mod sources;
#[cfg(test)]
mod tests;

use self::layers::{ConfigFile, Environment};
mod redact;
pub use self::sources::{Source, Sources, SourcesIter};

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use figment::Figment;
use serde::Deserialize;

/// Every knob the server reads at start. Defaults need no setup at all.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP/WebSocket listener binds (`127.0.0.1:0` picks a free port).
    pub bind: String,
    /// Address of a listener of its own for `/metrics` (kept private); `None` serves
    /// `/metrics` on the main listener.
    pub metrics_bind: Option<String>,
    /// Log lines as `text` (the default) or `json` (one object per line).
    pub log_format: LogFormat,
    /// Directory for the SQLite file, uploads and the generated JWT secret.
    pub data_dir: PathBuf,
    /// `sqlite://path` (default: `<data_dir>/chat.db`).
    pub database_url: Option<String>,
    /// Broker between nodes; `None` runs a single node.
    pub redis_url: Option<String>,
    /// Name of the cluster on the broker (deployments sharing one Redis stay apart).
    pub cluster_name: String,
    /// Nodes re-announce their presence lists this often; a node silent for three
    /// periods is taken as gone.
    pub presence_refresh_s: f64,
    /// HS256 secret (at least 32 bytes); generated and kept in the data dir when absent.
    pub jwt_secret: Option<String>,
    /// Key of the HMAC that seals events between nodes (at least 32 bytes); derived
    /// from the JWT secret when absent (the nodes of a cluster share that already).
    pub cluster_secret: Option<String>,
    /// Anonymous connections may read namespaces that allow it (feeds).
    /// `None` means "follow `demo`".
    pub allow_anonymous: Option<bool>,
    /// Extra `Origin` values allowed to open a WebSocket (the own origin always is).
    pub allowed_origins: Vec<String>,
    /// Run the built-in demo feeds.
    pub demo: bool,
    /// Server ping interval in seconds (fractions allowed, for tests).
    pub heartbeat_s: f64,
    /// A client silent for this long (no frame, no pong) is closed.
    pub client_timeout_s: f64,
    /// Deadline for the first-frame `auth` form.
    pub auth_timeout_s: f64,
    /// Largest accepted `data` object, in bytes of JSON.
    pub max_message_bytes: usize,
    /// Frames queued for one connection before it is closed as a slow consumer.
    pub outbox_max_frames: usize,
    /// Bytes queued for one connection before it is closed as a slow consumer.
    pub outbox_max_bytes: usize,
    /// Most bytes of messages one reply carries (`join` with `since`, `history`); the
    /// rest is fetched page by page. At most a quarter of `outbox_max_bytes` is used.
    pub reply_max_bytes: usize,
    /// Most messages a `join` with `since` returns before answering `recovered:false`.
    pub recovery_limit: i64,
    /// Writes (publish, edit, delete, read markers, joins, signals) per second per
    /// user, over all of the user's connections and HTTP requests on a node; bursts of
    /// twice that. A batch counts per item.
    pub publish_rate: f64,
    /// The same budget for role `publisher` (and `admin`): feeds publish far more.
    pub publisher_rate: f64,
    /// Rooms one user may create per hour (explicitly or by a first join or publish).
    pub rooms_per_hour: u32,
    /// Largest `data` of a `signal` (SDP offers fit; a signal is no file transfer).
    pub signal_max_bytes: usize,
    /// Rings (`signal` of kind `ring`) one user may send another per minute.
    pub rings_per_min: u32,
    /// A call ringing this long unanswered ends as missed.
    pub ring_timeout_s: f64,
    /// WebSocket connections one user may hold open on a node (0: no limit).
    pub max_conns_per_user: u32,
    /// WebSocket connections one client address may hold open on a node (0: no limit).
    pub max_conns_per_address: u32,
    /// WebSocket handshakes one client address may make per minute (in bursts of as
    /// many).
    pub handshakes_per_min_per_address: u32,
    /// Channels one connection may be joined to at once.
    pub max_channels_per_conn: usize,
    /// Hub shards (actors on their own threads); 0 = one per CPU.
    pub hub_shards: usize,
    /// HTTP worker threads; 0 = one per CPU.
    pub workers: usize,
    /// Most publishes the writer commits in one transaction. A batch takes what queued
    /// while the previous one committed, so this limit only matters under overload,
    /// where larger batches write fewer pages per message (benches/writer).
    pub write_batch_max: usize,
    /// Writer queue length; beyond it publishes fail fast with `unavailable`.
    pub write_queue: usize,
    /// Connections in the database pool (readers; the writer has its own).
    pub db_pool_size: u32,
    /// Largest accepted upload, bytes.
    pub max_upload_bytes: usize,
    /// Where uploads are stored (default: `<data_dir>/uploads`).
    pub upload_dir: Option<PathBuf>,
    /// Longest voice message (`audio` with `duration_ms`), seconds.
    pub voice_max_s: f64,
    /// Longest video message, seconds.
    pub video_message_max_s: f64,
    /// ICE servers handed to the browser for calls (`RTCIceServer` objects:
    /// `urls`, optional `username`, `credential`); empty: host candidates only.
    pub ice_servers: Vec<serde_json::Value>,
    /// Bytes of uploads one user may keep.
    pub upload_quota_bytes: u64,
    /// Uploads one user may make per hour.
    pub uploads_per_hour: u32,
    /// Location track: store at most one point per entity per this many seconds ...
    pub track_min_interval_s: f64,
    /// ... unless it moved at least this many metres.
    pub track_min_distance_m: f64,
    /// Locations, track sampling state and known feed channels idle for this long are
    /// forgotten (stored last values and tracks stay).
    pub feed_idle_s: f64,
    /// Token lifetime for tokens issued by `/api/login` and `/api/register`.
    pub token_ttl_s: u64,
    /// Login attempts allowed per minute, per client address and per account.
    pub login_failures_per_min: u32,
    /// Registrations allowed per minute per client address.
    pub registrations_per_min: u32,
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names the client;
    /// from anyone else the header is ignored.
    pub trusted_proxies: Vec<String>,
    /// Mark the session cookie `Secure` (set behind TLS).
    pub cookie_secure: bool,
    /// Namespace policy overrides (`[policies.ticker]` ...), file only.
    pub policies: std::collections::HashMap<String, crate::channels::PolicyOverride>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bind: "127.0.0.1:8080".into(),
            metrics_bind: None,
            log_format: LogFormat::Text,
            data_dir: PathBuf::from("./data"),
            database_url: None,
            redis_url: None,
            cluster_name: "default".into(),
            presence_refresh_s: 10.0,
            jwt_secret: None,
            cluster_secret: None,
            allow_anonymous: None,
            allowed_origins: Vec::new(),
            demo: true,
            heartbeat_s: 25.0,
            client_timeout_s: 60.0,
            auth_timeout_s: 5.0,
            max_message_bytes: 65536,
            outbox_max_frames: 4096,
            outbox_max_bytes: 8 * 1024 * 1024,
            reply_max_bytes: 1024 * 1024,
            recovery_limit: 1000,
            publish_rate: 50.0,
            publisher_rate: 10_000.0,
            rooms_per_hour: 20,
            signal_max_bytes: 16 * 1024,
            rings_per_min: 6,
            ring_timeout_s: 30.0,
            max_conns_per_user: 100,
            max_conns_per_address: 2000,
            handshakes_per_min_per_address: 600,
            max_channels_per_conn: 512,
            hub_shards: 0,
            workers: 0,
            write_batch_max: 4096,
            write_queue: 65536,
            db_pool_size: 8,
            max_upload_bytes: 10 * 1024 * 1024,
            upload_dir: None,
            voice_max_s: 300.0,
            video_message_max_s: 60.0,
            ice_servers: Vec::new(),
            upload_quota_bytes: 1024 * 1024 * 1024,
            uploads_per_hour: 120,
            track_min_interval_s: 5.0,
            track_min_distance_m: 25.0,
            feed_idle_s: 86_400.0,
            token_ttl_s: 30 * 24 * 3600,
            cookie_secure: false,
            login_failures_per_min: 10,
            registrations_per_min: 120,
            trusted_proxies: Vec::new(),
            policies: Default::default(),
        }
    }
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `env_logger`'s lines for people.
    #[default]
    Text,
    /// One JSON object per line: `time`, `level`, `target`, `message`, and the
    /// record's key-values (`session`) where it has them.
    Json,
}

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read (its path, the I/O error).
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The config file is not valid TOML for [`Settings`] (an unknown key, a value of
    /// the wrong type); the TOML error names the key, line and column.
    #[error("bad config file {0}: {1}")]
    Parse(PathBuf, toml::de::Error),
    /// An environment variable's value does not parse or is out of range (the variable's
    /// name, its value).
    #[error("bad value for {0}: {1:?}")]
    Env(&'static str, String),
    /// A value from the config file is out of range (the file, the key, the value).
    #[error("bad value for {1} in config file {0}: {2:?}")]
    File(PathBuf, &'static str, String),
    /// The `[policies.<namespace>]` tables are invalid (an unknown namespace, a contradiction).
    #[error("{0}")]
    Policy(String),
    /// The layers did not combine into settings. Not expected once the file and the
    /// environment were each checked; figment's message names the key and its source.
    #[error("bad configuration: {0}")]
    Merge(Box<figment::Error>),
}

impl Settings {
    /// Defaults, then the file named by `CHAT_CONFIG` (or `chat.toml` if present), then
    /// the environment.
    pub fn load() -> Result<Settings, ConfigError> {
        Settings::load_with_sources().map(|(settings, _)| settings)
    }

    /// As [`Settings::load`], and also where each setting's value came from: its default,
    /// the config file, or an environment variable (see [`Sources`]).
    pub fn load_with_sources() -> Result<(Settings, Sources), ConfigError> {
        let path = std::env::var_os("CHAT_CONFIG")
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from("chat.toml")).filter(|p| p.exists()));
        Settings::layered(path, |k| std::env::var(k).ok())
    }

    /// Defaults, then the TOML file at `file` (if any), then the variables `lookup`
    /// returns (the process environment in [`Settings::load`], a table in tests).
    fn layered(
        file: Option<PathBuf>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(Settings, Sources), ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            figment = figment.merge(ConfigFile::read(path)?);
        }
        let figment = figment.merge(Environment::read(lookup)?);
        let settings: Settings = figment.extract().map_err(|e| ConfigError::Merge(Box::new(e)))?;
        let sources = Sources::of(&figment);
        settings.validate(&sources)?;
        Ok((settings, sources))
    }

    /// Range checks; an error names where the offending value came from.
    fn validate(&self, sources: &Sources) -> Result<(), ConfigError> {
        let pos = |key: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(sources.bad_value(key, v.to_string()))
            }
        };
        pos("heartbeat_s", self.heartbeat_s)?;
        pos("client_timeout_s", self.client_timeout_s)?;
        pos("auth_timeout_s", self.auth_timeout_s)?;
        pos("publish_rate", self.publish_rate)?;
        pos("publisher_rate", self.publisher_rate)?;
        pos("presence_refresh_s", self.presence_refresh_s)?;
        pos("feed_idle_s", self.feed_idle_s)?;
        pos("ring_timeout_s", self.ring_timeout_s)?;
        pos("voice_max_s", self.voice_max_s)?;
        pos("video_message_max_s", self.video_message_max_s)?;
        if let Some(bad) = self.ice_servers.iter().find(|s| !ice_server_ok(s)) {
            return Err(sources.bad_value("ice_servers", bad.to_string()));
        }
        if self.max_message_bytes < 64 {
            return Err(sources.bad_value("max_message_bytes", self.max_message_bytes.to_string()));
        }
        crate::channels::build_policies(&self.policies).map_err(ConfigError::Policy)?;
        if self.jwt_secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(sources.bad_value("jwt_secret", "(hidden: shorter than 32 bytes)".into()));
        }
        if self.cluster_secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(sources.bad_value("cluster_secret", "(hidden: shorter than 32 bytes)".into()));
        }
        for p in &self.trusted_proxies {
            if let Err(e) = p.parse::<crate::net::Cidr>() {
                return Err(sources.bad_value("trusted_proxies", e));
            }
        }
        if self.reply_max_bytes < 1024 {
            return Err(sources.bad_value("reply_max_bytes", self.reply_max_bytes.to_string()));
        }
        if let Some(addr) = &self.metrics_bind {
            if addr.parse::<SocketAddr>().is_err() {
                return Err(sources.bad_value("metrics_bind", addr.clone()));
            }
        }
        if self.outbox_max_frames < 8 {
            return Err(sources.bad_value("outbox_max_frames", self.outbox_max_frames.to_string()));
        }
        Ok(())
    }

    /// Anonymous readers allowed (explicit setting, else on in demo mode).
    pub fn anonymous(&self) -> bool {
        self.allow_anonymous.unwrap_or(self.demo)
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs_f64(self.heartbeat_s)
    }

    pub fn client_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.client_timeout_s)
    }

    pub fn feed_idle(&self) -> Duration {
        Duration::from_secs_f64(self.feed_idle_s)
    }

    pub fn ring_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.ring_timeout_s)
    }

    pub fn auth_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.auth_timeout_s)
    }

    /// The trusted proxies, parsed (checked valid at load).
    pub fn trusted_proxies(&self) -> Vec<crate::net::Cidr> {
        self.trusted_proxies.iter().filter_map(|p| p.parse().ok()).collect()
    }

    /// Where uploads are stored.
    pub fn upload_dir(&self) -> PathBuf {
        self.upload_dir.clone().unwrap_or_else(|| self.data_dir.join("uploads"))
    }

    /// The byte budget of a reply's messages: well under a connection's queue, so that
    /// asking can never get a client closed as a slow consumer.
    pub fn reply_budget(&self) -> usize {
        self.reply_max_bytes.min(self.outbox_max_bytes / 4).max(1024)
    }

    /// Largest WebSocket frame accepted: the data limit plus room for the envelope.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_message_bytes + 4096
    }

    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.bind
            .parse()
            .map_err(|_| ConfigError::Env("CHAT_BIND", self.bind.clone()))
    }

    /// The address of the metrics listener, if it has one of its own (checked valid
    /// at load).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_bind.as_deref().and_then(|a| a.parse().ok())
    }

    pub fn shards(&self) -> usize {
        if self.hub_shards > 0 {
            self.hub_shards
        } else {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
        }
    }
}

/// An `RTCIceServer`: an object whose `urls` is a `stun:`/`turn:`/`turns:` URL or a
/// non-empty list of them.
fn ice_server_ok(v: &serde_json::Value) -> bool {
    let url_ok = |u: &serde_json::Value| {
        u.as_str()
            .is_some_and(|u| ["stun:", "turn:", "turns:"].iter().any(|p| u.starts_with(p)))
    };
    match v.get("urls") {
        Some(serde_json::Value::Array(list)) => !list.is_empty() && list.iter().all(url_ok),
        Some(u) => url_ok(u),
        None => false,
    }
}
