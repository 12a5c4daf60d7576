//! The configuration as a whole: defaults, every variable's checks, env files. (Moved from
//! the single-file `config.rs`; field paths follow the sections.)

use std::collections::HashMap;
use std::time::Duration;

use super::vars::{Fallback, Kind, ALL};
use super::*;

fn base() -> HashMap<String, String> {
    HashMap::from([(
        "DATABASE_URL".to_string(),
        "postgres://u:p@127.0.0.1:5432/db".to_string(),
    )])
}

fn with(extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut m = base();
    for (k, v) in extra {
        m.insert(k.to_string(), v.to_string());
    }
    Config::from_map(&m)
}

#[test]
fn defaults_apply_when_only_database_url_is_set() {
    let c = with(&[]).expect("valid");
    assert_eq!(c.http.bind_addr.to_string(), "127.0.0.1:5000");
    assert_eq!(c.http.public_base_url, "http://127.0.0.1:5000");
    assert_eq!(c.http.allowed_origins, AllowedOrigins::Any);
    assert_eq!(c.http.trust_proxy, 0);
    assert_eq!(c.rate_limits, RateLimits::default());
    assert_eq!(c.process.shutdown_timeout, Duration::from_secs(4));
    assert!(c.process.migrate_on_start);
    assert!(!c.process.access_log);
    assert!(
        with(&[("ACCESS_LOG", "true")])
            .expect("ok")
            .process
            .access_log
    );
    assert_eq!(c.process.memory_restart_bytes, Some(400 << 20));
}

#[test]
fn memory_restart_takes_megabytes_and_zero_turns_it_off() {
    let c = with(&[("MEMORY_RESTART_MB", "128")]).expect("ok");
    assert_eq!(c.process.memory_restart_bytes, Some(128 * 1024 * 1024));
    let c = with(&[("MEMORY_RESTART_MB", "0")]).expect("ok");
    assert_eq!(c.process.memory_restart_bytes, None);
}

#[test]
fn missing_database_url_names_the_variable() {
    let err = Config::from_map(&HashMap::new()).expect_err("must fail");
    assert_eq!(err.var, "DATABASE_URL");
    assert!(err.to_string().contains("DATABASE_URL"));
}

#[test]
fn malformed_database_url_is_rejected() {
    for bad in ["not a url", "mysql://x@h/db", "postgres://"] {
        let err = with(&[("DATABASE_URL", bad)]).expect_err(bad);
        assert_eq!(err.var, "DATABASE_URL", "{bad}");
    }
}

#[test]
fn a_read_replica_is_configured_by_its_url_with_a_lag_bound() {
    assert_eq!(with(&[]).expect("ok").database.read_replica, None);
    let config = with(&[
        ("DATABASE_READ_URL", "postgres://u:p@replica:5432/boltlink"),
        ("DATABASE_READ_MAX_LAG_MS", "2500"),
    ])
    .expect("ok");
    assert_eq!(
        config.database.read_replica,
        Some(crate::config::ReadReplicaConfig {
            url: "postgres://u:p@replica:5432/boltlink".into(),
            max_lag: std::time::Duration::from_millis(2500),
        })
    );
    let default = with(&[("DATABASE_READ_URL", "postgres://u:p@replica/boltlink")]).expect("ok");
    assert_eq!(
        default.database.read_replica.map(|r| r.max_lag),
        Some(std::time::Duration::from_secs(5))
    );
}

#[test]
fn several_redis_urls_are_the_nodes_of_a_cluster() {
    let one = with(&[("REDIS_URL", "redis://127.0.0.1:6379/2")]).expect("ok");
    assert_eq!(one.redis.url, "redis://127.0.0.1:6379/2");
    let nodes = with(&[(
        "REDIS_URL",
        "redis://10.0.0.1:7000/, redis://10.0.0.2:7000,redis://10.0.0.3:7000/0",
    )])
    .expect("ok");
    assert_eq!(
        nodes.redis.url,
        "redis://10.0.0.1:7000/,redis://10.0.0.2:7000,redis://10.0.0.3:7000/0"
    );
    for (bad, says) in [
        ("redis://a:7000/,redis://b:7000/3", "has only database 0"),
        ("redis://a:7000/,unix:///run/redis.sock", "scheme \"unix\""),
        ("redis://a:7000/,", "empty entry"),
        ("redis://a:7000/,nonsense", "is not a valid URL"),
    ] {
        let err = with(&[("REDIS_URL", bad)]).expect_err(bad);
        assert_eq!(err.var, "REDIS_URL", "{bad}");
        assert!(err.to_string().contains(says), "{bad}: {err}");
    }
    let err = with(&[
        ("REDIS_URL", "redis://a:7000/,redis://b:7000/"),
        ("REDIS_KEY_PREFIX", "{bl}:"),
    ])
    .expect_err("braces");
    assert_eq!(err.var, "REDIS_KEY_PREFIX");
    // A standalone server has no slots: braces stay allowed there.
    with(&[("REDIS_KEY_PREFIX", "{bl}:")]).expect("ok");
}

#[test]
fn bad_values_name_their_variable() {
    let cases = [
        ("BIND_ADDR", "localhost"),
        ("REDIS_URL", "http://x"),
        ("PUBLIC_BASE_URL", "ftp://x"),
        ("FRONTEND_URL", "nope"),
        ("ALLOWED_ORIGINS", "not-an-origin"),
        ("TRUST_PROXY", "many"),
        ("DB_POOL_SIZE", "0"),
        ("RATE_LIMIT_REDIRECT_PER_MIN", "-5"),
        ("LOG_LEVEL", "lots[["),
        ("MIGRATE_ON_START", "maybe"),
        ("ACCESS_LOG", "verbose"),
        ("LOCAL_CACHE_SUBSCRIBED_TTL_MS", "forever"),
        ("PIPELINE_LINGER_MS", "-1"),
        ("METADATA_ALLOWLIST", "127.0.0.1"),
        ("BOLTLINK_INSTANCE", "has space"),
        ("PIPELINE_BATCH_SIZE", "0"),
        ("PIPELINE_POLL_MS", "soon"),
        ("CLICK_RETENTION_DAYS", "0"),
        ("COUNT_BOTS", "sometimes"),
        ("GEOIP_DB", "/nonexistent/country.mmdb"),
        ("MEMORY_RESTART_MB", "lots"),
        ("AGGREGATOR_BATCH_SIZE", "0"),
        ("AGGREGATOR_WINDOW_MS", "10001"),
        ("RUNTIME_DIRECTORY", "/nonexistent/run/boltlink-api"),
        ("DATABASE_READ_URL", "mysql://x@h/db"),
        ("DATABASE_READ_URL", "postgres://"),
        ("DATABASE_READ_MAX_LAG_MS", "50"),
        ("DATABASE_READ_MAX_LAG_MS", "soon"),
    ];
    for (var, value) in cases {
        let err = with(&[(var, value)]).expect_err(var);
        assert_eq!(err.var, var, "value {value}");
    }
}

#[test]
fn the_runtime_directory_is_the_first_of_the_ones_systemd_lists() {
    let tmp = std::env::temp_dir();
    let listed = format!("{}:/nonexistent/second", tmp.display());
    let config = with(&[("RUNTIME_DIRECTORY", listed.as_str())]).expect("ok");
    assert_eq!(config.process.runtime_dir.as_deref(), Some(tmp.as_path()));
    assert_eq!(with(&[]).expect("ok").process.runtime_dir, None);
}

#[test]
fn trust_proxy_accepts_numbers_and_booleans() {
    assert_eq!(
        with(&[("TRUST_PROXY", "2")]).expect("ok").http.trust_proxy,
        2
    );
    assert_eq!(
        with(&[("TRUST_PROXY", "true")])
            .expect("ok")
            .http
            .trust_proxy,
        1
    );
    assert_eq!(
        with(&[("TRUST_PROXY", "false")])
            .expect("ok")
            .http
            .trust_proxy,
        0
    );
}

#[test]
fn origin_list_is_parsed_and_matched_exactly() {
    let c = with(&[(
        "ALLOWED_ORIGINS",
        "https://a.example, http://b.example:3000/",
    )])
    .expect("ok");
    let listed = Some(CorsGrant { credentials: true });
    assert_eq!(c.http.allowed_origins.allow("https://a.example"), listed);
    assert_eq!(
        c.http.allowed_origins.allow("http://b.example:3000"),
        listed
    );
    assert_eq!(c.http.allowed_origins.allow("https://evil.example"), None);
    assert_eq!(c.http.allowed_origins.allow("null"), None);
}

#[test]
fn any_origin_may_read_but_never_with_credentials() {
    let c = with(&[("ALLOWED_ORIGINS", "*")]).expect("ok");
    for origin in ["https://any.example", "null"] {
        assert_eq!(
            c.http.allowed_origins.allow(origin),
            Some(CorsGrant { credentials: false }),
            "{origin}"
        );
    }
}

#[test]
fn base_urls_lose_their_trailing_slash() {
    let c = with(&[
        ("PUBLIC_BASE_URL", "https://bl.example/"),
        ("FRONTEND_URL", "https://app.example/"),
    ])
    .expect("ok");
    assert_eq!(c.http.public_base_url, "https://bl.example");
    assert_eq!(c.http.frontend_url.as_deref(), Some("https://app.example"));
}

#[test]
fn env_file_handles_comments_quotes_and_export() {
    let text = "# comment\n\nexport A=1\nB=\"two words\"\nC='x=y'\n; other comment\nD=\n";
    let m = parse_env_file(text).expect("ok");
    assert_eq!(m["A"], "1");
    assert_eq!(m["B"], "two words");
    assert_eq!(m["C"], "x=y");
    assert_eq!(m["D"], "");
}

#[test]
fn env_file_reports_the_bad_line() {
    let err = parse_env_file("A=1\nthis is wrong\n").expect_err("bad");
    assert_eq!(err.0, 2);
    let err = parse_env_file("BAD-NAME=1\n").expect_err("bad");
    assert_eq!(err.0, 1);
}

#[test]
fn explicit_env_file_that_is_missing_is_an_error() {
    let env = HashMap::from([(
        "BOLTLINK_ENV_FILE".to_string(),
        "/nonexistent/boltlink.env".to_string(),
    )]);
    let err = read_env_file_for(&env).expect_err("missing");
    assert_eq!(err.var, "BOLTLINK_ENV_FILE");
}

#[test]
fn setup_env_is_read_first_and_the_env_file_overrides_it() {
    let dir = std::env::temp_dir().join(format!("boltlink-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let env_file = dir.join("boltlink.env");
    let env = HashMap::from([(
        "BOLTLINK_ENV_FILE".to_string(),
        env_file.display().to_string(),
    )]);
    std::fs::write(&env_file, "REDIS_KEY_PREFIX=admin:\n").expect("write");
    // No setup.env yet: only the env file.
    let m = read_env_file_for(&env).expect("read");
    assert_eq!(m.get("DATABASE_URL"), None);
    std::fs::write(
        dir.join(SETUP_ENV_FILE_NAME),
        "DATABASE_URL=postgres://boltlink:pw@127.0.0.1:5432/boltlink\nREDIS_KEY_PREFIX=setup:\n",
    )
    .expect("write");
    let m = read_env_file_for(&env).expect("read");
    assert_eq!(
        m["DATABASE_URL"],
        "postgres://boltlink:pw@127.0.0.1:5432/boltlink"
    );
    assert_eq!(
        m["REDIS_KEY_PREFIX"], "admin:",
        "the env file wins over setup.env"
    );
    std::fs::write(dir.join(SETUP_ENV_FILE_NAME), "not a line\n").expect("write");
    let err = read_env_file_for(&env).expect_err("bad setup.env");
    assert!(err.message.contains("setup.env:1"), "{err}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn every_numeric_variable_accepts_its_bounds_and_names_itself_past_them() {
    let numbers = ALL.iter().filter_map(|v| match v.kind {
        Kind::Number { min, max } => Some((v.name, min, max)),
        _ => None,
    });
    for (name, min, max) in numbers {
        for ok in [min, max] {
            if let Err(e) = with(&[(name, &ok.to_string())]) {
                panic!("{name}={ok}: {e}");
            }
        }
        let past = [min.checked_sub(1), max.checked_add(1)];
        for bad in past.into_iter().flatten() {
            let err = with(&[(name, &bad.to_string())]).expect_err(name);
            assert_eq!(err.var, name);
            assert_eq!(
                err.message,
                format!("\"{bad}\" is not a whole number from {min} to {max}")
            );
        }
    }
}

#[test]
fn every_boolean_variable_reads_every_spelling() {
    for var in ALL.iter().filter(|v| v.kind == Kind::Bool) {
        for yes in ["1", "true", "YES", "On"] {
            with(&[(var.name, yes)]).expect(var.name);
        }
        for no in ["0", "False", "no", "OFF"] {
            with(&[(var.name, no)]).expect(var.name);
        }
        let err = with(&[(var.name, "Maybe")]).expect_err(var.name);
        assert_eq!(
            err.to_string(),
            format!(
                "configuration error: {}: \"maybe\" is not a boolean (true/false)",
                var.name
            )
        );
    }
}

#[test]
fn a_value_set_empty_or_blank_counts_as_unset() {
    let c = with(&[("DB_POOL_SIZE", ""), ("LOG_LEVEL", "  ")]).expect("ok");
    assert_eq!(c.database.pool_size, 10);
    assert_eq!(c.process.log_level, "info");
}

#[test]
fn resolve_says_what_computed_defaults_and_auto_worked_out_to() {
    let (c, resolved) = Config::resolve(&base()).expect("ok");
    let resolved: HashMap<&str, String> = resolved.into_iter().collect();
    assert_eq!(resolved["PUBLIC_BASE_URL"], "http://127.0.0.1:5000");
    assert_eq!(resolved["BOLTLINK_INSTANCE"], c.process.instance);
    assert_eq!(
        resolved["PASSWORD_HASH_CONCURRENCY"],
        c.http.password_hash_concurrency.to_string()
    );
    assert_eq!(
        resolved["HTTP_MAX_CONNECTIONS"],
        format!("auto ({})", c.http.limits.max_connections)
    );
    assert_eq!(resolved["HTTP_MAX_CONNECTIONS_PER_CLIENT"], "auto (256)");
    // Only computed defaults and `auto` are reported: set values speak for themselves.
    let mut m = base();
    m.insert("TRUST_PROXY".into(), "1".into());
    m.insert("PUBLIC_BASE_URL".into(), "https://bl.example/".into());
    let (_, resolved) = Config::resolve(&m).expect("ok");
    let resolved: HashMap<&str, String> = resolved.into_iter().collect();
    assert_eq!(resolved["HTTP_MAX_CONNECTIONS_PER_CLIENT"], "auto (0)");
    assert!(!resolved.contains_key("PUBLIC_BASE_URL"));
    for name in resolved.keys() {
        let var = Var::named(name).expect("declared");
        assert!(
            matches!(var.default, Fallback::Computed(_) | Fallback::Value("auto")),
            "{name}"
        );
    }
}

fn layers(
    setup: &[(&str, &str)],
    env_file: &[(&str, &str)],
    environment: &[(&str, &str)],
) -> Layers {
    let map = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    Layers {
        setup_file: ("/etc/boltlink/setup.env".into(), map(setup)),
        env_file: ("/etc/boltlink/boltlink.env".into(), map(env_file)),
        env_file_named: false,
        environment: map(environment),
    }
}

fn setting<'a>(explained: &'a Explained, name: &str) -> &'a Setting {
    explained
        .settings
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("{name} is not shown"))
}

#[test]
fn explain_shows_each_value_with_the_layer_it_came_from() {
    let l = layers(
        &[
            (
                "DATABASE_URL",
                "postgres://boltlink:s3cret@127.0.0.1:5432/boltlink",
            ),
            ("REDIS_KEY_PREFIX", "setup:"),
        ],
        &[
            ("REDIS_KEY_PREFIX", "admin:"),
            ("DB_POOL_SIZE", "20"),
            ("LOG_LEVEL", "debug"),
            ("DB_POOLSIZE", "30"),
        ],
        &[
            ("LOG_LEVEL", "warn"),
            ("DB_POOL_SIZE", ""),
            ("HOME", "/root"),
        ],
    );
    let e = explain(&l).expect("valid");
    assert_eq!(e.settings.len(), ALL.len());
    let shown = |name: &str| {
        let s = setting(&e, name);
        (s.value.as_deref(), s.source, s.file.clone())
    };
    let setup = Some("/etc/boltlink/setup.env".into());
    let env_file = Some("/etc/boltlink/boltlink.env".into());
    assert_eq!(
        shown("DATABASE_URL"),
        (
            Some("postgres://boltlink:***@127.0.0.1:5432/boltlink"),
            Source::SetupFile,
            setup
        )
    );
    assert_eq!(
        shown("REDIS_KEY_PREFIX"),
        (Some("admin:"), Source::EnvFile, env_file)
    );
    assert_eq!(
        shown("LOG_LEVEL"),
        (Some("warn"), Source::Environment, None)
    );
    // Set empty in the environment: the default applies, whatever the files say.
    assert_eq!(shown("DB_POOL_SIZE"), (Some("10"), Source::Default, None));
    assert_eq!(shown("FRONTEND_URL"), (None, Source::Default, None));
    assert_eq!(
        shown("PUBLIC_BASE_URL"),
        (Some("http://127.0.0.1:5000"), Source::Default, None)
    );
    assert_eq!(
        shown("BOLTLINK_ENV_FILE"),
        (Some("/etc/boltlink/boltlink.env"), Source::Default, None)
    );
    // A typo in a file is pointed out; the environment's own variables are not BoltLink's.
    assert_eq!(
        e.unknown,
        vec![Unknown {
            name: "DB_POOLSIZE".into(),
            file: "/etc/boltlink/boltlink.env".into()
        }]
    );
}

#[test]
fn explain_refuses_a_bad_configuration_like_the_services_and_says_where_it_is_set() {
    let l = layers(
        &[],
        &[
            ("DATABASE_URL", "postgres://u:p@h/db"),
            ("DB_POOL_SIZE", "0"),
        ],
        &[],
    );
    let err = explain(&l).expect_err("bad");
    assert_eq!(err, Config::from_map(&l.merged()).expect_err("bad"));
    assert_eq!(err.var, "DB_POOL_SIZE");
    assert_eq!(
        source_of(&l, &err.var),
        (Source::EnvFile, Some("/etc/boltlink/boltlink.env".into()))
    );
}

#[test]
fn every_password_of_a_list_of_cluster_nodes_is_redacted() {
    assert_eq!(
        crate::config::redact_urls(
            "redis://:s3cret@10.0.0.11:6379/, redis://:s3cret@10.0.0.12:6379/"
        )
        .as_deref(),
        Some("redis://:***@10.0.0.11:6379/,redis://:***@10.0.0.12:6379/")
    );
    assert_eq!(
        crate::ctl::setup::redacted("redis://10.0.0.11:6379/,redis://:pw@10.0.0.12:6379/"),
        "redis://10.0.0.11:6379/,redis://:***@10.0.0.12:6379/"
    );
    assert_eq!(
        crate::config::redact_urls("redis://10.0.0.11:6379/,redis://10.0.0.12:6379/"),
        None
    );
    assert_eq!(crate::ctl::setup::redacted("not a url"), "(unparsable URL)");
}

#[test]
fn url_passwords_and_secret_parameters_are_redacted() {
    let redacted = |u: &str| redact_url(&url::Url::parse(u).expect("url"));
    assert_eq!(
        redacted("redis://:pw@redis.example:6379/0").as_deref(),
        Some("redis://:***@redis.example:6379/0")
    );
    assert_eq!(
        redacted("postgres://u@db/x?sslmode=require&password=pw&sslpassword=k").as_deref(),
        Some("postgres://u@db/x?sslmode=require&password=***&sslpassword=***")
    );
    assert_eq!(redacted("redis://127.0.0.1:6379/"), None);
    for name in ["PASSWORD", "api_key", "WEBHOOK_SECRET", "token", "Key"] {
        assert!(looks_secret(name), "{name}");
    }
    for name in [
        "REDIS_KEY_PREFIX",
        "RATE_LIMIT_KEY_PER_MIN",
        "PASSWORD_HASH_CONCURRENCY",
        "sslmode",
        "sslkey",
    ] {
        assert!(!looks_secret(name), "{name}");
    }
}
