//! The loader and the rules, key by key.

use std::collections::HashMap;
use std::path::Path;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_load_and_are_standalone() {
    let s = Settings::load(None, &env(&[]), &[]).expect("defaults are valid");
    assert_eq!(s.http.bind.to_string(), "127.0.0.1:8080");
    assert!(s.standalone());
    assert_eq!(s.limits.max_frame_bytes, 65536);
    assert_eq!(s.session.queue_max, 1024);
    assert!(!s.node.id.is_empty());
}

#[test]
fn env_overrides_file_and_cli_overrides_env() {
    let e = env(&[
        ("CHORUS__HTTP__BIND", "0.0.0.0:9000"),
        ("CHORUS__LIMITS__BURST", "7"),
        ("CHORUS__REDIS__PREFIX", "t1"),
    ]);
    let s = Settings::load(None, &e, &[("limits.burst".into(), "9".into())]).unwrap();
    assert_eq!(s.http.bind.to_string(), "0.0.0.0:9000");
    assert_eq!(s.redis.prefix, "t1");
    assert_eq!(s.limits.burst.get(), 9);
}

#[test]
fn every_unknown_key_is_named_with_its_full_path() {
    let e = env(&[
        ("CHORUS__LIMITS__BURSTS", "1"),
        ("CHORUS__NOPE__X", "1"),
        ("CHORUS__HTTP__BIND", "127.0.0.1:1"),
    ]);
    let err = Settings::load(None, &e, &[]).unwrap_err();
    assert_eq!(err.key, "limits.bursts", "{err}");
    assert!(err.message.contains("limits.bursts, nope.x"), "{err}");
}

#[test]
fn single_underscore_variables_are_pointed_at_the_right_name() {
    let e = env(&[
        ("CHORUS_DATABASE_URL", "postgres://x/y"),
        ("CHORUS_ENV", "production"),
        ("CHORUS__HTTP__BIND", "x"),
        ("CHORUS_WHATEVER", "1"),
    ]);
    let w = env_typos(&e);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].contains("did you mean CHORUS__DATABASE__URL"), "{w:?}");
    assert!(w[1].contains("CHORUS_WHATEVER is ignored"), "{w:?}");
}

#[test]
fn a_missing_config_dir_and_a_bad_log_level_are_errors() {
    let missing = Path::new("/nonexistent/chorus-config");
    let err = Settings::load(Some(missing), &env(&[]), &[]).unwrap_err();
    assert_eq!(err.key, "--config-dir");
    let e = env(&[("CHORUS__LOG__LEVEL", "info,chorus=loud")]);
    assert_eq!(Settings::load(None, &e, &[]).unwrap_err().key, "log.level");
}

#[test]
fn errors_name_the_key() {
    let e = env(&[("CHORUS__LIMITS__BURST", "lots")]);
    let err = Settings::load(None, &e, &[]).unwrap_err();
    assert_eq!(err.key, "limits.burst", "{err}");

    let e = env(&[("CHORUS__HTTP__BIND", "nowhere")]);
    assert_eq!(Settings::load(None, &e, &[]).unwrap_err().key, "http.bind");

    // Above the HTTP parser's own 128 KiB buffer the limit could never be reached.
    for bytes in ["200000", "100"] {
        let e = env(&[("CHORUS__LIMITS__MAX_HEADER_BYTES", bytes)]);
        let err = Settings::load(None, &e, &[]).unwrap_err();
        assert_eq!(err.key, "limits.max_header_bytes", "{err}");
    }

    // The secret is a serving node's need, not a migration job's.
    let e = env(&[("CHORUS__DATABASE__URL", "postgres://localhost/x")]);
    let s = Settings::load(None, &e, &[]).expect("loads without the secret");
    assert_eq!(s.validate_secret().unwrap_err().key, "auth.jwt_secret");
}

#[test]
fn several_redis_urls_or_cluster_true_mean_a_redis_cluster() {
    let secret = ("CHORUS__AUTH__JWT_SECRET", "0123456789abcdef-secret");
    let db = ("CHORUS__DATABASE__URL", "postgres://localhost/x");
    let e = env(&[secret, db, ("CHORUS__REDIS__URL", "redis://a:7000")]);
    assert!(!Settings::load(None, &e, &[]).unwrap().redis.clustered());
    let e = env(&[
        secret,
        db,
        (
            "CHORUS__REDIS__URL",
            "redis://u:pw@a:7000, redis://u:pw@b:7001",
        ),
    ]);
    let s = Settings::load(None, &e, &[]).unwrap();
    assert!(s.redis.clustered());
    assert_eq!(
        s.redis.urls(),
        ["redis://u:pw@a:7000", "redis://u:pw@b:7001"]
    );
    assert!(!s.masked().contains("pw@"), "{}", s.masked());
    let e = env(&[
        secret,
        db,
        ("CHORUS__REDIS__URL", "redis://a:7000"),
        ("CHORUS__REDIS__CLUSTER", "true"),
    ]);
    assert!(Settings::load(None, &e, &[]).unwrap().redis.clustered());
    let e = env(&[
        secret,
        db,
        ("CHORUS__REDIS__URL", "redis://a:7000"),
        ("CHORUS__REDIS__CLUSTER", "true"),
        ("CHORUS__REDIS__PREFIX", "{x}"),
    ]);
    assert_eq!(
        Settings::load(None, &e, &[]).unwrap_err().key,
        "redis.prefix"
    );
    let e = env(&[
        secret,
        db,
        ("CHORUS__REDIS__URL", "rediss://a:7000,redis://b:7001"),
    ]);
    assert_eq!(Settings::load(None, &e, &[]).unwrap_err().key, "redis.url");
    let e = env(&[("CHORUS__ROOM__RETENTION_DAYS", "30")]);
    assert_eq!(
        Settings::load(None, &e, &[]).unwrap_err().key,
        "room.retention_days"
    );
    let e = env(&[secret, db, ("CHORUS__REDIS__CLUSTER", "true")]);
    assert_eq!(
        Settings::load(None, &e, &[]).unwrap_err().key,
        "redis.cluster"
    );
}

#[test]
fn a_cluster_needs_postgres_and_a_redis_url() {
    let secret = ("CHORUS__AUTH__JWT_SECRET", "0123456789abcdef-secret");
    let e = env(&[secret, ("CHORUS__REDIS__URL", "redis://127.0.0.1:6379")]);
    assert_eq!(Settings::load(None, &e, &[]).unwrap_err().key, "redis.url");
    let e = env(&[
        secret,
        ("CHORUS__DATABASE__URL", "postgres://localhost/x"),
        ("CHORUS__REDIS__URL", "http://cache:6380"),
    ]);
    assert_eq!(Settings::load(None, &e, &[]).unwrap_err().key, "redis.url");
    let e = env(&[
        secret,
        (
            "CHORUS__DATABASE__URL",
            "postgres://localhost/x?sslmode=verify-full",
        ),
        ("CHORUS__REDIS__URL", "rediss://cache:6380"),
        ("CHORUS__REDIS__CA_FILE", "/nonexistent/ca.pem"),
    ]);
    assert_eq!(
        Settings::load(None, &e, &[]).unwrap_err().key,
        "redis.ca_file"
    );
    let e = env(&[
        secret,
        ("CHORUS__DATABASE__URL", "postgres://localhost/x"),
        ("CHORUS__REDIS__URL", "redis://cache:6379/0"),
    ]);
    assert!(Settings::load(None, &e, &[]).is_ok());
}

#[test]
fn unknown_keys_are_rejected() {
    let err = Settings::load(None, &env(&[("CHORUS__HTTP__BINDD", "x")]), &[]).unwrap_err();
    assert!(err.message.contains("bindd"), "{err}");
}

#[test]
fn webhooks_load_from_a_config_file_and_every_mistake_names_its_key() {
    let dir = std::env::temp_dir().join(format!("chorus-cfg-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |hook: &str| {
        std::fs::write(dir.join("default.toml"), format!("[[webhooks]]\n{hook}\n")).unwrap()
    };
    let db = env(&[("CHORUS__DATABASE__URL", "postgres://localhost/x")]);
    let valid = "url = \"https://hooks.example/chorus\"\nsecret = \"0123456789abcdef\"";
    write(valid);
    let s = Settings::load(Some(&dir), &db, &[]).expect("a minimal endpoint loads");
    let hook = &s.webhooks[0];
    assert_eq!(
        hook.id(),
        "https://hooks.example/chorus",
        "named by its url"
    );
    assert_eq!(hook.events, WEBHOOK_EVENTS);
    assert_eq!(
        (
            hook.rooms.as_slice(),
            hook.timeout.as_millis(),
            hook.max_attempts
        ),
        (&["*".to_string()][..], 5000, 10)
    );
    assert!(
        !s.masked().contains("0123456789abcdef"),
        "the secret is masked"
    );
    let standalone = Settings::load(Some(&dir), &env(&[]), &[]).unwrap_err();
    assert_eq!(standalone.key, "webhooks", "the outbox needs Postgres");
    let secret = "secret = \"0123456789abcdef\"";
    for (hook, key) in [
        (format!("url = \"ftp://x/\"\n{secret}"), "webhooks[0].url"),
        (
            "url = \"http://x/\"\nsecret = \"short\"".to_string(),
            "webhooks[0].secret",
        ),
        (
            format!("url = \"http://x/\"\n{secret}\nevents = [\"presence\"]"),
            "webhooks[0].events",
        ),
        (
            format!("url = \"http://x/\"\n{secret}\nevents = [\"typing\"]"),
            "webhooks[0].events",
        ),
        (
            format!("url = \"http://x/\"\n{secret}\nrooms = [\"a*b\"]"),
            "webhooks[0].rooms",
        ),
        (
            format!("url = \"http://x/\"\n{secret}\nmax_attempts = 0"),
            "webhooks[0].max_attempts",
        ),
        (
            format!("url = \"http://x/\"\n{secret}\nretries = 3"),
            "webhooks[0]",
        ),
        (
            format!("{valid}\n[[webhooks]]\n{valid}"),
            "webhooks[1].name",
        ),
    ] {
        write(&hook);
        let err = Settings::load(Some(&dir), &db, &[]).unwrap_err();
        assert_eq!(err.key, key, "{hook}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn masked_hides_secrets() {
    let e = env(&[
        ("CHORUS__AUTH__JWT_SECRET", "0123456789abcdef-secret"),
        ("CHORUS__DATABASE__URL", "postgres://app:hunter2@db/chorus"),
    ]);
    let text = Settings::load(None, &e, &[]).unwrap().masked();
    assert!(
        !text.contains("hunter2") && !text.contains("abcdef-secret"),
        "{text}"
    );
    assert!(text.contains("postgres://app:***@db/chorus"), "{text}");
}

#[test]
fn values_are_parsed_once_into_their_types() {
    let e = env(&[
        ("CHORUS__HTTP__BIND", "0.0.0.0:9001"),
        ("CHORUS__SESSION__HEARTBEAT_MS", "1500"),
        (
            "CHORUS__AUTH__ALLOWED_ORIGINS",
            "https://a.example, https://b.example",
        ),
        ("CHORUS__HTTP__TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7"),
        ("CHORUS__LOG__FORMAT", "json"),
    ]);
    let s = Settings::load(None, &e, &[]).unwrap();
    assert_eq!(s.http.bind.port(), 9001);
    assert_eq!(s.session.heartbeat, std::time::Duration::from_millis(1500));
    assert_eq!(
        s.auth.allowed_origins,
        ["https://a.example", "https://b.example"]
    );
    assert_eq!(s.http.trusted_proxies.len(), 2);
    assert_eq!(s.log.format, LogFormat::Json);
}

#[test]
fn a_value_that_does_not_parse_is_an_error_naming_its_key() {
    for (var, value, key) in [
        ("CHORUS__LIMITS__BURST", "0", "limits.burst"),
        ("CHORUS__LIMITS__MSGS_PER_SEC", "0", "limits.msgs_per_sec"),
        ("CHORUS__DATABASE__POOL_SIZE", "0", "database.pool_size"),
        ("CHORUS__SESSION__HEARTBEAT_MS", "0", "session.heartbeat_ms"),
        ("CHORUS__SHUTDOWN__DRAIN_MS", "0", "shutdown.drain_ms"),
        ("CHORUS__ROOM__MAX_CATCHUP", "-1", "room.max_catchup"),
        (
            "CHORUS__HTTP__TRUSTED_PROXIES",
            "10.0.0.0/8,not-an-ip",
            "http.trusted_proxies",
        ),
        ("CHORUS__LOG__FORMAT", "yaml", "log.format"),
        ("CHORUS__LOG__LEVEL", "info,chorus=loud", "log.level"),
        ("CHORUS__HTTP__BIND", "localhost", "http.bind"),
    ] {
        let err = Settings::load(None, &env(&[(var, value)]), &[]).unwrap_err();
        assert_eq!(err.key, key, "{var}={value}: {err}");
    }
    let err = Settings::load(None, &env(&[("CHORUS__HTTP__BIND", "nowhere")]), &[]).unwrap_err();
    assert!(err.message.contains("`nowhere` is not an address"), "{err}");
}

#[test]
fn half_a_tls_pair_names_the_half_that_is_missing() {
    let cert_only = env(&[("CHORUS__HTTP__TLS_CERT", "/etc/chorus/cert.pem")]);
    let err = Settings::load(None, &cert_only, &[]).unwrap_err();
    assert_eq!(err.key, "http.tls_key", "{err}");
    assert!(err.message.contains("http.tls_cert is set"), "{err}");
    let key_only = env(&[("CHORUS__HTTP__TLS_KEY", "/etc/chorus/key.pem")]);
    let err = Settings::load(None, &key_only, &[]).unwrap_err();
    assert_eq!(err.key, "http.tls_cert", "{err}");
    assert!(err.message.contains("http.tls_key is set"), "{err}");
}

#[test]
fn the_printed_settings_load_back_to_the_same_values() {
    let e = env(&[
        ("CHORUS__SESSION__TIMEOUT_MS", "45000"),
        (
            "CHORUS__AUTH__ALLOWED_ORIGINS",
            "https://a.example,https://b.example",
        ),
        ("CHORUS__HTTP__TRUSTED_PROXIES", "10.0.0.0/8"),
    ]);
    let s = Settings::load(None, &e, &[]).unwrap();
    let dir = std::env::temp_dir().join(format!("chorus-cfg-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("default.toml"), s.masked()).unwrap();
    let again = Settings::load(Some(&dir), &env(&[]), &[]).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(again.masked(), s.masked());
    assert_eq!(again.session.timeout, s.session.timeout);
    assert_eq!(again.auth.allowed_origins, s.auth.allowed_origins);
}
