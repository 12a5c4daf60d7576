//! `boltlinkctl setup`: makes a single-machine installation ready to start.
//!
//! With no `DATABASE_URL` configured anywhere (process environment, `setup.env`, the env
//! file), it creates the PostgreSQL role and database `boltlink` with a new random password,
//! through `psql` as the superuser (the local `postgres` account by default, or the server an
//! `--admin-url` points at), and writes `DATABASE_URL` to `setup.env` beside the env file
//! (`/etc/boltlink/setup.env`, mode 0640, group `boltlink`). The administrator's env file is
//! never edited: it is the package's conffile, and its settings override `setup.env`.
//!
//! Then, in every case, it applies the migrations and checks that Redis answers, so a zero
//! exit means `systemctl start boltlink.target` will find what it needs. Running it again is
//! safe: a configured database is only migrated and checked.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use rand::distributions::Alphanumeric;
use rand::Rng;
use url::Url;

use crate::config::{self, Config, ConfigError};

/// The role and the database `setup` creates unless told otherwise.
pub const DEFAULT_NAME: &str = "boltlink";
/// The system group the services run as; `setup.env` is readable by it.
pub const SERVICE_GROUP: &str = "boltlink";

pub struct SetupOptions {
    /// The name of the role and of the database (an SQL identifier in lower case).
    pub name: String,
    /// A superuser connection URL; `None` means the local server as the `postgres` account.
    pub admin_url: Option<String>,
    /// Do nothing when a database is already configured (the package's postinst).
    pub if_unconfigured: bool,
}

/// Why `setup` failed: a configuration error (exit 78) or anything else (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
}

fn has_database_url(vars: &HashMap<String, String>) -> bool {
    vars.get(config::vars::DATABASE_URL.name)
        .is_some_and(|v| !v.trim().is_empty())
}

pub async fn setup(opts: SetupOptions, out: &mut impl Write) -> Result<(), SetupError> {
    if !is_plain_identifier(&opts.name) {
        return Err(anyhow::anyhow!(
            "--name {:?}: expected 1 to 63 lower-case letters, digits or _, not starting with a digit",
            opts.name
        )
        .into());
    }
    let process_env: HashMap<String, String> = std::env::vars().collect();
    let mut vars = config::with_env_files(process_env.clone())?;
    let (env_file, _) = config::env_file_for(&process_env);
    let setup_file = config::setup_env_file_beside(&env_file);

    if has_database_url(&vars) {
        if opts.if_unconfigured {
            say(
                out,
                "a database is already configured (DATABASE_URL); nothing to do",
            );
            return Ok(());
        }
        if opts.admin_url.is_some() {
            return Err(anyhow::anyhow!(
                "--admin-url creates a new database, but DATABASE_URL is already configured; \
                 remove it (from {} or {}) to set up a new one",
                setup_file.display(),
                env_file.display()
            )
            .into());
        }
        say(out, "DATABASE_URL is configured; using it");
    } else {
        let superuser = match &opts.admin_url {
            Some(url) => Superuser::from_url(url)?,
            None => Superuser::local()?,
        };
        if superuser.user() == Some(opts.name.as_str()) {
            return Err(anyhow::anyhow!(
                "--admin-url connects as {:?}, the role setup would create and restrict; \
                 choose another --name",
                opts.name
            )
            .into());
        }
        let database_url = create_database(&superuser, &opts.name, out)?;
        // Validate what we are about to write with the same rules as every service.
        vars.insert(
            config::vars::DATABASE_URL.name.to_string(),
            database_url.clone(),
        );
        Config::from_map(&vars)?;
        write_setup_env(&setup_file, &database_url)?;
        say(
            out,
            &format!(
                "wrote DATABASE_URL to {} (settings in {} override it)",
                setup_file.display(),
                env_file.display()
            ),
        );
    }

    let config = Config::from_map(&vars)?;
    super::migrate(&config).await.with_context(|| {
        format!(
            "PostgreSQL at {} is configured but not usable",
            redacted(&config.database.url)
        )
    })?;
    say(out, "database migrations are up to date");
    let (redis, _) = super::status::connect_redis(&config).await;
    if !redis.ok {
        return Err(anyhow::anyhow!(
            "Redis at {} does not answer ({}): install and start redis-server \
             (apt-get install redis-server), or set REDIS_URL in {}",
            redacted(&config.redis.url),
            redis.error.unwrap_or_default(),
            env_file.display()
        )
        .into());
    }
    say(
        out,
        &format!("Redis at {} answers", redacted(&config.redis.url)),
    );
    say(out, "ready: systemctl start boltlink.target");
    Ok(())
}

fn say(out: &mut impl Write, line: &str) {
    // A closed stdout must not turn a successful setup into a failure.
    let _ = writeln!(out, "boltlinkctl setup: {line}");
}

/// A URL with its password replaced, for messages.
pub fn redacted(url: &str) -> String {
    match config::redact_urls(url) {
        Some(r) => r,
        None if url.split(',').all(|u| Url::parse(u.trim()).is_ok()) => url.to_string(),
        None => "(unparsable URL)".to_string(),
    }
}

/// How `psql` reaches the server as a superuser.
enum Superuser {
    /// `runuser -u postgres -- psql`: peer authentication on the local Unix socket.
    Local,
    /// `psql` with libpq variables taken from an `--admin-url`.
    Url {
        env: Vec<(&'static str, String)>,
        host: String,
        port: u16,
        sslmode: Option<String>,
    },
}

impl Superuser {
    fn local() -> anyhow::Result<Self> {
        let psql = Path::new("/usr/bin/psql");
        let has_postgres_account = std::fs::read_to_string("/etc/passwd")
            .map(|t| t.lines().any(|l| l.starts_with("postgres:")))
            .unwrap_or(false);
        if !psql.exists() || !has_postgres_account {
            bail!(
                "no local PostgreSQL: install it (apt-get install postgresql) and run \
                 `boltlinkctl setup` again, or point DATABASE_URL in {} at a PostgreSQL \
                 elsewhere (or run `boltlinkctl setup --admin-url postgres://SUPERUSER@HOST/postgres`)",
                config::DEFAULT_ENV_FILE
            );
        }
        Ok(Self::Local)
    }

    fn from_url(url: &str) -> anyhow::Result<Self> {
        let u = Url::parse(url).map_err(|e| anyhow::anyhow!("--admin-url: {e}"))?;
        if !matches!(u.scheme(), "postgres" | "postgresql") {
            bail!("--admin-url: expected postgres://USER:PASSWORD@HOST:PORT/DATABASE");
        }
        let host = u
            .host_str()
            .filter(|h| !h.is_empty())
            .context("--admin-url has no host")?
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        let port = u.port().unwrap_or(5432);
        let decode = |s: &str| {
            percent_decode(s).with_context(|| format!("--admin-url: bad percent-encoding in {s:?}"))
        };
        let mut env = vec![("PGHOST", host.clone()), ("PGPORT", port.to_string())];
        if !u.username().is_empty() {
            env.push(("PGUSER", decode(u.username())?));
        }
        if let Some(p) = u.password() {
            env.push(("PGPASSWORD", decode(p)?));
        }
        let database = u.path().trim_start_matches('/');
        env.push((
            "PGDATABASE",
            if database.is_empty() {
                "postgres".to_string()
            } else {
                decode(database)?
            },
        ));
        let sslmode = u
            .query_pairs()
            .find(|(k, _)| k == "sslmode")
            .map(|(_, v)| v.into_owned());
        if let Some(mode) = &sslmode {
            env.push(("PGSSLMODE", mode.clone()));
        }
        Ok(Self::Url {
            env,
            host,
            port,
            sslmode,
        })
    }

    /// The role `psql` connects as, when known.
    fn user(&self) -> Option<&str> {
        match self {
            Superuser::Local => Some("postgres"),
            Superuser::Url { env, .. } => env
                .iter()
                .find(|(k, _)| *k == "PGUSER")
                .map(|(_, v)| v.as_str()),
        }
    }

    /// Runs `script` through `psql` and returns its unaligned output.
    fn psql(&self, script: &str) -> anyhow::Result<String> {
        let mut cmd = match self {
            Superuser::Local => {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--", "psql"]);
                c
            }
            Superuser::Url { env, .. } => {
                let mut c = Command::new("psql");
                for (k, v) in env {
                    c.env(k, v);
                }
                c
            }
        };
        cmd.args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-f", "-"])
            // The postgres account may not enter root's working directory.
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| match self {
            Superuser::Local => "cannot run `runuser -u postgres -- psql`".to_string(),
            Superuser::Url { .. } => {
                "cannot run psql (apt-get install postgresql-client)".to_string()
            }
        })?;
        // The password travels on stdin, never on a command line.
        child
            .stdin
            .take()
            .context("psql has no stdin")?
            .write_all(script.as_bytes())
            .context("writing to psql")?;
        let output = child.wait_with_output().context("waiting for psql")?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
            let hint = match self {
                Superuser::Local => {
                    "is the local PostgreSQL running? (pg_lsclusters; systemctl start postgresql)"
                }
                Superuser::Url { .. } => {
                    "check --admin-url: it must name a role that may create roles and databases"
                }
            };
            bail!("psql failed ({}): {stderr}; {hint}", output.status);
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// Creates (or takes over) the role and database and returns the `DATABASE_URL` for them.
fn create_database(
    superuser: &Superuser,
    name: &str,
    out: &mut impl Write,
) -> anyhow::Result<String> {
    let password: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    // Alphanumeric only: the literal below needs no escaping. \gexec runs the CREATE only
    // when the SELECT returns it, so every statement is safe to repeat.
    let script = format!(
        "SELECT 'CREATE ROLE {name}' WHERE NOT EXISTS \
           (SELECT FROM pg_roles WHERE rolname = '{name}')\\gexec\n\
         ALTER ROLE {name} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{password}';\n\
         SELECT 'CREATE DATABASE {name} OWNER {name}' WHERE NOT EXISTS \
           (SELECT FROM pg_database WHERE datname = '{name}')\\gexec\n\
         ALTER DATABASE {name} OWNER TO {name};\n\
         SELECT current_setting('port');\n"
    );
    let output = superuser.psql(&script)?;
    let (host, port, sslmode) = match superuser {
        Superuser::Local => {
            let port = output
                .lines()
                .rev()
                .find_map(|l| l.trim().parse::<u16>().ok())
                .context("psql did not report the server's port")?;
            ("127.0.0.1".to_string(), port, None)
        }
        Superuser::Url {
            host,
            port,
            sslmode,
            ..
        } => (host.clone(), *port, sslmode.clone()),
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let mut url = format!("postgres://{name}:{password}@{host}:{port}/{name}");
    if let Some(mode) = sslmode {
        url.push_str(&format!("?sslmode={mode}"));
    }
    say(
        out,
        &format!("PostgreSQL role and database {name} ready on {host}:{port} (new password)"),
    );
    Ok(url)
}

/// A name that needs no quoting in SQL: `[a-z_][a-z0-9_]*`, at most 63 bytes.
fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

/// `%XX` decoding for the user, password and database parts of a URL.
fn percent_decode(s: &str) -> anyhow::Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).context("truncated %-escape")?;
            out.push(u8::from_str_radix(hex, 16).context("bad %-escape")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).context("not UTF-8")
}

/// Writes `setup.env` atomically: mode 0640, owned by root and the services' group when that
/// group exists (the package creates it), so the secret is readable by the services only.
fn write_setup_env(path: &Path, database_url: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = format!(
        "# Written by `boltlinkctl setup` on {}. Not a configuration file to edit: settings in\n\
         # boltlink.env (beside this file) override these. Removed when the package is purged.\n\
         DATABASE_URL={database_url}\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    let tmp: PathBuf = dir.join(format!(".setup.env.boltlinkctl-{}", std::process::id()));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o640))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
    }
    if let Some(gid) = group_id(SERVICE_GROUP) {
        if let Err(e) = std::os::unix::fs::chown(&tmp, None, Some(gid)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e)
                .with_context(|| format!("giving {} to group {SERVICE_GROUP}", path.display()));
        }
    }
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// The numeric id of a group from /etc/group.
fn group_id(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name)
            .then(|| fields.nth(1)?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_url_becomes_libpq_variables_without_a_command_line_password() {
        let Superuser::Url {
            env,
            host,
            port,
            sslmode,
        } = Superuser::from_url(
            "postgres://ad%40min:p%2Fss@db.example:6543/template1?sslmode=require",
        )
        .expect("parses")
        else {
            panic!("expected a URL superuser");
        };
        let env: HashMap<_, _> = env.into_iter().collect();
        assert_eq!(env["PGUSER"], "ad@min");
        assert_eq!(env["PGPASSWORD"], "p/ss");
        assert_eq!(env["PGDATABASE"], "template1");
        assert_eq!(env["PGSSLMODE"], "require");
        assert_eq!((host.as_str(), port), ("db.example", 6543));
        assert_eq!(sslmode.as_deref(), Some("require"));
    }

    #[test]
    fn bad_admin_urls_are_refused_with_a_reason() {
        for (url, want) in [
            ("mysql://root@db/x", "expected postgres://"),
            ("not a url", "--admin-url"),
            ("postgres:///postgres", "no host"),
        ] {
            let err = Superuser::from_url(url).err().expect("refused").to_string();
            assert!(err.contains(want), "{url}: {err}");
        }
    }

    #[test]
    fn names_must_be_plain_sql_identifiers() {
        for ok in ["boltlink", "bl_setup_1", "_x"] {
            assert!(is_plain_identifier(ok), "{ok}");
        }
        for bad in [
            "",
            "1abc",
            "BoltLink",
            "bolt-link",
            "x;drop",
            &"a".repeat(64),
        ] {
            assert!(!is_plain_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn passwords_are_redacted_in_messages() {
        assert_eq!(
            redacted("postgres://boltlink:secret@127.0.0.1:5432/boltlink"),
            "postgres://boltlink:***@127.0.0.1:5432/boltlink"
        );
        assert_eq!(
            redacted("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
    }

    #[test]
    fn group_ids_come_from_etc_group() {
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_id("no-such-group-boltlink-test"), None);
    }
}
