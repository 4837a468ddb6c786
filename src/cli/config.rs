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
    let all = settings.redacted();
    sources
        .iter()
        .map(|(key, source)| (key, all.get(key).cloned().unwrap_or(Value::Null), source.to_string()))
        .collect()
}
