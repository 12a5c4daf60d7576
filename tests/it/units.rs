//! The unit files in `systemd/` and `boltlink-generator`, checked without a running systemd:
//! the settings each DESIGN.md finding calls for are present, every service carries the same
//! hardening, and the generator turns API_INSTANCES into `boltlink.target.wants/` links.
//! (`scripts/systemd-e2e` runs all of it under a real systemd.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn unit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd")
}

/// `(section, key, value)` for every assignment, in order.
fn parse_unit(name: &str) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(unit_dir().join(name))
        .unwrap_or_else(|e| panic!("reading systemd/{name}: {e}"));
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("systemd/{name}: not an assignment: {line}"));
        out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
    }
    out
}

fn values(unit: &[(String, String, String)], section: &str, key: &str) -> Vec<String> {
    unit.iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.clone())
        .collect()
}

fn one(unit: &[(String, String, String)], section: &str, key: &str) -> String {
    let v = values(unit, section, key);
    assert_eq!(
        v.len(),
        1,
        "[{section}] {key}= set {} times: {v:?}",
        v.len()
    );
    v[0].clone()
}

const SERVICES: [&str; 4] = [
    "boltlink-api@.service",
    "boltlink-worker.service",
    "boltlink-aggregator.service",
    "boltlink-webhooks.service",
];

/// The services that are not API instances: one process each, at a lower CPU priority.
const BACKGROUND: [(&str, &str); 3] = [
    ("boltlink-worker.service", "worker"),
    ("boltlink-aggregator.service", "aggregator"),
    ("boltlink-webhooks.service", "webhooks"),
];

/// DESIGN.md finding 12 plus the rest that applies (exposure 1.1 with systemd 252).
const HARDENING: &[(&str, &str)] = &[
    ("User", "boltlink"),
    ("Group", "boltlink"),
    ("CapabilityBoundingSet", ""),
    ("AmbientCapabilities", ""),
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("PrivateUsers", "yes"),
    ("PrivateMounts", "yes"),
    ("ProtectProc", "invisible"),
    ("ProcSubset", "pid"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectHostname", "yes"),
    ("ProtectControlGroups", "yes"),
    ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
    ("RestrictNamespaces", "yes"),
    ("LockPersonality", "yes"),
    ("MemoryDenyWriteExecute", "yes"),
    ("RestrictRealtime", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("SystemCallArchitectures", "native"),
    ("SystemCallErrorNumber", "EPERM"),
    ("UMask", "0077"),
    ("KillMode", "mixed"),
    ("OOMPolicy", "stop"),
];

#[test]
fn every_service_runs_unprivileged_with_the_same_hardening_and_limits() {
    for name in SERVICES {
        let unit = parse_unit(name);
        for (key, want) in HARDENING {
            assert_eq!(one(&unit, "Service", key), *want, "{name}: {key}=");
        }
        assert_eq!(
            values(&unit, "Service", "SystemCallFilter"),
            vec!["@system-service", "~@privileged @resources"],
            "{name}"
        );
        // What `boltlinkctl setup` wrote, then the administrator's file, which wins (later
        // EnvironmentFile= lines override earlier ones): the order config.rs reads them in.
        assert_eq!(
            values(&unit, "Service", "EnvironmentFile"),
            vec!["-/etc/boltlink/setup.env", "-/etc/boltlink/boltlink.env"],
            "{name}"
        );
        // The service discipline the issue asks of every process.
        for (section, key, want) in [
            ("Service", "Type", "notify"),
            ("Service", "Restart", "on-failure"),
            ("Service", "RestartPreventExitStatus", "78"),
            ("Service", "TimeoutStopSec", "5s"),
            ("Service", "MemoryMax", "500M"),
            ("Service", "MemoryHigh", "450M"),
            ("Service", "WatchdogSec", "10s"),
            ("Service", "Slice", "boltlink.slice"),
            ("Unit", "PartOf", "boltlink.target"),
            ("Unit", "StartLimitIntervalSec", "0"),
        ] {
            assert_eq!(one(&unit, section, key), want, "{name}: [{section}] {key}=");
        }
    }
}

#[test]
fn background_work_yields_the_cpus_to_the_api_and_boltlinkctl_run_does_the_same() {
    let api = parse_unit("boltlink-api@.service");
    assert!(
        values(&api, "Service", "CPUWeight").is_empty()
            && values(&api, "Service", "Nice").is_empty(),
        "the API instances keep the default weight (100) and niceness (0)"
    );
    for (name, _) in BACKGROUND {
        let unit = parse_unit(name);
        assert_eq!(one(&unit, "Service", "CPUWeight"), "20", "{name}");
        assert_eq!(
            one(&unit, "Service", "Nice"),
            boltlink::ctl::run::BACKGROUND_NICE,
            "{name}"
        );
    }
}

#[test]
fn api_instances_share_one_runtime_directory_that_outlives_each_of_them() {
    let api = parse_unit("boltlink-api@.service");
    // One name for every instance (no %i): they must see each other's connection counts.
    assert_eq!(one(&api, "Service", "RuntimeDirectory"), "boltlink-api");
    assert_eq!(one(&api, "Service", "RuntimeDirectoryPreserve"), "yes");
}

#[test]
fn the_drain_fits_inside_the_stop_timeout() {
    // SHUTDOWN_TIMEOUT_MS defaults to 4 s, the click flush adds at most 1 s: TimeoutStopSec=5s.
    let config = boltlink::config::Config::from_map(
        &[("DATABASE_URL", "postgres://u:p@127.0.0.1/db")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
    .expect("config");
    assert!(
        config.process.shutdown_timeout + std::time::Duration::from_millis(1000)
            <= std::time::Duration::from_secs(5)
    );
}

#[test]
fn api_instances_share_the_socket_nonblocking_and_know_their_name() {
    let unit = parse_unit("boltlink-api@.service");
    assert_eq!(one(&unit, "Service", "ExecStart"), "/usr/bin/boltlink-api");
    assert_eq!(one(&unit, "Service", "Sockets"), "boltlink-api.socket");
    // Finding 1: otherwise every start resets the shared socket to blocking.
    assert_eq!(one(&unit, "Service", "NonBlocking"), "yes");
    assert_eq!(
        one(&unit, "Service", "Environment"),
        "BOLTLINK_INSTANCE=api-%i"
    );
    assert_eq!(one(&unit, "Unit", "Requires"), "boltlink-api.socket");
    // Room for HTTP_MAX_CONNECTIONS=auto (4096) above the default soft limit of 1024.
    let fds: u64 = one(&unit, "Service", "LimitNOFILE")
        .parse()
        .expect("a number");
    assert!(
        fds >= boltlink::config::AUTO_MAX_CONNECTIONS + boltlink::config::RESERVED_FDS,
        "LimitNOFILE={fds}"
    );
    for (name, instance) in BACKGROUND {
        let unit = parse_unit(name);
        assert_eq!(
            one(&unit, "Service", "ExecStart"),
            format!("/usr/bin/{}", name.trim_end_matches(".service"))
        );
        assert_eq!(
            one(&unit, "Service", "Environment"),
            format!("BOLTLINK_INSTANCE={instance}")
        );
        assert!(values(&unit, "Service", "Sockets").is_empty(), "{name}");
    }
}

#[test]
fn the_socket_names_one_instance_and_is_not_part_of_the_target() {
    let socket = parse_unit("boltlink-api.socket");
    assert_eq!(one(&socket, "Socket", "ListenStream"), "5000");
    assert_eq!(one(&socket, "Socket", "Accept"), "no");
    // Finding 4: a concrete instance, not the template.
    assert_eq!(one(&socket, "Socket", "Service"), "boltlink-api@1.service");
    assert_eq!(
        one(&socket, "Socket", "FileDescriptorName"),
        boltlink::daemon::systemd::SOCKET_NAME
    );
    let burst: u64 = one(&socket, "Socket", "TriggerLimitBurst")
        .parse()
        .expect("number");
    assert!(burst >= 10_000, "finding 2: TriggerLimitBurst={burst}");
    assert!(
        one(&socket, "Socket", "Backlog")
            .parse::<u32>()
            .expect("number")
            >= 1024
    );
    // Finding 3: restarting the target must not restart the socket.
    assert!(values(&socket, "Unit", "PartOf").is_empty());
    assert!(values(&socket, "Unit", "BindsTo").is_empty());

    let target = parse_unit("boltlink.target");
    let wants: BTreeSet<String> = one(&target, "Unit", "Wants")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(
        wants,
        BTreeSet::from([
            "boltlink-api.socket".to_string(),
            "boltlink-worker.service".to_string(),
            "boltlink-aggregator.service".to_string(),
            "boltlink-webhooks.service".to_string(),
        ])
    );
}

#[test]
fn the_sysusers_file_creates_the_user_the_services_run_as() {
    let text = std::fs::read_to_string(unit_dir().join("boltlink.sysusers")).expect("read");
    let entries: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let fields: Vec<&str> = entries[0].split_whitespace().collect();
    assert_eq!(&fields[..3], ["u", "boltlink", "-"]);
}

fn generate(env: &str) -> (Vec<String>, String) {
    let dir = std::env::temp_dir().join(format!("bl-gen-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let env_file = dir.join("boltlink.env");
    std::fs::write(&env_file, env).expect("write");
    let out = Command::new("/bin/sh")
        .arg(unit_dir().join("boltlink-generator"))
        .arg(dir.join("normal"))
        .arg(dir.join("early"))
        .arg(dir.join("late"))
        .env("BOLTLINK_ENV_FILE", &env_file)
        .output()
        .expect("run generator");
    assert!(out.status.success(), "generator failed: {out:?}");
    let mut links: Vec<String> = std::fs::read_dir(dir.join("normal/boltlink.target.wants"))
        .expect("wants dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    links.sort_by_key(|l| {
        l.trim_start_matches("boltlink-api@")
            .trim_end_matches(".service")
            .parse::<u32>()
            .unwrap_or(0)
    });
    let _ = std::fs::remove_dir_all(&dir);
    (links, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn cpus() -> usize {
    let out = Command::new("nproc").output().expect("nproc");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("nproc prints a number")
}

#[test]
fn the_generator_wants_the_configured_number_of_api_instances() {
    let (links, _) = generate("DATABASE_URL=postgres://x\nexport API_INSTANCES=\"3\"\n");
    assert_eq!(
        links,
        vec![
            "boltlink-api@1.service",
            "boltlink-api@2.service",
            "boltlink-api@3.service"
        ]
    );
    // The last assignment wins, as in EnvironmentFile=.
    let (links, _) = generate("API_INSTANCES=5\nAPI_INSTANCES=1\n");
    assert_eq!(links, vec!["boltlink-api@1.service"]);
}

#[test]
fn the_generator_defaults_to_one_instance_per_cpu_and_survives_bad_values() {
    let (links, stderr) = generate("DATABASE_URL=postgres://x\n");
    assert_eq!(links.len(), cpus());
    assert!(stderr.is_empty(), "{stderr}");
    let (links, _) = generate("API_INSTANCES=auto\n");
    assert_eq!(links.len(), cpus());
    let (links, stderr) = generate("API_INSTANCES=lots\n");
    assert_eq!(links.len(), cpus(), "a bad value must not fail the boot");
    assert!(stderr.contains("API_INSTANCES=lots"), "{stderr}");
    let (links, _) = generate("API_INSTANCES=100000\n");
    assert_eq!(links.len(), 256);
}
