//! Settings: built-in defaults, then an optional TOML file, then `CHAT_*` environment
//! variables (the environment wins). See the README for the full table.
//!
//! The layers are combined with [figment]: the file and the environment are each a
//! [`Provider`], merged in that order over the defaults that `#[serde(default)]` supplies,
//! and figment's metadata tells which layer each value came from
//! ([`Settings::load_with_sources`]).

use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use figment::{
    providers::{Format, Toml},
    value::{Dict, Empty, Map, Value},
    Figment, Metadata, Profile, Provider,
};
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
        pos("presence_refresh_s", self.presence_refresh_s)?;
        pos("feed_idle_s", self.feed_idle_s)?;
        if self.max_message_bytes < 64 {
            return Err(sources.bad_value("max_message_bytes", self.max_message_bytes.to_string()));
        }
        crate::channels::build_policies(&self.policies).map_err(ConfigError::Policy)?;
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

/// Where a setting's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Nothing set it: the built-in default.
    Default,
    /// The TOML config file at this path.
    File(PathBuf),
    /// The environment variable of this name.
    Env(&'static str),
}

impl fmt::Display for Source {
    /// `default`, `file <path>` or `env <VARIABLE>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Env(name) => write!(f, "env {name}"),
        }
    }
}

/// Where every setting came from: one `(key, source)` pair per field of [`Settings`], in
/// declaration order, keys spelled as in the config file (`bind`, `heartbeat_s`, ...,
/// `policies`). It holds sources only, never values, so it is safe to show in full (the
/// JWT secret's source included).
///
/// ```no_run
/// use chatserver::config::Settings;
///
/// let (_settings, sources) = Settings::load_with_sources()?;
/// for (key, source) in &sources {
///     println!("{key:24} {source}");
/// }
/// # Ok::<(), chatserver::config::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources(Vec<(&'static str, Source)>);

/// Iterator over the `(key, source)` pairs of [`Sources`] (from [`Sources::iter`]).
#[derive(Debug, Clone)]
pub struct SourcesIter<'a>(std::slice::Iter<'a, (&'static str, Source)>);

impl<'a> Iterator for SourcesIter<'a> {
    type Item = (&'static str, &'a Source);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(key, source)| (*key, source))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for SourcesIter<'_> {}

impl Sources {
    /// The source of the setting `key`; `None` when `key` is not a setting.
    pub fn get(&self, key: &str) -> Option<&Source> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, source)| source)
    }

    /// Every `(key, source)` pair, in the declaration order of [`Settings`].
    pub fn iter(&self) -> SourcesIter<'_> {
        SourcesIter(self.0.iter())
    }

    /// Reads the sources off the figment's metadata: the provider whose value won for
    /// each key; a key no provider set has its default.
    fn of(figment: &Figment) -> Sources {
        let keys = VARS.iter().map(|var| var.key).chain(FILE_ONLY_KEYS.iter().copied());
        Sources(keys.map(|key| (key, source_of(figment, key))).collect())
    }

    /// The error for `key`'s `value` failing validation, naming where it came from.
    fn bad_value(&self, key: &'static str, value: String) -> ConfigError {
        match self.get(key) {
            Some(Source::File(path)) => ConfigError::File(path.clone(), key, value),
            Some(Source::Env(name)) => ConfigError::Env(name, value),
            // Defaults are valid; should one not be, name the variable that overrides it.
            _ => ConfigError::Env(var_for(key).map_or(key, |var| var.name), value),
        }
    }
}

impl<'a> IntoIterator for &'a Sources {
    type Item = (&'static str, &'a Source);
    type IntoIter = SourcesIter<'a>;

    fn into_iter(self) -> SourcesIter<'a> {
        self.iter()
    }
}

/// The source of `key` in `figment`: the config file or the environment provider, whichever
/// supplied the value that won; the default when neither did.
fn source_of(figment: &Figment, key: &'static str) -> Source {
    let Some(metadata) = figment.find_metadata(key) else {
        return Source::Default;
    };
    if let Some(path) = metadata.source.as_ref().and_then(|s| s.file_path()) {
        return Source::File(path.to_path_buf());
    }
    match var_for(key) {
        Some(var) if metadata.name == ENVIRONMENT => Source::Env(var.name),
        _ => Source::Default,
    }
}

/// The config file layer: the file's text, checked and parsed as TOML, with metadata
/// naming its path.
struct ConfigFile {
    path: PathBuf,
    text: String,
}

impl ConfigFile {
    /// Reads the file and checks it on its own: unknown keys and values of the wrong type
    /// are errors even where the environment would override them.
    fn read(path: PathBuf) -> Result<ConfigFile, ConfigError> {
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
struct Var {
    name: &'static str,
    key: &'static str,
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

/// A comma-separated list of origins; trailing `/` trimmed, empty entries dropped.
fn origins(v: &str) -> Option<Value> {
    let list: Vec<String> = v
        .split(',')
        .map(|s| s.trim().trim_end_matches('/').to_string())
        .filter(|s| !s.is_empty())
        .collect();
    Some(list.into())
}

/// Every setting's environment variable, in the declaration order of [`Settings`]
/// (except the [`FILE_ONLY_KEYS`], which have none and come last).
const VARS: &[Var] = &[
    var("CHAT_BIND", "bind", text),
    var("CHAT_DATA_DIR", "data_dir", text),
    var("DATABASE_URL", "database_url", text_or_unset),
    var("REDIS_URL", "redis_url", text_or_unset),
    var("CHAT_CLUSTER_NAME", "cluster_name", text),
    var("CHAT_PRESENCE_REFRESH_S", "presence_refresh_s", number::<f64>),
    var("CHAT_JWT_SECRET", "jwt_secret", text_or_unset),
    var("CHAT_ALLOW_ANONYMOUS", "allow_anonymous", boolean),
    var("CHAT_ALLOWED_ORIGINS", "allowed_origins", origins),
    var("CHAT_DEMO", "demo", boolean),
    var("CHAT_HEARTBEAT_S", "heartbeat_s", number::<f64>),
    var("CHAT_CLIENT_TIMEOUT_S", "client_timeout_s", number::<f64>),
    var("CHAT_AUTH_TIMEOUT_S", "auth_timeout_s", number::<f64>),
    var("CHAT_MAX_MESSAGE_BYTES", "max_message_bytes", number::<usize>),
    var("CHAT_OUTBOX_MAX_FRAMES", "outbox_max_frames", number::<usize>),
    var("CHAT_OUTBOX_MAX_BYTES", "outbox_max_bytes", number::<usize>),
    var("CHAT_RECOVERY_LIMIT", "recovery_limit", number::<i64>),
    var("CHAT_PUBLISH_RATE", "publish_rate", number::<f64>),
    var("CHAT_MAX_CHANNELS_PER_CONN", "max_channels_per_conn", number::<usize>),
    var("CHAT_HUB_SHARDS", "hub_shards", number::<usize>),
    var("CHAT_WORKERS", "workers", number::<usize>),
    var("CHAT_WRITE_BATCH_MAX", "write_batch_max", number::<usize>),
    var("CHAT_WRITE_QUEUE", "write_queue", number::<usize>),
    var("CHAT_DB_POOL_SIZE", "db_pool_size", number::<u32>),
    var("CHAT_MAX_UPLOAD_BYTES", "max_upload_bytes", number::<usize>),
    var("CHAT_TRACK_MIN_INTERVAL_S", "track_min_interval_s", number::<f64>),
    var("CHAT_TRACK_MIN_DISTANCE_M", "track_min_distance_m", number::<f64>),
    var("CHAT_FEED_IDLE_S", "feed_idle_s", number::<f64>),
    var("CHAT_TOKEN_TTL_S", "token_ttl_s", number::<u64>),
    var("CHAT_LOGIN_FAILURES_PER_MIN", "login_failures_per_min", number::<u32>),
    var("CHAT_REGISTRATIONS_PER_MIN", "registrations_per_min", number::<u32>),
    var("CHAT_COOKIE_SECURE", "cookie_secure", boolean),
];

/// Settings only the config file sets.
const FILE_ONLY_KEYS: &[&str] = &["policies"];

/// The variable that sets `key`, if any.
fn var_for(key: &str) -> Option<&'static Var> {
    VARS.iter().find(|v| v.key == key)
}

/// The environment layer: the variables of [`VARS`] that are set, already parsed into
/// values of their settings' types. (figment's own `Env` provider would guess types
/// instead, turning a digits-only secret into a number.)
struct Environment {
    values: Vec<(&'static Var, Value)>,
}

impl Environment {
    /// Reads every known variable through `lookup`; the first bad value is an error naming
    /// its variable.
    fn read(lookup: impl Fn(&str) -> Option<String>) -> Result<Environment, ConfigError> {
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
const ENVIRONMENT: &str = "environment variable";

#[cfg(test)]
mod tests {
    use super::*;

    /// An environment holding just `pairs`.
    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(name, _)| *name == k).map(|(_, v)| v.to_string())
    }

    /// A config file holding `text`; it lives as long as the returned directory.
    fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn from_env(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::layered(None, env(pairs)).map(|(s, _)| s)
    }

    #[test]
    fn env_overrides_defaults() {
        let (s, _) = Settings::layered(None, |k| match k {
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
        assert!(Settings::layered(None, |k| (k == "CHAT_HEARTBEAT_S").then(|| "abc".into())).is_err());
        assert!(Settings::layered(None, |k| (k == "CHAT_DEMO").then(|| "maybe".into())).is_err());
    }

    #[test]
    fn file_form_parses() {
        let s: Settings = toml::from_str("bind = \"0.0.0.0:9000\"\ndemo = false\n").unwrap();
        assert_eq!(s.bind, "0.0.0.0:9000");
        assert!(!s.demo);
        assert!(!s.anonymous());
    }

    #[test]
    fn file_then_env_precedence() {
        let (_dir, path) = config_file(
            "bind = \"0.0.0.0:9000\"\nheartbeat_s = 2.0\nworkers = 3\ndemo = false\n\
             allowed_origins = [\"https://file.example\"]\n\n[policies.room]\nhistory_on_join = 3\n",
        );
        let (s, _) = Settings::layered(
            Some(path),
            env(&[
                ("CHAT_BIND", "127.0.0.1:0"),
                ("CHAT_WORKERS", "5"),
                ("CHAT_ALLOWED_ORIGINS", ""),
            ]),
        )
        .unwrap();
        // The environment over the file ...
        assert_eq!(s.bind, "127.0.0.1:0");
        assert_eq!(s.workers, 5);
        assert!(s.allowed_origins.is_empty());
        // ... the file over the defaults ...
        assert_eq!(s.heartbeat_s, 2.0);
        assert!(!s.demo);
        assert_eq!(s.policies["room"].history_on_join, Some(3));
        // ... and defaults for the rest.
        assert_eq!(s.cluster_name, "default");
        assert_eq!(s.client_timeout_s, 60.0);
    }

    #[test]
    fn sources_name_the_default_the_file_and_the_variable() {
        let (_dir, path) =
            config_file("bind = \"0.0.0.0:9000\"\nheartbeat_s = 2.0\n[policies.room]\nconflate = false\n");
        let (_, sources) = Settings::layered(
            Some(path.clone()),
            env(&[
                ("CHAT_BIND", "127.0.0.1:0"),
                ("CHAT_JWT_SECRET", "s3cret"),
                ("DATABASE_URL", ""),
            ]),
        )
        .unwrap();
        assert_eq!(sources.get("bind"), Some(&Source::Env("CHAT_BIND")));
        assert_eq!(sources.get("jwt_secret"), Some(&Source::Env("CHAT_JWT_SECRET")));
        assert_eq!(sources.get("database_url"), Some(&Source::Env("DATABASE_URL")));
        assert_eq!(sources.get("heartbeat_s"), Some(&Source::File(path.clone())));
        assert_eq!(sources.get("policies"), Some(&Source::File(path.clone())));
        assert_eq!(sources.get("demo"), Some(&Source::Default));
        assert_eq!(sources.get("no_such_setting"), None);

        assert_eq!(sources.get("bind").unwrap().to_string(), "env CHAT_BIND");
        assert_eq!(
            sources.get("heartbeat_s").unwrap().to_string(),
            format!("file {}", path.display())
        );
        assert_eq!(sources.get("demo").unwrap().to_string(), "default");
        // Sources only: no values.
        assert!(!format!("{sources:?}").contains("s3cret"));
    }

    #[test]
    fn sources_cover_every_setting_in_order() {
        // serde lists the fields of `Settings` when it meets an unknown one.
        let fields = match Figment::from(("no_such_setting", 0)).extract::<Settings>() {
            Err(e) => match e.kind {
                figment::error::Kind::UnknownField(_, fields) => fields,
                kind => panic!("{kind:?}"),
            },
            Ok(_) => panic!("unknown key accepted"),
        };
        let (_, sources) = Settings::layered(None, |_| None).unwrap();
        let keys: Vec<&str> = sources.iter().map(|(key, _)| key).collect();
        assert_eq!(keys, fields);
        assert!((&sources).into_iter().all(|(_, source)| *source == Source::Default));
        // Every variable sets a setting of that name.
        let (_, sources) = Settings::layered(None, |k| {
            VARS.iter().find(|v| v.name == k).map(|v| sample(v.key).into())
        })
        .unwrap();
        for var in VARS {
            assert_eq!(sources.get(var.key), Some(&Source::Env(var.name)));
        }
    }

    /// A valid value for the setting `key`, as an environment variable's text.
    fn sample(key: &str) -> &'static str {
        match key {
            "bind" => "127.0.0.1:0",
            "data_dir" | "cluster_name" | "jwt_secret" => "x",
            "database_url" => "sqlite://x.db",
            "redis_url" => "redis://localhost",
            "allowed_origins" => "https://a.example",
            "allow_anonymous" | "demo" | "cookie_secure" => "true",
            _ => "100",
        }
    }

    #[test]
    fn digits_only_values_stay_strings() {
        let s = from_env(&[
            ("CHAT_JWT_SECRET", "0123456789"),
            ("CHAT_BIND", "8080"),
            ("CHAT_CLUSTER_NAME", "true"),
            ("CHAT_DATA_DIR", "2024"),
        ])
        .unwrap();
        assert_eq!(s.jwt_secret.as_deref(), Some("0123456789"));
        assert_eq!(s.bind, "8080");
        assert_eq!(s.cluster_name, "true");
        assert_eq!(s.data_dir, PathBuf::from("2024"));
    }

    #[test]
    fn boolean_forms() {
        let forms = [
            ("1", true),
            ("true", true),
            ("yes", true),
            ("on", true),
            ("TRUE", true),
            (" Yes ", true),
            ("0", false),
            ("false", false),
            ("no", false),
            ("off", false),
            ("Off", false),
            ("", false),
        ];
        for (text, want) in forms {
            let s = from_env(&[
                ("CHAT_DEMO", text),
                ("CHAT_COOKIE_SECURE", text),
                ("CHAT_ALLOW_ANONYMOUS", text),
            ])
            .unwrap();
            assert_eq!(
                (s.demo, s.cookie_secure, s.allow_anonymous),
                (want, want, Some(want)),
                "{text:?}"
            );
        }
        for text in ["maybe", "2", "y", "enabled"] {
            let err = from_env(&[("CHAT_COOKIE_SECURE", text)]).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Env("CHAT_COOKIE_SECURE", v) if v == text),
                "{err:?}"
            );
        }
    }

    #[test]
    fn numbers_and_lists_parse_from_text() {
        let s = from_env(&[
            ("CHAT_WORKERS", " 4 "),
            ("CHAT_PUBLISH_RATE", "12.5"),
            ("CHAT_RECOVERY_LIMIT", "-5"),
            ("CHAT_TOKEN_TTL_S", "60"),
            ("CHAT_ALLOWED_ORIGINS", " , https://c.example//,"),
        ])
        .unwrap();
        assert_eq!(s.workers, 4);
        assert_eq!(s.publish_rate, 12.5);
        assert_eq!(s.recovery_limit, -5);
        assert_eq!(s.token_ttl_s, 60);
        assert_eq!(s.allowed_origins, vec!["https://c.example"]);
    }

    #[test]
    fn empty_urls_and_secret_mean_unset() {
        let (_dir, path) = config_file(
            "database_url = \"sqlite://file.db\"\nredis_url = \"redis://file\"\njwt_secret = \"from-file\"\n",
        );
        let (s, _) = Settings::layered(Some(path.clone()), |_| None).unwrap();
        assert_eq!(s.database_url.as_deref(), Some("sqlite://file.db"));
        let (s, _) = Settings::layered(
            Some(path),
            env(&[("DATABASE_URL", ""), ("REDIS_URL", ""), ("CHAT_JWT_SECRET", "")]),
        )
        .unwrap();
        assert_eq!((s.database_url, s.redis_url, s.jwt_secret), (None, None, None));
        let s = from_env(&[("DATABASE_URL", "postgres://db/chat")]).unwrap();
        assert_eq!(s.database_url.as_deref(), Some("postgres://db/chat"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        // Values that do not parse: the error carries the text as given.
        let unparsable = [
            ("CHAT_HEARTBEAT_S", "abc"),
            ("CHAT_WORKERS", "-1"),
            ("CHAT_WORKERS", "1.5"),
            ("CHAT_DB_POOL_SIZE", "4294967296"),
            ("CHAT_PUBLISH_RATE", ""),
            ("CHAT_DEMO", "maybe"),
        ];
        for (name, text) in unparsable {
            let err = from_env(&[(name, text)]).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Env(n, v) if *n == name && v == text),
                "{err:?}"
            );
            assert!(err.to_string().contains(name), "{err}");
        }
        // Values out of range.
        let out_of_range = [
            ("CHAT_HEARTBEAT_S", "0"),
            ("CHAT_CLIENT_TIMEOUT_S", "-1"),
            ("CHAT_PRESENCE_REFRESH_S", "inf"),
            ("CHAT_MAX_MESSAGE_BYTES", "63"),
            ("CHAT_OUTBOX_MAX_FRAMES", "7"),
        ];
        for (name, text) in out_of_range {
            let err = from_env(&[(name, text)]).unwrap_err();
            assert!(matches!(&err, ConfigError::Env(n, _) if *n == name), "{err:?}");
        }
    }

    #[test]
    fn file_errors_name_the_file_and_key() {
        // Out of range: names the key, not a variable nobody set.
        let (_dir, path) = config_file("heartbeat_s = 0\n");
        let err = Settings::layered(Some(path.clone()), |_| None).unwrap_err();
        assert!(
            matches!(&err, ConfigError::File(p, "heartbeat_s", v) if *p == path && v == "0"),
            "{err:?}"
        );
        // ... unless the environment overrides it.
        let (s, _) = Settings::layered(Some(path), env(&[("CHAT_HEARTBEAT_S", "1")])).unwrap();
        assert_eq!(s.heartbeat_s, 1.0);

        // Unknown keys.
        let (_dir, path) = config_file("heartbeat = 1\n");
        let err = Settings::layered(Some(path), |_| None).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Parse(..)) && err.to_string().contains("heartbeat"),
            "{err}"
        );

        // A mistyped value is an error even where the environment overrides it.
        let (_dir, path) = config_file("workers = \"four\"\n");
        let err = Settings::layered(Some(path), env(&[("CHAT_WORKERS", "4")])).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Parse(..)) && err.to_string().contains("workers"),
            "{err}"
        );

        // A named file that is missing.
        let err = Settings::layered(Some("/nonexistent/chat.toml".into()), |_| None).unwrap_err();
        assert!(matches!(&err, ConfigError::Read(..)), "{err:?}");
    }
}
