//! `chatserver config check`: loads the configuration as `serve` would (defaults, the
//! config file, the environment), prints every setting with its effective value and
//! where it came from (secrets hidden), and exits non-zero when it is invalid.

use clap::Subcommand;
use serde_json::Value;

use super::CliError;
use crate::config::{Settings, Sources};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print it with the source of each value.
    Check {
        /// One JSON object instead of lines: {"key": {"value": ..., "source": "..."}}.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: ConfigCommand) -> Result<(), CliError> {
    let ConfigCommand::Check { json } = cmd;
    let (settings, sources) = Settings::load_with_sources()?;
    let rows = effective(&settings, &sources);
    if json {
        let obj: serde_json::Map<String, Value> = rows
            .into_iter()
            .map(|(k, v, s)| (k.to_string(), serde_json::json!({"value": v, "source": s})))
            .collect();
        println!("{}", Value::Object(obj));
    } else {
        for (k, v, s) in rows {
            println!("{k} = {v}  # {s}");
        }
        println!("# configuration is valid");
    }
    Ok(())
}

/// (key, value with secrets hidden, source) of every setting, in declaration order.
pub fn effective(settings: &Settings, sources: &Sources) -> Vec<(&'static str, Value, String)> {
    let all = serde_json::to_value(settings).unwrap_or(Value::Null);
    sources
        .iter()
        .map(|(key, source)| {
            let v = all.get(key).cloned().unwrap_or(Value::Null);
            (key, hide(key, v), source.to_string())
        })
        .collect()
}

/// Secrets never leave the process: the keys are shown as set or not, and a password
/// inside a database or Redis URL is masked.
fn hide(key: &str, v: Value) -> Value {
    match (key, v) {
        ("jwt_secret" | "cluster_secret", Value::String(s)) => Value::String(format!("(hidden, {} bytes)", s.len())),
        ("database_url" | "redis_url", Value::String(u)) => Value::String(mask_url_password(&u)),
        (_, v) => v,
    }
}

/// `scheme://user:secret@host/...` → `scheme://user:***@host/...`.
pub fn mask_url_password(u: &str) -> String {
    let Some((scheme, rest)) = u.split_once("://") else {
        return u.to_string();
    };
    let Some((creds, host)) = rest.rsplit_once('@') else {
        return u.to_string();
    };
    match creds.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => u.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_hidden() {
        assert_eq!(mask_url_password("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(mask_url_password("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(mask_url_password("redis://:pw@h:6379"), "redis://:***@h:6379");
        assert_eq!(mask_url_password("sqlite://x"), "sqlite://x");
        let v = hide("jwt_secret", Value::String("s".repeat(40)));
        assert_eq!(v, Value::String("(hidden, 40 bytes)".into()));
        assert_eq!(hide("bind", Value::from("x")), Value::from("x"));
    }
}
