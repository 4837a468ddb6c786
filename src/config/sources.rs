//! Where each setting's effective value came from.

use std::{fmt, path::PathBuf};

use figment::Figment;

use super::{
    layers::{var_for, ENVIRONMENT, FILE_ONLY_KEYS, VARS},
    ConfigError,
};

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
    pub(super) fn of(figment: &Figment) -> Sources {
        let keys = VARS.iter().map(|var| var.key).chain(FILE_ONLY_KEYS.iter().copied());
        Sources(keys.map(|key| (key, source_of(figment, key))).collect())
    }

    /// The error for `key`'s `value` failing validation, naming where it came from.
    pub(super) fn bad_value(&self, key: &'static str, value: String) -> ConfigError {
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
