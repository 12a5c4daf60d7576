//! `boltlinkctl config`: every configuration variable with the value in effect and where it
//! came from (the declared default, `setup.env`, the env file, or the environment), secrets
//! redacted. The values are worked out by the code the services run (`config::explain`), so
//! a configuration this accepts is one they accept, and a bad one fails the same way.

use std::collections::HashMap;
use std::io::Write;

use crate::config::vars::Section;
use crate::config::{self, ConfigError, Explained, Layers, Setting, Source};

/// Why `config` failed: the configuration (exit 78) or writing the output (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum ShowError {
    /// The one line to print: the error, and where the bad value was set.
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Output(#[from] std::io::Error),
}

/// Explains the configuration this process would run with (its environment and the env
/// files it names) and writes it to `out`, as a table or as JSON.
pub fn show(
    environment: HashMap<String, String>,
    json: bool,
    out: &mut impl Write,
) -> Result<(), ShowError> {
    let layers = Layers::read(environment).map_err(|e| ShowError::Config(e.to_string()))?;
    let explained = config::explain(&layers).map_err(|e| located(&layers, &e))?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &explained).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        out.write_all(render(&explained).as_bytes())?;
    }
    Ok(())
}

/// The error line, with where the offending value was set when it was set somewhere.
fn located(layers: &Layers, e: &ConfigError) -> ShowError {
    let place = match config::source_of(layers, &e.var) {
        (Source::Environment, _) => " (set in the environment)".to_string(),
        (_, Some(file)) => format!(" (set in {})", file.display()),
        (_, None) => String::new(),
    };
    ShowError::Config(format!("{e}{place}"))
}

/// One heading per section, then `NAME  VALUE  SOURCE` lines, aligned.
pub fn render(explained: &Explained) -> String {
    let rows: Vec<(&Setting, String, String)> = explained
        .settings
        .iter()
        .map(|s| {
            let value = s.value.clone().unwrap_or_else(|| "(unset)".to_string());
            (s, value, source_text(s))
        })
        .collect();
    let name_width = rows.iter().map(|(s, _, _)| s.name.len()).max().unwrap_or(0);
    // Long values (URLs) push their source right instead of widening every line.
    let value_width = rows
        .iter()
        .map(|(_, v, _)| v.chars().count())
        .filter(|n| *n <= 40)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    let mut section: Option<Section> = None;
    for (setting, value, source) in &rows {
        if section != Some(setting.section) {
            if section.is_some() {
                out.push('\n');
            }
            out.push_str(setting.section.title());
            out.push('\n');
            section = Some(setting.section);
        }
        out.push_str(&format!(
            "  {:<name_width$}  {:<value_width$}  {source}\n",
            setting.name, value
        ));
    }
    if !explained.unknown.is_empty() {
        out.push_str("\nNOT BOLTLINK SETTINGS (ignored)\n");
        for u in &explained.unknown {
            out.push_str(&format!(
                "  {:<name_width$}  in {}\n",
                u.name,
                u.file.display()
            ));
        }
    }
    out
}

fn source_text(setting: &Setting) -> String {
    match (setting.source, &setting.file) {
        (Source::Default, _) => "default".to_string(),
        (Source::Environment, _) => "environment".to_string(),
        (Source::SetupFile | Source::EnvFile, Some(file)) => file.display().to_string(),
        (Source::SetupFile, None) => "setup.env".to_string(),
        (Source::EnvFile, None) => "env file".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Unknown;

    fn setting(
        name: &'static str,
        section: Section,
        value: Option<&str>,
        source: Source,
    ) -> Setting {
        Setting {
            name,
            section,
            value: value.map(str::to_string),
            source,
            file: matches!(source, Source::EnvFile | Source::SetupFile)
                .then(|| "/etc/boltlink/boltlink.env".into()),
        }
    }

    #[test]
    fn the_table_has_a_heading_per_section_aligned_columns_and_the_ignored_names() {
        let explained = Explained {
            settings: vec![
                setting(
                    "DATABASE_URL",
                    Section::Connections,
                    Some("postgres://u:***@h/db"),
                    Source::EnvFile,
                ),
                setting(
                    "DB_POOL_SIZE",
                    Section::Connections,
                    Some("10"),
                    Source::Default,
                ),
                setting("FRONTEND_URL", Section::Http, None, Source::Default),
                setting(
                    "LOG_LEVEL",
                    Section::Processes,
                    Some("debug"),
                    Source::Environment,
                ),
            ],
            unknown: vec![Unknown {
                name: "DB_POOLSIZE".into(),
                file: "/etc/boltlink/boltlink.env".into(),
            }],
        };
        assert_eq!(
            render(&explained),
            "\
CONNECTIONS
  DATABASE_URL  postgres://u:***@h/db  /etc/boltlink/boltlink.env
  DB_POOL_SIZE  10                     default

HTTP
  FRONTEND_URL  (unset)                default

PROCESSES
  LOG_LEVEL     debug                  environment

NOT BOLTLINK SETTINGS (ignored)
  DB_POOLSIZE   in /etc/boltlink/boltlink.env
"
        );
    }
}
