//! Typed reads of declared variables: the value set (trimmed; empty counts as unset) or the
//! declared default, checked against the declared type and range. Section builders use only
//! this, so every message about a bad value has the same shape and names its variable.

use std::collections::HashMap;
use std::time::Duration;

use super::vars::{Fallback, Kind, Var};
use super::ConfigError;

pub(super) struct Reader<'a> {
    vars: &'a HashMap<String, String>,
    /// What computed defaults and `auto` values worked out to, for `boltlinkctl config`.
    resolved: Vec<(&'static str, String)>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(vars: &'a HashMap<String, String>) -> Self {
        Self {
            vars,
            resolved: Vec::new(),
        }
    }

    pub(super) fn into_resolved(self) -> Vec<(&'static str, String)> {
        self.resolved
    }

    /// The value set for `var`, if any.
    pub(super) fn set(&self, var: &Var) -> Option<&'a str> {
        self.vars
            .get(var.name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The value set, else the declared default literal (none for required, unset and
    /// computed defaults).
    pub(super) fn text(&self, var: &Var) -> Option<&'a str> {
        self.set(var).or(match var.default {
            Fallback::Value(v) => Some(v),
            _ => None,
        })
    }

    /// The value of a variable that must be set.
    pub(super) fn required(&self, var: &Var) -> Result<&'a str, ConfigError> {
        self.text(var).ok_or_else(|| {
            ConfigError::new(
                var.name,
                format!("is not set (expected {})", var.kind.describe()),
            )
        })
    }

    /// Records what a computed default or `auto` worked out to.
    pub(super) fn resolved(&mut self, var: &Var, value: impl ToString) {
        self.resolved.push((var.name, value.to_string()));
    }

    /// A whole number within the declared range.
    pub(super) fn number<T: TryFrom<u64>>(&self, var: &Var) -> Result<T, ConfigError> {
        let value = self.text(var).unwrap_or_else(|| no_default(var));
        self.number_from(var, value)
    }

    /// `value` as a whole number within `var`'s declared range (for values that may also be
    /// a word, such as `auto`).
    pub(super) fn number_from<T: TryFrom<u64>>(
        &self,
        var: &Var,
        value: &str,
    ) -> Result<T, ConfigError> {
        let (Kind::Number { min, max } | Kind::AutoNumber { min, max }) = var.kind else {
            panic!(
                "{} is declared as {:?}, not as a number",
                var.name, var.kind
            );
        };
        value
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| {
                ConfigError::new(
                    var.name,
                    format!("{value:?} is not a whole number from {min} to {max}"),
                )
            })
    }

    /// Milliseconds within the declared range.
    pub(super) fn millis(&self, var: &Var) -> Result<Duration, ConfigError> {
        self.number(var).map(Duration::from_millis)
    }

    /// Seconds within the declared range.
    pub(super) fn secs(&self, var: &Var) -> Result<Duration, ConfigError> {
        self.number(var).map(Duration::from_secs)
    }

    /// A boolean.
    pub(super) fn flag(&self, var: &Var) -> Result<bool, ConfigError> {
        assert_eq!(var.kind, Kind::Bool, "{} is not declared Bool", var.name);
        let value = self
            .text(var)
            .unwrap_or_else(|| no_default(var))
            .to_ascii_lowercase();
        match value.as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::new(
                var.name,
                format!("{value:?} is not a boolean (true/false)"),
            )),
        }
    }

    /// The value (set or default) through a parser of the section's own; its message is
    /// prefixed with the value, as in `"localhost": expected IP:PORT`.
    pub(super) fn parse<T>(
        &self,
        var: &Var,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let value = self.text(var).unwrap_or_else(|| no_default(var));
        parse(value).map_err(|m| ConfigError::new(var.name, format!("{value:?}: {m}")))
    }
}

/// A typed read of a variable with no literal default is a mistake in the section code
/// (it must handle the unset case itself), caught by the tests that read every default.
fn no_default(var: &Var) -> ! {
    panic!(
        "{} has no literal default ({:?}); read it with `set`",
        var.name, var.default
    )
}
