//! The layers over the defaults: the config file and the environment variables.

use std::{path::PathBuf, str::FromStr};

use figment::{
    providers::{Format, Toml},
    value::{Dict, Empty, Map, Value},
    Metadata, Profile, Provider,
};

use super::{ConfigError, Settings};

/// The config file layer: the file's text, checked and parsed as TOML, with metadata
/// naming its path.
pub(super) struct ConfigFile {
    path: PathBuf,
    text: String,
}

impl ConfigFile {
    /// Reads the file and checks it on its own: unknown keys and values of the wrong type
    /// are errors even where the environment would override them.
    pub(super) fn read(path: PathBuf) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Read(path.clone(), e))?;
        if let Err(e) = toml::from_str::<Settings>(&text) {
            return Err(ConfigError::Parse(path, e));
        }
        Ok(ConfigFile { path, text })
    }
}

impl Provider for ConfigFile {
    fn metadata(&self) -> Metadata {
        Metadata::from("TOML file", self.path.as_path())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Toml::string(&self.text).data()
    }
}

/// One environment variable: the setting it sets and how its text becomes a value.
pub(super) struct Var {
    pub(super) name: &'static str,
    pub(super) key: &'static str,
    /// The value for the variable's text, `None` when the text is not a valid value.
    parse: fn(&str) -> Option<Value>,
}

/// A table row (keeps the table below one line per variable).
const fn var(name: &'static str, key: &'static str, parse: fn(&str) -> Option<Value>) -> Var {
    Var { name, key, parse }
}

/// The text as it is (bind address, paths, names: digits stay a string).
fn text(v: &str) -> Option<Value> {
    Some(v.into())
}

/// The text as it is; the empty string means "unset".
fn text_or_unset(v: &str) -> Option<Value> {
    Some(match v {
        "" => Empty::None.into(),
        v => v.into(),
    })
}

/// A number of type `T` (surrounding spaces ignored).
fn number<T: FromStr + Into<Value>>(v: &str) -> Option<Value> {
    v.trim().parse::<T>().ok().map(Into::into)
}

/// `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off` in any case; the empty string is false.
fn boolean(v: &str) -> Option<Value> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true.into()),
        "0" | "false" | "no" | "off" | "" => Some(false.into()),
        _ => None,
    }
}

/// `text` or `json` (any case).
fn log_format(v: &str) -> Option<Value> {
    match v.trim().to_ascii_lowercase().as_str() {
        f @ ("text" | "json") => Some(f.into()),
        _ => None,
    }
}

/// A comma-separated list of origins; trailing `/` trimmed, empty entries dropped.
fn origins(v: &str) -> Option<Value> {
    let list: Vec<String> = v
        .split(',')
        .map(|s| s.trim().trim_end_matches('/').to_string())
        .filter(|s| !s.is_empty())
        .collect();
    Some(list.into())
}

/// A JSON value (`CHAT_ICE_SERVERS`: an array of objects).
fn json(v: &str) -> Option<Value> {
    let j: serde_json::Value = serde_json::from_str(v).ok()?;
    Value::serialize(j).ok()
}

/// A comma-separated list (empty entries dropped).
fn list(v: &str) -> Option<Value> {
    let list: Vec<String> = v
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    Some(list.into())
}

/// Every setting's environment variable, in the declaration order of [`Settings`]
/// (except the [`FILE_ONLY_KEYS`], which have none and come last).
pub(super) const VARS: &[Var] = &[
    var("CHAT_BIND", "bind", text),
    var("CHAT_METRICS_BIND", "metrics_bind", text_or_unset),
    var("CHAT_LOG_FORMAT", "log_format", log_format),
    var("CHAT_DATA_DIR", "data_dir", text),
    var("DATABASE_URL", "database_url", text_or_unset),
    var("REDIS_URL", "redis_url", text_or_unset),
    var("CHAT_CLUSTER_NAME", "cluster_name", text),
    var("CHAT_PRESENCE_REFRESH_S", "presence_refresh_s", number::<f64>),
    var("CHAT_JWT_SECRET", "jwt_secret", text_or_unset),
    var("CHAT_CLUSTER_SECRET", "cluster_secret", text_or_unset),
    var("CHAT_ALLOW_ANONYMOUS", "allow_anonymous", boolean),
    var("CHAT_ALLOWED_ORIGINS", "allowed_origins", origins),
    var("CHAT_DEMO", "demo", boolean),
    var("CHAT_HEARTBEAT_S", "heartbeat_s", number::<f64>),
    var("CHAT_CLIENT_TIMEOUT_S", "client_timeout_s", number::<f64>),
    var("CHAT_AUTH_TIMEOUT_S", "auth_timeout_s", number::<f64>),
    var("CHAT_MAX_MESSAGE_BYTES", "max_message_bytes", number::<usize>),
    var("CHAT_OUTBOX_MAX_FRAMES", "outbox_max_frames", number::<usize>),
    var("CHAT_OUTBOX_MAX_BYTES", "outbox_max_bytes", number::<usize>),
    var("CHAT_REPLY_MAX_BYTES", "reply_max_bytes", number::<usize>),
    var("CHAT_RECOVERY_LIMIT", "recovery_limit", number::<i64>),
    var("CHAT_PUBLISH_RATE", "publish_rate", number::<f64>),
    var("CHAT_PUBLISHER_RATE", "publisher_rate", number::<f64>),
    var("CHAT_ROOMS_PER_HOUR", "rooms_per_hour", number::<u32>),
    var("CHAT_SIGNAL_MAX_BYTES", "signal_max_bytes", number::<usize>),
    var("CHAT_RINGS_PER_MIN", "rings_per_min", number::<u32>),
    var("CHAT_RING_TIMEOUT_S", "ring_timeout_s", number::<f64>),
    var("CHAT_MAX_CONNS_PER_USER", "max_conns_per_user", number::<u32>),
    var("CHAT_MAX_CONNS_PER_ADDRESS", "max_conns_per_address", number::<u32>),
    var(
        "CHAT_HANDSHAKES_PER_MIN_PER_ADDRESS",
        "handshakes_per_min_per_address",
        number::<u32>,
    ),
    var("CHAT_MAX_CHANNELS_PER_CONN", "max_channels_per_conn", number::<usize>),
    var("CHAT_HUB_SHARDS", "hub_shards", number::<usize>),
    var("CHAT_WORKERS", "workers", number::<usize>),
    var("CHAT_WRITE_BATCH_MAX", "write_batch_max", number::<usize>),
    var("CHAT_WRITE_QUEUE", "write_queue", number::<usize>),
    var("CHAT_DB_POOL_SIZE", "db_pool_size", number::<u32>),
    var("CHAT_MAX_UPLOAD_BYTES", "max_upload_bytes", number::<usize>),
    var("CHAT_UPLOAD_DIR", "upload_dir", text),
    var("CHAT_VOICE_MAX_S", "voice_max_s", number::<f64>),
    var("CHAT_VIDEO_MESSAGE_MAX_S", "video_message_max_s", number::<f64>),
    var("CHAT_ICE_SERVERS", "ice_servers", json),
    var("CHAT_UPLOAD_QUOTA_BYTES", "upload_quota_bytes", number::<u64>),
    var("CHAT_UPLOADS_PER_HOUR", "uploads_per_hour", number::<u32>),
    var("CHAT_TRACK_MIN_INTERVAL_S", "track_min_interval_s", number::<f64>),
    var("CHAT_TRACK_MIN_DISTANCE_M", "track_min_distance_m", number::<f64>),
    var("CHAT_FEED_IDLE_S", "feed_idle_s", number::<f64>),
    var("CHAT_TOKEN_TTL_S", "token_ttl_s", number::<u64>),
    var("CHAT_LOGIN_FAILURES_PER_MIN", "login_failures_per_min", number::<u32>),
    var("CHAT_REGISTRATIONS_PER_MIN", "registrations_per_min", number::<u32>),
    var("CHAT_TRUSTED_PROXIES", "trusted_proxies", list),
    var("CHAT_COOKIE_SECURE", "cookie_secure", boolean),
];

/// Settings only the config file sets.
pub(super) const FILE_ONLY_KEYS: &[&str] = &["policies"];

/// The variable that sets `key`, if any.
pub(super) fn var_for(key: &str) -> Option<&'static Var> {
    VARS.iter().find(|v| v.key == key)
}

/// The environment layer: the variables of [`VARS`] that are set, already parsed into
/// values of their settings' types. (figment's own `Env` provider would guess types
/// instead, turning a digits-only secret into a number.)
pub(super) struct Environment {
    values: Vec<(&'static Var, Value)>,
}

impl Environment {
    /// Reads every known variable through `lookup`; the first bad value is an error naming
    /// its variable.
    pub(super) fn read(lookup: impl Fn(&str) -> Option<String>) -> Result<Environment, ConfigError> {
        let mut values = Vec::new();
        for var in VARS {
            if let Some(raw) = lookup(var.name) {
                match (var.parse)(&raw) {
                    Some(value) => values.push((var, value)),
                    None => return Err(ConfigError::Env(var.name, raw)),
                }
            }
        }
        Ok(Environment { values })
    }
}

/// Shows a key path as the variable that sets it (for figment's error messages).
fn var_name(_: &Profile, keys: &[&str]) -> String {
    match keys {
        [key] => var_for(key).map_or_else(|| key.to_string(), |v| v.name.to_string()),
        _ => keys.join("."),
    }
}

impl Provider for Environment {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENVIRONMENT).interpolater(var_name)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let dict = self
            .values
            .iter()
            .map(|(var, value)| (var.key.to_string(), value.clone()))
            .collect();
        Ok(Profile::Default.collect(dict))
    }
}

/// The name of the environment layer in figment's metadata.
pub(super) const ENVIRONMENT: &str = "environment variable";
