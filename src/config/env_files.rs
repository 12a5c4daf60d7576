//! The env files: `setup.env` (written by `boltlinkctl setup`), then the administrator's env
//! file (`/etc/boltlink/boltlink.env`, or `BOLTLINK_ENV_FILE`), then the process environment
//! — each later layer wins. systemd's `EnvironmentFile=` lines load the same files in the
//! same order, so both paths agree.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::vars::BOLTLINK_ENV_FILE;
use super::ConfigError;

pub const DEFAULT_ENV_FILE: &str = "/etc/boltlink/boltlink.env";

/// The file `boltlinkctl setup` writes its database settings to, beside the env file
/// (`/etc/boltlink/setup.env`). It is read first, so the administrator's env file wins; the
/// units list it before `boltlink.env` in `EnvironmentFile=` for the same order.
pub const SETUP_ENV_FILE_NAME: &str = "setup.env";

/// The env file: `BOLTLINK_ENV_FILE` when set, else [`DEFAULT_ENV_FILE`]; and whether it was
/// named explicitly.
pub fn env_file_for(env: &HashMap<String, String>) -> (PathBuf, bool) {
    match env.get(BOLTLINK_ENV_FILE.name).filter(|p| !p.is_empty()) {
        Some(p) => (p.into(), true),
        None => (DEFAULT_ENV_FILE.into(), false),
    }
}

/// `setup.env` in the env file's directory.
pub fn setup_env_file_beside(env_file: &Path) -> PathBuf {
    env_file
        .parent()
        .unwrap_or(Path::new("/"))
        .join(SETUP_ENV_FILE_NAME)
}

/// `env` over the env files it names (see [`read_env_file_for`]): the variable map every
/// process and `boltlinkctl setup` decide from.
pub fn with_env_files(
    env: HashMap<String, String>,
) -> Result<HashMap<String, String>, ConfigError> {
    Ok(Layers::read(env)?.merged())
}

/// Loads `setup.env` (when it exists) and then the env file named by `BOLTLINK_ENV_FILE`, or
/// the default one when it exists; a variable in the env file overrides the same variable in
/// `setup.env`. An explicitly named env file that is missing is an error; a missing default
/// file is not.
pub fn read_env_file_for(
    env: &HashMap<String, String>,
) -> Result<HashMap<String, String>, ConfigError> {
    let layers = Layers::read(env.clone())?;
    let mut merged = layers.setup_file.1;
    merged.extend(layers.env_file.1);
    Ok(merged)
}

/// The three layers a configuration is made of, kept apart so that `boltlinkctl config` can
/// say where each value came from.
#[derive(Debug, Clone)]
pub struct Layers {
    /// `setup.env` and what it sets (empty when the file does not exist).
    pub setup_file: (PathBuf, HashMap<String, String>),
    /// The env file and what it sets.
    pub env_file: (PathBuf, HashMap<String, String>),
    /// Whether the env file was named by `BOLTLINK_ENV_FILE`.
    pub env_file_named: bool,
    pub environment: HashMap<String, String>,
}

impl Layers {
    /// Reads the env files `environment` names (see [`read_env_file_for`]).
    pub fn read(environment: HashMap<String, String>) -> Result<Self, ConfigError> {
        let (path, named) = env_file_for(&environment);
        let setup_path = setup_env_file_beside(&path);
        let setup = read_one_env_file(&setup_path, false)?;
        let env_file = read_one_env_file(&path, named)?;
        Ok(Self {
            setup_file: (setup_path, setup),
            env_file: (path, env_file),
            env_file_named: named,
            environment,
        })
    }

    /// Everything in one map, later layers winning.
    pub fn merged(&self) -> HashMap<String, String> {
        let mut merged = self.setup_file.1.clone();
        merged.extend(self.env_file.1.clone());
        merged.extend(self.environment.clone());
        merged
    }
}

fn read_one_env_file(path: &Path, required: bool) -> Result<HashMap<String, String>, ConfigError> {
    let shown = path.display();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_env_file(&text).map_err(|(line, msg)| {
            ConfigError::new(BOLTLINK_ENV_FILE.name, format!("{shown}:{line}: {msg}"))
        }),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(HashMap::new()),
        Err(e) => Err(ConfigError::new(
            BOLTLINK_ENV_FILE.name,
            format!("cannot read {shown}: {e}"),
        )),
    }
}

/// Parses `KEY=VALUE` lines as systemd's `EnvironmentFile=` does for the common cases:
/// comments (`#`, `;`), blank lines, optional `export `, single or double quotes.
pub fn parse_env_file(text: &str) -> Result<HashMap<String, String>, (usize, String)> {
    let mut out = HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err((line_no, "expected KEY=VALUE".to_string()));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err((line_no, format!("{key:?} is not a valid variable name")));
        }
        let value = value.trim();
        let value = if value.len() >= 2
            && ((value.starts_with('"') && value.ends_with('"'))
                || (value.starts_with('\'') && value.ends_with('\'')))
        {
            &value[1..value.len() - 1]
        } else {
            value
        };
        out.insert(key.to_string(), value.to_string());
    }
    Ok(out)
}
