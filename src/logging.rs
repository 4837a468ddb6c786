//! The process's log lines (stderr): `env_logger`'s text, or with `log_format =
//! "json"` one JSON object per line: `time` (RFC 3339, milliseconds, UTC), `level`,
//! `target`, `message`, and the record's key-values (`session`: the id of the
//! WebSocket session a line is about).

use std::io::Write;

use serde_json::{Map, Value};

use crate::config::{LogFormat, Settings};

/// The format the settings ask for. The logger starts before the settings are
/// reported on: when they do not load (the error is told later), `CHAT_LOG_FORMAT`
/// alone decides.
pub fn configured_format() -> LogFormat {
    Settings::load().map(|s| s.log_format).unwrap_or_else(|_| {
        match std::env::var("CHAT_LOG_FORMAT").map(|v| v.trim().to_ascii_lowercase()) {
            Ok(v) if v == "json" => LogFormat::Json,
            _ => LogFormat::Text,
        }
    })
}

/// The format [`init`] installed.
static FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// Are log lines JSON (then nothing else should be written to stderr)?
pub fn is_json() -> bool {
    FORMAT.get() == Some(&LogFormat::Json)
}

/// Installs the logger (level from `RUST_LOG`, `info` by default).
pub fn init(format: LogFormat) {
    let _ = FORMAT.set(format);
    let mut b = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if format == LogFormat::Json {
        b.format(|buf, record| {
            let time = buf.timestamp_millis().to_string();
            writeln!(buf, "{}", json_line(&time, record))
        });
    }
    b.init();
}

/// One record as a JSON object (without the newline).
fn json_line(time: &str, record: &log::Record) -> String {
    let mut obj = Map::new();
    obj.insert("time".into(), time.into());
    obj.insert("level".into(), record.level().as_str().into());
    obj.insert("target".into(), record.target().into());
    obj.insert("message".into(), record.args().to_string().into());
    let mut kv = Fields(&mut obj);
    let _ = record.key_values().visit(&mut kv);
    Value::Object(obj).to_string()
}

/// Adds a record's key-values to the object (never over the fixed fields).
struct Fields<'a>(&'a mut Map<String, Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: log::kv::Key<'kvs>, value: log::kv::Value<'kvs>) -> Result<(), log::kv::Error> {
        let v = if let Some(n) = value.to_u64() {
            n.into()
        } else if let Some(n) = value.to_i64() {
            n.into()
        } else if let Some(b) = value.to_bool() {
            b.into()
        } else {
            value.to_string().into()
        };
        self.0.entry(key.as_str().to_string()).or_insert(v);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_one_json_object() {
        let kvs: &[(&str, u64)] = &[("session", 42), ("message", 1)];
        let line = json_line(
            "2026-01-02T03:04:05.678Z",
            &log::Record::builder()
                .level(log::Level::Warn)
                .target("chatserver::session")
                .args(format_args!("timed \"out\"\n"))
                .key_values(&kvs)
                .build(),
        );
        assert!(!line.contains('\n'), "{line}");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "time": "2026-01-02T03:04:05.678Z",
                "level": "WARN",
                "target": "chatserver::session",
                "message": "timed \"out\"\n",
                "session": 42,
            })
        );
    }
}
