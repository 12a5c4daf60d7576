//! `boltlinkctl setup` against the test PostgreSQL, through `--admin-url` (the local
//! `runuser -u postgres` path is exercised in the systemd e2e, inside a container with
//! Debian's postgresql package): role and database created with a fresh password, settings in
//! `setup.env` beside the env file and nowhere else, migrations applied, idempotent reruns,
//! and clear failures.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sqlx::postgres::PgPoolOptions;

use crate::support::{admin_database_url, output_text, redis_url};

const CTL_BIN: &str = env!("CARGO_BIN_EXE_boltlinkctl");

/// A directory holding an env file, removed (with the role and database) on drop.
struct Installation {
    dir: PathBuf,
    name: String,
}

impl Installation {
    fn new(env_text: &str) -> Self {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("bl-setup-{tag}"));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("boltlink.env"), env_text).expect("env file");
        Self {
            dir,
            name: format!("bl_setup_{}", &tag[..12]),
        }
    }

    fn env_file(&self) -> PathBuf {
        self.dir.join("boltlink.env")
    }

    fn setup_env(&self) -> PathBuf {
        self.dir.join("setup.env")
    }

    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(CTL_BIN)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("BOLTLINK_ENV_FILE", self.env_file())
            .arg("setup")
            .args(args)
            .output()
            .expect("run boltlinkctl setup")
    }

    fn setup_with_admin(&self) -> Output {
        self.ctl(&["--admin-url", &admin_database_url(), "--name", &self.name])
    }
}

impl Drop for Installation {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let name = self.name.clone();
        // Drop runs outside the test's runtime: a small one of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(admin) = PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&admin_database_url())
                    .await
                {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&admin)
                        .await;
                    let _ = sqlx::query(&format!("DROP ROLE IF EXISTS {name}"))
                        .execute(&admin)
                        .await;
                }
            });
        })
        .join();
    }
}

fn database_url_in(path: &Path) -> String {
    let body = std::fs::read_to_string(path).expect("setup.env written");
    body.lines()
        .find_map(|l| l.strip_prefix("DATABASE_URL="))
        .expect("setup.env has DATABASE_URL")
        .to_string()
}

fn redis_settings(prefix: &str) -> String {
    format!(
        "# an administrator's file\nREDIS_URL={}\nREDIS_KEY_PREFIX={prefix}\n",
        redis_url()
    )
}

#[tokio::test]
async fn setup_creates_a_restricted_role_and_database_writes_setup_env_and_migrates() {
    let env_text = redis_settings("setup-test:");
    let inst = Installation::new(&env_text);
    let out = inst.setup_with_admin();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("database migrations are up to date"),
        "{stdout}"
    );
    assert!(stdout.contains("answers"), "{stdout}");
    assert!(
        !stdout.contains(&database_url_in(&inst.setup_env())),
        "the password must not be printed: {stdout}"
    );

    // The administrator's env file is untouched; setup.env is private to root (and the
    // services' group where it exists).
    assert_eq!(
        std::fs::read_to_string(inst.env_file()).expect("env"),
        env_text
    );
    let mode = std::fs::metadata(inst.setup_env())
        .expect("setup.env")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640, "setup.env mode {mode:o}");

    let url = database_url_in(&inst.setup_env());
    let parsed = url::Url::parse(&url).expect("DATABASE_URL parses");
    assert_eq!(parsed.username(), inst.name);
    assert_eq!(parsed.path(), format!("/{}", inst.name));
    assert_eq!(parsed.password().map(str::len), Some(32));

    // The new role logs in with that password, owns the migrated schema, and nothing more.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("log in with the written DATABASE_URL");
    let migrations: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .expect("migrations table");
    assert!(migrations >= 4, "{migrations} migrations applied");
    let (superuser, createrole, createdb): (bool, bool, bool) = sqlx::query_as(
        "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&pool)
    .await
    .expect("role");
    assert_eq!((superuser, createrole, createdb), (false, false, false));
    pool.close().await;

    // Again: the configured database is used, not recreated (same password).
    let out = inst.ctl(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("DATABASE_URL is configured; using it"));
    assert_eq!(database_url_in(&inst.setup_env()), url);

    // What the package's postinst runs: nothing to do.
    let out = inst.ctl(&["--if-unconfigured"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to do"));

    // Asking for a new database while one is configured is refused, not silently ignored.
    let out = inst.setup_with_admin();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already configured"));
    assert_eq!(database_url_in(&inst.setup_env()), url);
}

#[tokio::test]
async fn setup_refuses_bad_input_with_clear_messages_and_exit_codes() {
    // A broken env file is a configuration error (78) naming the line.
    let inst = Installation::new("REDIS_URL=redis://127.0.0.1:1/\nthis is not an assignment\n");
    let out = inst.setup_with_admin();
    assert_eq!(out.status.code(), Some(78), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("boltlink.env:2"), "{stderr}");
    assert!(!inst.setup_env().exists());

    let inst = Installation::new(&redis_settings("setup-test:"));
    for (args, want) in [
        (vec!["--name", "Bolt-Link"], "--name"),
        (
            vec!["--admin-url", "mysql://root@db/x"],
            "expected postgres://",
        ),
        (
            vec![
                "--admin-url",
                "postgres://nobody:wrong@127.0.0.1:1/postgres",
            ],
            "psql failed",
        ),
    ] {
        let out = inst.ctl(&args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            output_text(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!stderr.contains("wrong"), "password echoed: {stderr}");
        assert!(!inst.setup_env().exists(), "{args:?} wrote setup.env");
    }

    // The admin role itself is never the one setup restricts.
    let admin_user = url::Url::parse(&admin_database_url())
        .expect("admin url")
        .username()
        .to_string();
    let out = inst.ctl(&["--admin-url", &admin_database_url(), "--name", &admin_user]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("choose another --name"));
}

#[tokio::test]
async fn setup_fails_when_redis_does_not_answer_but_keeps_the_database_it_made() {
    let inst = Installation::new("REDIS_URL=redis://127.0.0.1:1/\n");
    let out = inst.setup_with_admin();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Redis at redis://127.0.0.1:1/ does not answer"),
        "{stderr}"
    );
    assert!(stderr.contains("redis-server"), "{stderr}");
    // The database part succeeded and is kept, so a rerun after fixing Redis only migrates.
    let url = database_url_in(&inst.setup_env());
    std::fs::write(inst.env_file(), redis_settings("setup-test:")).expect("fix Redis");
    let out = inst.ctl(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(database_url_in(&inst.setup_env()), url);
}
