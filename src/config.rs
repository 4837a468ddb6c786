//! Settings: built-in defaults, then an optional TOML file, then `CHAT_*` environment
//! variables (the environment wins). See the README for the full table.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

/// Every knob the server reads at start. Defaults need no setup at all.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP/WebSocket listener binds (`127.0.0.1:0` picks a free port).
    pub bind: String,
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
    /// HS256 secret; generated and kept in the data dir when absent.
    pub jwt_secret: Option<String>,
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
    /// Most messages a `join` with `since` returns before answering `recovered:false`.
    pub recovery_limit: i64,
    /// Publishes (and other writes) per second per connection; bursts of twice that.
    pub publish_rate: f64,
    /// Channels one connection may be joined to at once.
    pub max_channels_per_conn: usize,
    /// Hub shards (actors on their own threads); 0 = one per CPU.
    pub hub_shards: usize,
    /// HTTP worker threads; 0 = one per CPU.
    pub workers: usize,
    /// Most publishes the writer commits in one transaction.
    pub write_batch_max: usize,
    /// Writer queue length; beyond it publishes fail fast with `unavailable`.
    pub write_queue: usize,
    /// Connections in the database pool (readers; the writer has its own).
    pub db_pool_size: u32,
    /// Largest accepted upload, bytes.
    pub max_upload_bytes: usize,
    /// Location track: store at most one point per entity per this many seconds ...
    pub track_min_interval_s: f64,
    /// ... unless it moved at least this many metres.
    pub track_min_distance_m: f64,
    /// Locations, track sampling state and known feed channels idle for this long are
    /// forgotten (stored last values and tracks stay).
    pub feed_idle_s: f64,
    /// Token lifetime for tokens issued by `/api/login` and `/api/register`.
    pub token_ttl_s: u64,
    /// Failed logins allowed per minute, per client address and per account.
    pub login_failures_per_min: u32,
    /// Registrations allowed per minute per client address.
    pub registrations_per_min: u32,
    /// Mark the session cookie `Secure` (set behind TLS).
    pub cookie_secure: bool,
    /// Namespace policy overrides (`[policies.ticker]` ...), file only.
    pub policies: std::collections::HashMap<String, crate::channels::PolicyOverride>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bind: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            redis_url: None,
            cluster_name: "default".into(),
            presence_refresh_s: 10.0,
            jwt_secret: None,
            allow_anonymous: None,
            allowed_origins: Vec::new(),
            demo: true,
            heartbeat_s: 25.0,
            client_timeout_s: 60.0,
            auth_timeout_s: 5.0,
            max_message_bytes: 65536,
            outbox_max_frames: 4096,
            outbox_max_bytes: 8 * 1024 * 1024,
            recovery_limit: 1000,
            publish_rate: 50.0,
            max_channels_per_conn: 512,
            hub_shards: 0,
            workers: 0,
            write_batch_max: 512,
            write_queue: 65536,
            db_pool_size: 8,
            max_upload_bytes: 10 * 1024 * 1024,
            track_min_interval_s: 5.0,
            track_min_distance_m: 25.0,
            feed_idle_s: 86_400.0,
            token_ttl_s: 30 * 24 * 3600,
            cookie_secure: false,
            login_failures_per_min: 10,
            registrations_per_min: 120,
            policies: Default::default(),
        }
    }
}

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("bad config file {0}: {1}")]
    Parse(PathBuf, toml::de::Error),
    #[error("bad value for {0}: {1:?}")]
    Env(&'static str, String),
    #[error("{0}")]
    Policy(String),
}

impl Settings {
    /// Defaults, then the file named by `CHAT_CONFIG` (or `chat.toml` if present), then
    /// the environment.
    pub fn load() -> Result<Settings, ConfigError> {
        let path = std::env::var_os("CHAT_CONFIG")
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from("chat.toml")).filter(|p| p.exists()));
        let mut s = match path {
            Some(p) => {
                let text = std::fs::read_to_string(&p).map_err(|e| ConfigError::Read(p.clone(), e))?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse(p, e))?
            }
            None => Settings::default(),
        };
        s.apply_env(|k| std::env::var(k).ok())?;
        Ok(s)
    }

    /// Overrides from `CHAT_*` variables (and `DATABASE_URL`, `REDIS_URL`).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(k: &'static str, v: String) -> Result<T, ConfigError> {
            v.trim().parse().map_err(|_| ConfigError::Env(k, v))
        }
        fn boolean(k: &'static str, v: String) -> Result<bool, ConfigError> {
            match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" | "" => Ok(false),
                _ => Err(ConfigError::Env(k, v)),
            }
        }
        macro_rules! env {
            ($k:literal, $f:ident, $conv:expr) => {
                if let Some(v) = get($k) {
                    self.$f = $conv($k, v)?;
                }
            };
        }
        env!("CHAT_BIND", bind, |_, v: String| Ok::<_, ConfigError>(v));
        env!("CHAT_DATA_DIR", data_dir, |_, v: String| Ok::<_, ConfigError>(
            PathBuf::from(v)
        ));
        env!("DATABASE_URL", database_url, |_, v: String| Ok::<_, ConfigError>(
            Some(v).filter(|v| !v.is_empty())
        ));
        env!("REDIS_URL", redis_url, |_, v: String| Ok::<_, ConfigError>(
            Some(v).filter(|v| !v.is_empty())
        ));
        env!("CHAT_CLUSTER_NAME", cluster_name, |_, v: String| Ok::<_, ConfigError>(
            v
        ));
        env!("CHAT_PRESENCE_REFRESH_S", presence_refresh_s, parse);
        env!("CHAT_JWT_SECRET", jwt_secret, |_, v: String| Ok::<_, ConfigError>(
            Some(v).filter(|v| !v.is_empty())
        ));
        env!("CHAT_ALLOW_ANONYMOUS", allow_anonymous, |k, v| boolean(k, v).map(Some));
        env!("CHAT_ALLOWED_ORIGINS", allowed_origins, |_, v: String| Ok::<
            _,
            ConfigError,
        >(
            v.split(',')
                .map(|s| s.trim().trim_end_matches('/').to_string())
                .filter(|s| !s.is_empty())
                .collect()
        ));
        env!("CHAT_DEMO", demo, boolean);
        env!("CHAT_HEARTBEAT_S", heartbeat_s, parse);
        env!("CHAT_CLIENT_TIMEOUT_S", client_timeout_s, parse);
        env!("CHAT_AUTH_TIMEOUT_S", auth_timeout_s, parse);
        env!("CHAT_MAX_MESSAGE_BYTES", max_message_bytes, parse);
        env!("CHAT_OUTBOX_MAX_FRAMES", outbox_max_frames, parse);
        env!("CHAT_OUTBOX_MAX_BYTES", outbox_max_bytes, parse);
        env!("CHAT_RECOVERY_LIMIT", recovery_limit, parse);
        env!("CHAT_PUBLISH_RATE", publish_rate, parse);
        env!("CHAT_MAX_CHANNELS_PER_CONN", max_channels_per_conn, parse);
        env!("CHAT_HUB_SHARDS", hub_shards, parse);
        env!("CHAT_WORKERS", workers, parse);
        env!("CHAT_WRITE_BATCH_MAX", write_batch_max, parse);
        env!("CHAT_WRITE_QUEUE", write_queue, parse);
        env!("CHAT_DB_POOL_SIZE", db_pool_size, parse);
        env!("CHAT_MAX_UPLOAD_BYTES", max_upload_bytes, parse);
        env!("CHAT_TRACK_MIN_INTERVAL_S", track_min_interval_s, parse);
        env!("CHAT_TRACK_MIN_DISTANCE_M", track_min_distance_m, parse);
        env!("CHAT_FEED_IDLE_S", feed_idle_s, parse);
        env!("CHAT_TOKEN_TTL_S", token_ttl_s, parse);
        env!("CHAT_COOKIE_SECURE", cookie_secure, boolean);
        env!("CHAT_LOGIN_FAILURES_PER_MIN", login_failures_per_min, parse);
        env!("CHAT_REGISTRATIONS_PER_MIN", registrations_per_min, parse);
        self.validate()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let pos = |k: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(ConfigError::Env(k, v.to_string()))
            }
        };
        pos("CHAT_HEARTBEAT_S", self.heartbeat_s)?;
        pos("CHAT_CLIENT_TIMEOUT_S", self.client_timeout_s)?;
        pos("CHAT_AUTH_TIMEOUT_S", self.auth_timeout_s)?;
        pos("CHAT_PUBLISH_RATE", self.publish_rate)?;
        pos("CHAT_PRESENCE_REFRESH_S", self.presence_refresh_s)?;
        pos("CHAT_FEED_IDLE_S", self.feed_idle_s)?;
        if self.max_message_bytes < 64 {
            return Err(ConfigError::Env(
                "CHAT_MAX_MESSAGE_BYTES",
                self.max_message_bytes.to_string(),
            ));
        }
        crate::channels::build_policies(&self.policies).map_err(ConfigError::Policy)?;
        if self.outbox_max_frames < 8 {
            return Err(ConfigError::Env(
                "CHAT_OUTBOX_MAX_FRAMES",
                self.outbox_max_frames.to_string(),
            ));
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

    pub fn auth_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.auth_timeout_s)
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

    pub fn shards(&self) -> usize {
        if self.hub_shards > 0 {
            self.hub_shards
        } else {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_defaults() {
        let mut s = Settings::default();
        s.apply_env(|k| match k {
            "CHAT_BIND" => Some("127.0.0.1:0".into()),
            "CHAT_HEARTBEAT_S" => Some("0.5".into()),
            "CHAT_ALLOW_ANONYMOUS" => Some("yes".into()),
            "CHAT_ALLOWED_ORIGINS" => Some("https://a.example, https://b.example/".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.bind, "127.0.0.1:0");
        assert_eq!(s.heartbeat(), Duration::from_millis(500));
        assert!(s.anonymous());
        assert_eq!(s.allowed_origins, vec!["https://a.example", "https://b.example"]);
    }

    #[test]
    fn bad_values_are_errors() {
        let mut s = Settings::default();
        assert!(s
            .apply_env(|k| (k == "CHAT_HEARTBEAT_S").then(|| "abc".into()))
            .is_err());
        let mut s = Settings::default();
        assert!(s.apply_env(|k| (k == "CHAT_DEMO").then(|| "maybe".into())).is_err());
    }

    #[test]
    fn file_form_parses() {
        let s: Settings = toml::from_str("bind = \"0.0.0.0:9000\"\ndemo = false\n").unwrap();
        assert_eq!(s.bind, "0.0.0.0:9000");
        assert!(!s.demo);
        assert!(!s.anonymous());
    }
}
