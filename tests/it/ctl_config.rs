//! `boltlinkctl config`, run as an operator would: every declared variable with its value
//! in effect and where it came from (default, `setup.env`, the env file, the environment),
//! passwords never printed, and a bad configuration refused with exit 78 and one line.

use crate::support::output_text;
use std::path::PathBuf;
use std::process::{Command, Output};

use boltlink::config::vars::ALL;

const CTL_BIN: &str = env!("CARGO_BIN_EXE_boltlinkctl");

/// A directory holding `boltlink.env` and `setup.env`, removed on drop.
struct EnvDir(PathBuf);

impl EnvDir {
    fn new(env_file: &str, setup_env: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("bl-config-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("boltlink.env"), env_file).expect("env file");
        std::fs::write(dir.join("setup.env"), setup_env).expect("setup.env");
        Self(dir)
    }

    fn env_file(&self) -> String {
        self.0.join("boltlink.env").display().to_string()
    }

    fn setup_env(&self) -> String {
        self.0.join("setup.env").display().to_string()
    }

    /// `boltlinkctl config ARGS` with only `environment` (and PATH) in its environment.
    fn config(&self, args: &[&str], environment: &[(&str, &str)]) -> Output {
        Command::new(CTL_BIN)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("BOLTLINK_ENV_FILE", self.env_file())
            .envs(environment.iter().copied())
            .arg("config")
            .args(args)
            .output()
            .expect("run boltlinkctl config")
    }
}

impl Drop for EnvDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn config_shows_every_variable_with_its_value_and_source_and_hides_passwords() {
    let dir = EnvDir::new(
        "REDIS_URL=redis://:redis-pw@127.0.0.1:6379/\nDB_POOL_SIZE=20\nLOG_LEVEL=info\nDB_POOLSIZE=30\n",
        "DATABASE_URL=postgres://boltlink:pg-pw@127.0.0.1:5432/boltlink\nDB_POOL_SIZE=5\n",
    );
    let out = dir.config(&["--json"], &[("LOG_LEVEL", "debug")]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for secret in ["redis-pw", "pg-pw"] {
        assert!(!stdout.contains(secret), "{secret} printed: {stdout}");
    }
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let settings = json["settings"].as_array().expect("settings");
    let names: Vec<&str> = settings
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    let declared: Vec<&str> = ALL.iter().map(|v| v.name).collect();
    assert_eq!(
        names, declared,
        "every variable, once, in declaration order"
    );

    let shown = |name: &str| -> (String, String, String) {
        let s = settings.iter().find(|s| s["name"] == name).expect("shown");
        let field = |k: &str| s[k].as_str().unwrap_or("").to_string();
        (field("value"), field("source"), field("file"))
    };
    assert_eq!(
        shown("DATABASE_URL"),
        (
            "postgres://boltlink:***@127.0.0.1:5432/boltlink".into(),
            "setup-file".into(),
            dir.setup_env()
        )
    );
    assert_eq!(
        shown("REDIS_URL"),
        (
            "redis://:***@127.0.0.1:6379/".into(),
            "env-file".into(),
            dir.env_file()
        )
    );
    // The env file wins over setup.env, the environment over both.
    assert_eq!(
        shown("DB_POOL_SIZE"),
        ("20".into(), "env-file".into(), dir.env_file())
    );
    assert_eq!(
        shown("LOG_LEVEL"),
        ("debug".into(), "environment".into(), String::new())
    );
    assert_eq!(
        shown("REDIS_KEY_PREFIX"),
        ("boltlink:".into(), "default".into(), String::new())
    );
    assert_eq!(
        shown("PUBLIC_BASE_URL"),
        (
            "http://127.0.0.1:5000".into(),
            "default".into(),
            String::new()
        )
    );
    assert_eq!(
        shown("BOLTLINK_ENV_FILE"),
        (dir.env_file(), "environment".into(), String::new())
    );
    assert_eq!(
        json["unknown"],
        serde_json::json!([{ "name": "DB_POOLSIZE", "file": dir.env_file() }])
    );

    // The table says the same for people.
    let out = dir.config(&[], &[("LOG_LEVEL", "debug")]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    let line = |name: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} line: {table}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        line("DB_POOL_SIZE"),
        ["DB_POOL_SIZE", "20", &dir.env_file()]
    );
    assert_eq!(line("LOG_LEVEL"), ["LOG_LEVEL", "debug", "environment"]);
    assert_eq!(line("FRONTEND_URL"), ["FRONTEND_URL", "(unset)", "default"]);
    assert!(table.starts_with("CONNECTIONS\n"), "{table}");
    assert!(
        !table.contains("pg-pw") && !table.contains("redis-pw"),
        "{table}"
    );
    assert!(out.stderr.is_empty(), "{}", output_text(&out));
}

/// Variables for the `boltlinkctl` process itself.
type Environment<'a> = &'a [(&'a str, &'a str)];

#[test]
fn config_refuses_a_bad_configuration_with_exit_78_and_one_line_saying_where() {
    let database = "DATABASE_URL=postgres://u:p@127.0.0.1/db\n";
    // (env file lines after DATABASE_URL, environment, what the one line must say)
    let cases: [(&str, Environment<'_>, Vec<&str>); 4] = [
        (
            "DB_POOL_SIZE=0\n",
            &[],
            vec!["DB_POOL_SIZE", "from 1 to 500", "boltlink.env"],
        ),
        (
            "",
            &[("ACCESS_LOG", "verbose")],
            vec!["ACCESS_LOG", "not a boolean", "set in the environment"],
        ),
        (
            "",
            &[("DATABASE_URL", "")],
            vec!["DATABASE_URL: is not set"],
        ),
        (
            "this is not an assignment\n",
            &[],
            vec!["BOLTLINK_ENV_FILE", "boltlink.env:2"],
        ),
    ];
    for (extra, environment, wanted) in cases {
        let dir = EnvDir::new(&format!("{database}{extra}"), "");
        let out = dir.config(&[], environment);
        assert_eq!(
            out.status.code(),
            Some(78),
            "{extra:?}: {}",
            output_text(&out)
        );
        assert!(out.stdout.is_empty(), "{}", output_text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.starts_with("boltlinkctl: configuration error: "),
            "{stderr}"
        );
        for w in wanted {
            assert!(stderr.contains(w), "{w:?} missing: {stderr}");
        }
        assert!(!stderr.contains("u:p@"), "password printed: {stderr}");
    }

    // A named env file that does not exist is a configuration error too.
    let dir = EnvDir::new(database, "");
    let out = dir.config(&[], &[("BOLTLINK_ENV_FILE", "/nonexistent/boltlink.env")]);
    assert_eq!(out.status.code(), Some(78), "{}", output_text(&out));
}
