//! Settings as they may be shown (`config check`, the admin console): every value,
//! secrets hidden.

use serde_json::Value;

use super::Settings;

impl Settings {
    /// Every setting by key, with the secrets replaced by their length and any password
    /// inside a database or Redis URL masked.
    pub fn redacted(&self) -> serde_json::Map<String, Value> {
        let Ok(Value::Object(all)) = serde_json::to_value(self) else {
            return serde_json::Map::new();
        };
        all.into_iter()
            .map(|(k, v)| {
                let v = hide(&k, v);
                (k, v)
            })
            .collect()
    }
}

fn hide(key: &str, v: Value) -> Value {
    match (key, v) {
        ("jwt_secret" | "cluster_secret", Value::String(s)) => Value::String(format!("(hidden, {} bytes)", s.len())),
        ("database_url" | "redis_url", Value::String(u)) => Value::String(mask_url_password(&u)),
        ("ice_servers", Value::Array(list)) => Value::Array(list.into_iter().map(hide_credential).collect()),
        (_, v) => v,
    }
}

/// A TURN server's `credential` replaced by its length.
fn hide_credential(mut server: Value) -> Value {
    if let Some(Value::String(c)) = server.get("credential") {
        let hidden = format!("(hidden, {} bytes)", c.len());
        server["credential"] = Value::String(hidden);
    }
    server
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
        let s = Settings {
            jwt_secret: Some("s".repeat(40)),
            database_url: Some("postgres://chat:pw@db/chat".into()),
            ..Settings::default()
        };
        let r = s.redacted();
        assert_eq!(r["jwt_secret"], Value::String("(hidden, 40 bytes)".into()));
        assert_eq!(r["database_url"], Value::String("postgres://chat:***@db/chat".into()));
        assert_eq!(r["bind"], Value::String("127.0.0.1:8080".into()));
    }
}
