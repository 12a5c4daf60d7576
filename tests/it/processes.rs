//! The real `boltlink-api` binary: several processes on one inherited socket (the
//! `LISTEN_FDS` protocol systemd uses), cache invalidation across them, clean SIGTERM exits,
//! and configuration errors exiting 78 with one clear line.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{
    create_key, eventually, fresh_connection_client, redis_url, Suite, TestDatabase,
};

const API_BIN: &str = env!("CARGO_BIN_EXE_boltlink-api");

/// One `boltlink-api` on `listener` (as systemd passes it), with its own Redis key prefix and
/// no env file; callers add what their test is about.
fn api_command(listener: &std::net::TcpListener, database_url: &str) -> Command {
    let mut cmd =
        boltlink::daemon::systemd::spawn_with_listener(listener, Path::new(API_BIN)).expect("cmd");
    cmd.env("DATABASE_URL", database_url)
        .env("REDIS_URL", redis_url())
        .env(
            "REDIS_KEY_PREFIX",
            format!("t{}:", uuid::Uuid::new_v4().simple()),
        )
        .env("BOLTLINK_ENV_FILE", "/dev/null")
        .env("LOG_LEVEL", "warn");
    cmd
}

/// A `NOTIFY_SOCKET` for a child, in a fresh directory removed on drop.
struct NotifySocket {
    dir: std::path::PathBuf,
    path: std::path::PathBuf,
    socket: tokio::net::UnixDatagram,
}

impl NotifySocket {
    fn bind(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("bl-{tag}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("notify.sock");
        let socket = tokio::net::UnixDatagram::bind(&path).expect("bind notify socket");
        NotifySocket { dir, path, socket }
    }

    /// The next message, or a panic naming `what` after `within`.
    async fn recv(&self, within: Duration, what: &str) -> String {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(within, self.socket.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{what} in time"))
            .expect("recv");
        String::from_utf8_lossy(&buf[..n]).to_string()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn locations(client: &reqwest::Client, url: &str, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let resp = client.get(url).send().await.expect("redirect");
        out.push(match resp.headers().get("location") {
            Some(l) => l.to_str().expect("location").to_string(),
            None => resp.status().to_string(),
        });
    }
    out
}

#[tokio::test]
async fn two_processes_share_one_socket_and_see_changes_from_each_other_within_a_second() {
    let database = TestDatabase::create().await;
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
    let mut suite = Suite::start(2, &database, &prefix);
    let client = fresh_connection_client();

    // Both processes migrate at once (advisory lock) and become ready.
    eventually(Duration::from_secs(30), || async {
        matches!(client.get(suite.url("/ready")).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    // Both serve the shared socket: /health names the instance that answered.
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "only {seen:?} answered on the shared socket"
        );
        if let Ok(r) = client.get(suite.url("/health")).send().await {
            if let Ok(body) = r.json::<serde_json::Value>().await {
                seen.insert(body["instance"].as_str().unwrap_or("").to_string());
            }
        }
    }
    assert_eq!(
        seen,
        HashSet::from(["api-1".to_string(), "api-2".to_string()])
    );

    let key = create_key(database.url()).await;
    let created: serde_json::Value = client
        .post(suite.url("/api/shorten"))
        .header("x-api-key", &key)
        .json(&json!({"url": "https://example.com/old"}))
        .send()
        .await
        .expect("shorten")
        .json()
        .await
        .expect("json");
    let code = created["shortCode"].as_str().expect("code").to_string();
    let id = created["id"].as_str().expect("id").to_string();
    let link_url = suite.url(&format!("/{code}"));
    // Warm both processes' caches with the old state.
    assert!(locations(&client, &link_url, 20)
        .await
        .iter()
        .all(|l| l == "https://example.com/old"));

    let patched = client
        .patch(suite.url(&format!("/api/links/{id}")))
        .header("x-api-key", &key)
        .json(&json!({"originalUrl": "https://example.com/new"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(patched.status(), 200);
    let patched_at = Instant::now();
    eventually(Duration::from_secs(1), || async {
        locations(&client, &link_url, 10)
            .await
            .iter()
            .all(|l| l == "https://example.com/new")
    })
    .await;
    assert!(patched_at.elapsed() <= Duration::from_millis(1500));

    let deleted = client
        .delete(suite.url(&format!("/api/links/{id}")))
        .header("x-api-key", &key)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 200);
    eventually(Duration::from_secs(1), || async {
        locations(&client, &link_url, 10)
            .await
            .iter()
            .all(|l| l.starts_with("404"))
    })
    .await;

    // SIGTERM: both drain and exit 0.
    assert_eq!(suite.terminate(), vec![Some(0), Some(0)]);
}

#[tokio::test]
async fn a_bad_configuration_exits_78_with_one_line_naming_the_variable() {
    let cases = [
        (
            "malformed DATABASE_URL",
            [
                ("BOLTLINK_ENV_FILE", "/dev/null"),
                ("DATABASE_URL", "postgres//missing-colon"),
            ]
            .as_slice(),
            "DATABASE_URL",
        ),
        (
            "missing explicit env file",
            [("BOLTLINK_ENV_FILE", "/nonexistent/boltlink.env")].as_slice(),
            "BOLTLINK_ENV_FILE",
        ),
    ];
    for (case, env, variable) in cases {
        let out = Command::new(API_BIN)
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .expect("run boltlink-api");
        assert_eq!(out.status.code(), Some(78), "{case}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{case}: one line: {stderr}"
        );
        assert!(stderr.contains(variable), "{case}: {stderr}");
    }
}

#[tokio::test]
async fn the_env_file_configures_the_process_and_the_environment_overrides_it() {
    let dir = std::env::temp_dir().join(format!("bl-env-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("boltlink.env");
    std::fs::write(
        &file,
        "DATABASE_URL=postgres://u:p@127.0.0.1:1/db\nTRUST_PROXY=lots\n",
    )
    .expect("write");
    let out = Command::new(API_BIN)
        .env_clear()
        .env("BOLTLINK_ENV_FILE", &file)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TRUST_PROXY"));
    // The environment wins over the file: a good TRUST_PROXY moves the error to the next bad
    // value, proving both were read.
    std::fs::write(
        &file,
        "DATABASE_URL=postgres://u:p@127.0.0.1:1/db\nTRUST_PROXY=lots\nLOG_LEVEL=[[\n",
    )
    .expect("write");
    let out = Command::new(API_BIN)
        .env_clear()
        .env("BOLTLINK_ENV_FILE", &file)
        .env("TRUST_PROXY", "1")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LOG_LEVEL"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_closes_idle_keep_alive_and_exits_in_time() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let database = TestDatabase::create().await;
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
    let mut suite = Suite::start(1, &database, &prefix);
    let client = fresh_connection_client();
    eventually(Duration::from_secs(30), || async {
        matches!(client.get(suite.url("/ready")).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    let key = create_key(database.url()).await;

    // An idle keep-alive connection: one answered request, then silence.
    let addr = suite.base.trim_start_matches("http://").to_string();
    let mut idle = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    // An in-flight request, deterministically: its head is sent, its body only arrives
    // after SIGTERM. The server must still read it and answer.
    let body = br#"{"url": "https://example.com/in-flight"}"#;
    let mut in_flight = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /api/shorten HTTP/1.1\r\nhost: x\r\nx-api-key: {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    in_flight
        .write_all(head.as_bytes())
        .await
        .expect("write head");
    in_flight
        .write_all(&body[..10])
        .await
        .expect("write part of the body");
    tokio::time::sleep(Duration::from_millis(100)).await;

    let stopped_at = Instant::now();
    let stopping = tokio::task::spawn_blocking(move || suite.terminate());
    tokio::time::sleep(Duration::from_millis(400)).await;
    in_flight
        .write_all(&body[10..])
        .await
        .expect("write the rest after SIGTERM");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), in_flight.read_to_end(&mut answer))
        .await
        .expect("answered before the deadline")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 201"),
        "in-flight request was not answered: {answer}"
    );
    // Answers written while draining tell keep-alive clients to go elsewhere.
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "no Connection: close while draining: {answer}"
    );
    let codes = stopping.await.expect("join");
    let took = stopped_at.elapsed();
    assert_eq!(codes, vec![Some(0)]);
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    // The idle connection was closed by the server, not left hanging.
    let n = tokio::time::timeout(Duration::from_secs(1), idle.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn the_process_notifies_ready_then_stopping_on_notify_socket() {
    let notify = NotifySocket::bind("notify");
    let database = TestDatabase::create().await;
    let listener =
        boltlink::daemon::systemd::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let mut child = api_command(&listener, database.url())
        .env("NOTIFY_SOCKET", &notify.path)
        .spawn()
        .expect("spawn");

    let mut messages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !messages.iter().any(|m: &String| m.contains("READY=1")) {
        let left = deadline.saturating_duration_since(Instant::now());
        messages.push(notify.recv(left, "READY=1").await);
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    while !messages.iter().any(|m| m.contains("STOPPING=1")) {
        messages.push(notify.recv(Duration::from_secs(5), "STOPPING=1").await);
    }
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
    let ready_at = messages
        .iter()
        .position(|m| m.contains("READY=1"))
        .expect("ready");
    let stopping_at = messages
        .iter()
        .position(|m| m.contains("STOPPING=1"))
        .expect("stopping");
    assert!(ready_at < stopping_at, "{messages:?}");
    drop(listener);
}

#[tokio::test]
async fn under_a_watchdog_the_process_pings_at_half_the_interval_and_reports_its_status() {
    let notify = NotifySocket::bind("watchdog");
    let database = TestDatabase::create().await;
    let listener =
        boltlink::daemon::systemd::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let mut child = api_command(&listener, database.url())
        .env("NOTIFY_SOCKET", &notify.path)
        // WatchdogSec=1s; no WATCHDOG_PID, which is optional.
        .env("WATCHDOG_USEC", "1000000")
        .spawn()
        .expect("spawn");

    let mut ready_at = None;
    let mut pings_after_ready = Vec::new();
    let mut statuses_after_ready = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = notify.recv(left, "notifications").await;
        if message.contains("READY=1") {
            ready_at = Some(Instant::now());
            // Traffic for the status line to count.
            let client = fresh_connection_client();
            for _ in 0..3 {
                let _ = client.get(format!("{base}/health")).send().await;
            }
        }
        let Some(ready_at) = ready_at else { continue };
        if message.contains("WATCHDOG=1") {
            pings_after_ready.push(ready_at.elapsed());
        }
        if let Some(status) = message.lines().find_map(|l| l.strip_prefix("STATUS=")) {
            statuses_after_ready.push(status.to_string());
        }
        if ready_at.elapsed() > Duration::from_millis(3500) {
            break;
        }
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
    // 3.5 s at one ping per 0.5 s: about 7; allow for scheduling jitter.
    assert!(
        (5..=9).contains(&pings_after_ready.len()),
        "watchdog pings after READY at {pings_after_ready:?}"
    );
    let live = statuses_after_ready
        .iter()
        .find(|s| s.contains("requests") && !s.starts_with("serving: 0 requests"))
        .unwrap_or_else(|| {
            panic!("no live STATUS= line counting requests: {statuses_after_ready:?}")
        });
    assert!(live.starts_with("serving: "), "{live}");
    assert!(
        live.contains("in flight") && live.contains("cache hits") && live.contains("click queue"),
        "{live}"
    );
    drop(listener);
}

#[tokio::test]
async fn above_memory_restart_mb_the_process_drains_and_exits_75_for_systemd_to_restart_it() {
    let database = TestDatabase::create().await;
    let listener =
        boltlink::daemon::systemd::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let mut child = api_command(&listener, database.url())
        // Any process is above 1 MiB.
        .env("MEMORY_RESTART_MB", "1")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let client = fresh_connection_client();
    // It serves first: the check runs every few seconds, not before readiness.
    eventually(Duration::from_secs(30), || async {
        matches!(client.get(format!("{base}/ready")).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    let output = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return child.wait_with_output().expect("output");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("still running 20 s after readiness with MEMORY_RESTART_MB=1");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .expect("join");
    assert_eq!(output.status.code(), Some(75));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("MEMORY_RESTART_MB=1"), "{stderr}");
    drop(listener);
}

#[tokio::test]
async fn the_daemons_answer_help_and_version_and_refuse_arguments_without_starting() {
    for bin in [
        API_BIN,
        env!("CARGO_BIN_EXE_boltlink-worker"),
        env!("CARGO_BIN_EXE_boltlink-aggregator"),
    ] {
        // No DATABASE_URL anywhere: had the process tried to start, it would exit 78.
        let run = |arg: &str| {
            Command::new(bin)
                .env_clear()
                .env("BOLTLINK_ENV_FILE", "/dev/null")
                .arg(arg)
                .output()
                .expect("run the daemon")
        };
        let help = run("--help");
        assert_eq!(help.status.code(), Some(0), "{bin} --help");
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(text.contains("/etc/boltlink/boltlink.env"), "{bin}: {text}");
        assert!(
            text.contains("(8)"),
            "{bin} --help points at its man page: {text}"
        );

        let version = run("--version");
        assert_eq!(version.status.code(), Some(0), "{bin} --version");
        assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));

        let bad = run("--port=80");
        assert_eq!(bad.status.code(), Some(2), "{bin} --port=80");
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(
            stderr.contains("unexpected argument '--port'"),
            "{bin}: {stderr}"
        );
        assert!(
            !stderr.contains("configuration error"),
            "{bin} tried to start: {stderr}"
        );
    }
}

/// `(ppid, command name, niceness)` of a process, from `/proc/PID/stat`.
fn proc_stat(pid: u32) -> Option<(u32, String, i64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (comm) STATE PPID ...": the name may hold spaces, so split at its parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let rest: Vec<&str> = stat[close + 2..].split(' ').collect();
    // After the name: state (field 3), ppid (4), ... nice (19).
    Some((rest[1].parse().ok()?, comm, rest[16].parse().ok()?))
}

#[tokio::test]
async fn boltlinkctl_run_starts_the_background_services_at_a_lower_priority_than_the_api() {
    const CTL_BIN: &str = env!("CARGO_BIN_EXE_boltlinkctl");
    let database = TestDatabase::create().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut ctl = Command::new(CTL_BIN)
        .args(["run", "--instances", "1"])
        .env("DATABASE_URL", database.url())
        .env("REDIS_URL", redis_url())
        .env(
            "REDIS_KEY_PREFIX",
            format!("t{}:", uuid::Uuid::new_v4().simple()),
        )
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("BOLTLINK_ENV_FILE", "/dev/null")
        .env("METADATA_FETCH", "false")
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("boltlinkctl run");
    let children = || -> Vec<(String, i64)> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some((ppid, comm, nice)) = proc_stat(pid) {
                if ppid == ctl.id() {
                    found.push((comm, nice));
                }
            }
        }
        found.sort();
        found
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = children();
    // The names the kernel keeps (15 bytes), once nice(1) has exec'd the programs.
    let want = [
        "boltlink-aggreg",
        "boltlink-api",
        "boltlink-webhoo",
        "boltlink-worker",
    ];
    while seen.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>() != want {
        assert!(
            Instant::now() < deadline,
            "children of boltlinkctl run: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = children();
    }
    let _ = Command::new("kill")
        .args(["-TERM", &ctl.id().to_string()])
        .status();
    let stop_deadline = Instant::now() + Duration::from_secs(15);
    while ctl.try_wait().expect("wait").is_none() {
        if Instant::now() > stop_deadline {
            let _ = ctl.kill();
            panic!("boltlinkctl run did not stop on SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Relative to this test's own niceness (a CI runner may itself run niced).
    let base = proc_stat(std::process::id()).expect("own stat").2;
    let lower: i64 = boltlink::ctl::run::BACKGROUND_NICE.parse().expect("number");
    assert!(lower > 0);
    let background = (base + lower).min(19);
    assert_eq!(
        seen,
        vec![
            ("boltlink-aggreg".to_string(), background),
            ("boltlink-api".to_string(), base),
            ("boltlink-webhoo".to_string(), background),
            ("boltlink-worker".to_string(), background),
        ]
    );
}

/// Opens `n` keep-alive connections to `addr` at once, asks each `/health` once, and keeps
/// them all open until every one has answered: connections per instance name.
async fn open_connections_per_instance(
    addr: &str,
    n: usize,
) -> std::collections::BTreeMap<String, usize> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let opened = futures_util::future::join_all((0..n).map(|_| async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let instance = loop {
            let got = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .expect("answered within 10 s")
                .expect("read");
            assert!(got > 0, "closed before answering");
            seen.extend_from_slice(&buf[..got]);
            let text = String::from_utf8_lossy(&seen);
            if let Some(at) = text.find("\"instance\":\"") {
                let rest = &text[at + 12..];
                if let Some(end) = rest.find('"') {
                    break rest[..end].to_string();
                }
            }
        };
        (instance, stream)
    }))
    .await;
    let mut per = std::collections::BTreeMap::new();
    for (instance, _) in &opened {
        *per.entry(instance.clone()).or_insert(0) += 1;
    }
    drop(opened);
    per
}

#[tokio::test]
async fn connections_opened_in_a_burst_spread_evenly_over_the_instances() {
    let database = TestDatabase::create().await;
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
    let dir = std::env::temp_dir().join(format!("bl-run-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("runtime dir");
    let mut suite = Suite::start_with(
        2,
        &database,
        &prefix,
        &[("RUNTIME_DIRECTORY", dir.to_str().expect("utf-8"))],
    );
    suite.wait_until_all_serve().await;
    let addr = suite.base.trim_start_matches("http://").to_string();
    // Twice, each burst after the previous one's connections closed.
    for n in [64, 256] {
        let per = open_connections_per_instance(&addr, n).await;
        let max = per.values().copied().max().unwrap_or(0);
        let min = if per.len() < 2 {
            0
        } else {
            per.values().copied().min().unwrap_or(0)
        };
        assert!(
            min > 0 && max as f64 / min as f64 <= 1.5,
            "{n} connections per instance: {per:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    suite.terminate();
    let _ = std::fs::remove_dir_all(&dir);
}
