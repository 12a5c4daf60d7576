//! The documentation agrees with the declarations it documents: the README's configuration
//! table, `boltlink.env(5)` and the commented `packaging/boltlink.env` with the variables in
//! `config::vars`; `boltlinkctl(8)` and the README's command table with the clap command
//! tree. Adding a variable or a command without documenting it (or the reverse) fails here.

use std::collections::BTreeSet;
use std::path::Path;

use boltlink::config::vars::{Fallback, Kind, Var, ALL};
use boltlink::ctl::cli;

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn declared() -> BTreeSet<&'static str> {
    ALL.iter().map(|v| v.name).collect()
}

/// Fails with every problem at once, so one run shows all that needs fixing.
fn assert_no_problems(what: &str, problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{what}:\n  - {}",
        problems.join("\n  - ")
    );
}

/// `(name, default cell)` of each row of the README's configuration table.
fn readme_configuration_rows() -> Vec<(String, String)> {
    let readme = read("README.md");
    let section = readme
        .split("\n## Configuration\n")
        .nth(1)
        .expect("README has a Configuration section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split(" | ").collect();
            (
                cells[0].trim().trim_matches('`').to_string(),
                cells.get(1).map_or("", |c| c.trim()).to_string(),
            )
        })
        .collect()
}

#[test]
fn the_readme_configuration_table_lists_exactly_the_declared_variables_and_defaults() {
    let rows = readme_configuration_rows();
    let mut problems = Vec::new();
    let listed: BTreeSet<&str> = rows.iter().map(|(name, _)| name.as_str()).collect();
    for name in declared().difference(&listed) {
        problems.push(format!(
            "{name} is declared in src/config/vars.rs but not in the README"
        ));
    }
    for (name, default) in &rows {
        match Var::named(name) {
            None => problems.push(format!(
                "{name} is in the README but not declared in src/config/vars.rs"
            )),
            Some(var) if *default != var.default.readme_cell() => problems.push(format!(
                "{name}: the README says the default is {default}, the declaration {}",
                var.default.readme_cell()
            )),
            Some(_) => {}
        }
    }
    if listed.len() != rows.len() {
        problems.push("a variable has two rows".to_string());
    }
    assert_no_problems("README.md, section Configuration", problems);
}

/// A variable's entry in `boltlink.env(5)`: its `.SH` heading and its `.TP` tag line.
struct ManEntry {
    name: String,
    heading: String,
    tag: String,
}

fn man_entries(page: &str) -> Vec<ManEntry> {
    let mut heading = String::new();
    let mut entries = Vec::new();
    let mut lines = page.lines();
    while let Some(line) = lines.next() {
        if let Some(h) = line.strip_prefix(".SH ") {
            heading = h.trim_matches('"').to_string();
        } else if line == ".TP" {
            let Some(tag) = lines.next() else { break };
            let Some(rest) = tag.strip_prefix(".BR ").or(tag.strip_prefix(".B ")) else {
                continue;
            };
            let name = rest.split_whitespace().next().unwrap_or("");
            if !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                entries.push(ManEntry {
                    name: name.to_string(),
                    heading: heading.clone(),
                    tag: tag.to_string(),
                });
            }
        }
    }
    entries
}

/// What a variable's tag line in `boltlink.env(5)` must say, if anything is wrong.
fn man_tag_problem(var: &Var, tag: &str) -> Option<String> {
    let escaped = |v: &str| v.replace('-', "\\-");
    let default_ok = match var.default {
        Fallback::Value(v) => tag.contains(&format!("\" (default \" {} ", escaped(v))),
        Fallback::Required => !tag.contains("(default"),
        Fallback::Unset => tag.contains("(default: unset)"),
        Fallback::Computed(_) => tag.contains("(default"),
    };
    let range_ok = match var.kind {
        Kind::Number { min, max } | Kind::AutoNumber { min, max } => {
            tag.contains(&format!("{min}\\(en{max}"))
        }
        Kind::Bool | Kind::Text(_) => true,
    };
    (!default_ok || !range_ok).then(|| {
        format!(
            "{}: the tag line {tag:?} should give the default {:?}{}",
            var.name,
            var.default,
            match var.kind {
                Kind::Number { min, max } | Kind::AutoNumber { min, max } =>
                    format!(" and the range {min}\\(en{max}"),
                _ => String::new(),
            }
        )
    })
}

#[test]
fn the_env_man_page_documents_every_declared_variable_in_its_section() {
    let entries = man_entries(&read("packaging/man/boltlink.env.5"));
    let mut problems = Vec::new();
    let listed: BTreeSet<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    for name in declared().difference(&listed) {
        problems.push(format!("{name} is declared but has no entry"));
    }
    for entry in &entries {
        let Some(var) = Var::named(&entry.name) else {
            problems.push(format!("{} has an entry but is not declared", entry.name));
            continue;
        };
        if entry.heading != var.section.title() {
            problems.push(format!(
                "{} is under {} but declared in section {}",
                var.name,
                entry.heading,
                var.section.title()
            ));
        }
        problems.extend(man_tag_problem(var, &entry.tag));
    }
    assert_no_problems("packaging/man/boltlink.env.5", problems);
}

#[test]
fn the_packaged_env_file_only_names_declared_variables_with_their_defaults() {
    let text = read("packaging/boltlink.env");
    let mut problems = Vec::new();
    for line in text.lines() {
        let assignment = line.strip_prefix('#').unwrap_or(line).trim();
        let Some((name, value)) = assignment.split_once('=') else {
            continue;
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            continue;
        }
        match Var::named(name).map(|v| v.default) {
            None => problems.push(format!("{name} is not a declared variable")),
            // A commented-out line with a literal default shows that default.
            Some(Fallback::Value(default)) if line.starts_with('#') && value != default => {
                problems.push(format!("{line:?}: the default is {default}"))
            }
            Some(_) => {}
        }
    }
    assert_no_problems("packaging/boltlink.env", problems);
}

/// Every command path of `boltlinkctl` (`status`, `keys create`, …) with its long options.
fn command_paths() -> Vec<(String, Vec<String>)> {
    fn walk(cmd: &clap::Command, prefix: &str, out: &mut Vec<(String, Vec<String>)>) {
        for sub in cmd.get_subcommands() {
            let path = format!("{prefix}{}", sub.get_name()).trim().to_string();
            if sub.has_subcommands() {
                walk(sub, &format!("{path} "), out);
            } else {
                let longs = sub
                    .get_arguments()
                    .filter_map(|a| a.get_long())
                    .filter(|l| !matches!(*l, "help" | "version"))
                    .map(str::to_string)
                    .collect();
                out.push((path, longs));
            }
        }
    }
    let mut out = Vec::new();
    walk(&<cli::Cli as clap::CommandFactory>::command(), "", &mut out);
    out
}

#[test]
fn the_boltlinkctl_man_page_and_readme_document_every_command_and_option() {
    let page = read("packaging/man/boltlinkctl.8");
    let synopsis = page
        .split(".SH SYNOPSIS")
        .nth(1)
        .and_then(|s| s.split(".SH ").next())
        .expect("a SYNOPSIS section");
    let readme = read("README.md");
    let mut problems = Vec::new();
    for (path, longs) in command_paths() {
        if !synopsis.contains(&format!(".B boltlinkctl {path}\n")) {
            problems.push(format!(
                "boltlinkctl.8: no `.B boltlinkctl {path}` in SYNOPSIS"
            ));
        }
        for long in longs {
            let escaped = format!("\\-\\-{}", long.replace('-', "\\-"));
            if !page.contains(&escaped) {
                problems.push(format!(
                    "boltlinkctl.8: `{path} --{long}` is not documented"
                ));
            }
        }
        if !readme.contains(&format!("`boltlinkctl {path}")) {
            problems.push(format!(
                "README.md: `boltlinkctl {path}` is not in the command table"
            ));
        }
    }
    assert_no_problems("boltlinkctl documentation", problems);
}
