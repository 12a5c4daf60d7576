//! What `boltlinkctl config` shows: every declared variable's value in effect and where it
//! came from, with secrets redacted — worked out by the same code the services run
//! ([`Config::resolve`]), so what it prints is what they use.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;
use url::Url;

use super::env_files::Layers;
use super::vars::{Fallback, Section, Var, ALL, BOLTLINK_ENV_FILE};
use super::{Config, ConfigError};

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// Not set (or set empty): the declared default.
    Default,
    /// `setup.env`, written by `boltlinkctl setup`.
    SetupFile,
    /// The administrator's env file.
    EnvFile,
    /// The process environment.
    Environment,
}

/// One line of `boltlinkctl config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    pub name: &'static str,
    pub section: Section,
    /// The value in effect, redacted; `None` when unset and without a default.
    pub value: Option<String>,
    pub source: Source,
    /// The file the value was read from, for [`Source::SetupFile`] and [`Source::EnvFile`].
    pub file: Option<PathBuf>,
}

/// Every declared variable, and the names in the env files that are not BoltLink settings
/// (typos, or settings of something else), which the services ignore.
#[derive(Debug, Clone, Serialize)]
pub struct Explained {
    pub settings: Vec<Setting>,
    pub unknown: Vec<Unknown>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unknown {
    pub name: String,
    pub file: PathBuf,
}

/// Validates the configuration `layers` make (a bad one is the same [`ConfigError`] the
/// services would exit 78 with) and explains every variable.
pub fn explain(layers: &Layers) -> Result<Explained, ConfigError> {
    let merged = layers.merged();
    let (_, resolved) = Config::resolve(&merged)?;
    let resolved: HashMap<&str, String> = resolved.into_iter().collect();
    let settings = ALL
        .iter()
        .map(|var| {
            if var.name == BOLTLINK_ENV_FILE.name {
                // Chosen from the process environment alone, before the files are read.
                return Setting {
                    name: var.name,
                    section: var.section,
                    value: Some(layers.env_file.0.display().to_string()),
                    source: if layers.env_file_named {
                        Source::Environment
                    } else {
                        Source::Default
                    },
                    file: None,
                };
            }
            let (source, file) = source_of(layers, var.name);
            let set = (source != Source::Default).then(|| merged[var.name].trim().to_string());
            let value = resolved
                .get(var.name)
                .cloned()
                .or(set)
                .or(match var.default {
                    Fallback::Value(v) => Some(v.to_string()),
                    _ => None,
                });
            Setting {
                name: var.name,
                section: var.section,
                value: value.map(|v| redact(var, &v)),
                source,
                file,
            }
        })
        .collect();
    let mut unknown: Vec<Unknown> = [&layers.setup_file, &layers.env_file]
        .into_iter()
        .flat_map(|(path, vars)| {
            vars.keys()
                .filter(|name| Var::named(name).is_none())
                .map(|name| Unknown {
                    name: name.clone(),
                    file: path.clone(),
                })
        })
        .collect();
    unknown.sort_by(|a, b| (&a.file, &a.name).cmp(&(&b.file, &b.name)));
    Ok(Explained { settings, unknown })
}

/// Which layer the value of `name` in effect comes from (a value set empty counts as unset,
/// so its default applies, whichever layer set it empty).
pub fn source_of(layers: &Layers, name: &str) -> (Source, Option<PathBuf>) {
    let set = |vars: &HashMap<String, String>| vars.get(name).map(|v| !v.trim().is_empty());
    match (
        set(&layers.environment),
        set(&layers.env_file.1),
        set(&layers.setup_file.1),
    ) {
        (Some(true), _, _) => (Source::Environment, None),
        (None, Some(true), _) => (Source::EnvFile, Some(layers.env_file.0.clone())),
        (None, None, Some(true)) => (Source::SetupFile, Some(layers.setup_file.0.clone())),
        _ => (Source::Default, None),
    }
}

/// `value` as `boltlinkctl config` may show it: a secret variable's value hidden, and in
/// any URL the password and secret-looking query parameters replaced by `***`.
fn redact(var: &Var, value: &str) -> String {
    if var.secret {
        return "(hidden)".to_string();
    }
    redact_urls(value).unwrap_or_else(|| value.to_string())
}

/// [`redact_url`] for a value that is a URL or a comma-separated list of them (a Redis
/// Cluster's nodes): every URL's password hidden. `None` when it is no URL or hides nothing.
pub fn redact_urls(value: &str) -> Option<String> {
    if !value.contains("://") {
        return None;
    }
    let mut hidden = false;
    let mut parts = Vec::new();
    for part in value.split(',') {
        let url = Url::parse(part.trim()).ok()?;
        match redact_url(&url) {
            Some(r) => {
                hidden = true;
                parts.push(r);
            }
            None => parts.push(part.to_string()),
        }
    }
    hidden.then(|| parts.join(","))
}

/// `url` with its password and secret-looking query parameters (`password=`,
/// `sslpassword=`, `token=`, …) replaced by `***`; `None` when it holds none.
pub fn redact_url(url: &Url) -> Option<String> {
    let mut url = url.clone();
    let mut hidden = false;
    if url.password().is_some() {
        // Only fails for URLs that cannot have a password, and this one has one.
        hidden = url.set_password(Some("***")).is_ok();
    }
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    if pairs.iter().any(|(k, _)| looks_secret(k)) {
        url.query_pairs_mut().clear().extend_pairs(
            pairs
                .iter()
                .map(|(k, v)| (k.as_str(), if looks_secret(k) { "***" } else { v.as_str() })),
        );
        hidden = true;
    }
    hidden.then(|| url.to_string())
}

/// Whether a variable or parameter name looks like it holds a password, key or token: its
/// last `_`-separated word is `key`, or ends in `password`, `secret`, `token`, … (so
/// `sslpassword` and `API_KEY` do, `PASSWORD_HASH_CONCURRENCY` and `REDIS_KEY_PREFIX` not).
pub fn looks_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let last = name.rsplit('_').next().unwrap_or(&name);
    last == "key"
        || [
            "apikey",
            "password",
            "passwd",
            "secret",
            "token",
            "credential",
            "credentials",
        ]
        .iter()
        .any(|w| last.ends_with(w))
}
