//! Layering, sources and value forms of the settings.

use super::{layers::VARS, *};

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
    let (_dir, path) = config_file("bind = \"0.0.0.0:9000\"\nheartbeat_s = 2.0\n[policies.room]\nconflate = false\n");
    let (_, sources) = Settings::layered(
        Some(path.clone()),
        env(&[
            ("CHAT_BIND", "127.0.0.1:0"),
            ("CHAT_JWT_SECRET", "s3cret-s3cret-s3cret-s3cret-s3cret"),
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
        "bind" | "metrics_bind" => "127.0.0.1:0",
        "log_format" => "json",
        "data_dir" | "cluster_name" => "x",
        "jwt_secret" | "cluster_secret" => "0123456789abcdef0123456789abcdef",
        "database_url" => "sqlite://x.db",
        "redis_url" => "redis://localhost",
        "allowed_origins" => "https://a.example",
        "trusted_proxies" => "10.0.0.0/8",
        "allow_anonymous" | "demo" | "cookie_secure" => "true",
        "reply_max_bytes" => "100000",
        "ice_servers" => r#"[{"urls":"stun:a.example:3478"}]"#,
        _ => "100",
    }
}

#[test]
fn digits_only_values_stay_strings() {
    let s = from_env(&[
        ("CHAT_JWT_SECRET", "01234567890123456789012345678901"),
        ("CHAT_BIND", "8080"),
        ("CHAT_CLUSTER_NAME", "true"),
        ("CHAT_DATA_DIR", "2024"),
    ])
    .unwrap();
    assert_eq!(s.jwt_secret.as_deref(), Some("01234567890123456789012345678901"));
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
    let (_dir, path) =
        config_file("database_url = \"sqlite://file.db\"\nredis_url = \"redis://file\"\njwt_secret = \"from-file-from-file-from-file-from-file\"\n");
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

#[test]
fn short_secrets_are_refused_without_showing_them() {
    for var in ["CHAT_JWT_SECRET", "CHAT_CLUSTER_SECRET"] {
        let e = from_env(&[(var, "short-secret")]).unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains(var), "{shown}");
        assert!(!shown.contains("short-secret"), "the secret was shown: {shown}");
    }
    assert!(from_env(&[("CHAT_JWT_SECRET", &"k".repeat(32))]).is_ok());
}

#[test]
fn ice_servers_from_json() {
    let (s, _) = Settings::layered(
        None,
        env(&[("CHAT_ICE_SERVERS", r#"[{"urls":["stun:a.example:3478"]}]"#)]),
    )
    .unwrap();
    assert_eq!(s.ice_servers, vec![serde_json::json!({"urls":["stun:a.example:3478"]})]);
    assert!(Settings::layered(None, env(&[("CHAT_ICE_SERVERS", "not json")])).is_err());
    assert!(Settings::layered(None, env(&[("CHAT_ICE_SERVERS", r#"[{"urls":"http://x"}]"#)])).is_err());
    assert!(Settings::layered(None, env(&[("CHAT_ICE_SERVERS", "[]")]))
        .unwrap()
        .0
        .ice_servers
        .is_empty());
    let shown = Settings {
        ice_servers: vec![serde_json::json!({"urls":"turn:t","credential":"pw"})],
        ..Settings::default()
    };
    assert_eq!(shown.redacted()["ice_servers"][0]["credential"], "(hidden, 2 bytes)");
}

#[test]
fn metrics_bind_and_log_format() {
    let s = from_env(&[]).unwrap();
    assert_eq!((s.metrics_bind.as_deref(), s.log_format), (None, LogFormat::Text));
    let s = from_env(&[("CHAT_METRICS_BIND", "127.0.0.1:9100"), ("CHAT_LOG_FORMAT", "JSON")]).unwrap();
    assert_eq!(s.metrics_addr(), Some("127.0.0.1:9100".parse().unwrap()));
    assert_eq!(s.log_format, LogFormat::Json);
    // The empty string unsets it.
    assert_eq!(from_env(&[("CHAT_METRICS_BIND", "")]).unwrap().metrics_bind, None);
    let e = from_env(&[("CHAT_METRICS_BIND", "nowhere")]).unwrap_err();
    assert!(e.to_string().contains("CHAT_METRICS_BIND"), "{e}");
    let e = from_env(&[("CHAT_LOG_FORMAT", "xml")]).unwrap_err();
    assert!(e.to_string().contains("CHAT_LOG_FORMAT"), "{e}");
    let (_dir, path) = config_file("log_format = \"json\"\nmetrics_bind = \"127.0.0.1:0\"\n");
    let (s, _) = Settings::layered(Some(path), |_| None).unwrap();
    assert_eq!(
        (s.log_format, s.metrics_bind.as_deref()),
        (LogFormat::Json, Some("127.0.0.1:0"))
    );
}
