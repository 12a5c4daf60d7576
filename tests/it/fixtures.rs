//! Real moving parts for failure tests: a private `redis-server` the test can kill and
//! restart, and a TCP proxy in front of PostgreSQL that the test can cut (as crates.io's test
//! suite does to provoke 503s).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A throwaway Redis with append-only persistence (`appendfsync always`), so a kill -9 loses
/// nothing it acknowledged and a restart on the same port brings the data back.
pub struct PrivateRedis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("addr").port()
}

impl PrivateRedis {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("bl-redis-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut r = PrivateRedis {
            port: free_port(),
            dir,
            child: None,
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts (again) on the same port and data directory; waits until it answers PING.
    pub fn restart(&mut self) {
        let bin =
            std::env::var("BOLTLINK_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_string());
        let child = Command::new(bin)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(client) = redis::Client::open(self.url()) {
                if let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200)) {
                    if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "private redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9: the server vanishes mid-flight, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM: Redis finishes its current command, flushes its AOF and exits.
    pub fn stop_gracefully(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    /// Valid clicks in a click stream, however packed into entries, over a fresh connection
    /// (the server may have restarted).
    pub async fn stream_clicks(&self, key: &str) -> Option<u64> {
        let client = redis::Client::open(self.url()).ok()?;
        let mut c = client.get_multiplexed_async_connection().await.ok()?;
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .query_async(&mut c)
            .await
            .ok()?;
        let mut clicks = 0;
        for entry in reply.ids {
            let fields: std::collections::HashMap<String, String> = entry
                .map
                .into_iter()
                .map(|(k, v)| (k, redis::from_redis_value::<String>(&v).unwrap_or_default()))
                .collect();
            let records = boltlink::clicks::event::events_of_entry(&fields).ok()?;
            clicks += records.iter().filter(|r| r.is_ok()).count() as u64;
        }
        Some(clicks)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP proxy whose link to the upstream can be cut (existing connections are closed, new
/// ones are accepted and closed at once) and restored.
pub struct CuttableProxy {
    pub addr: SocketAddr,
    enabled: watch::Sender<bool>,
    flowing: watch::Sender<bool>,
}

/// Copies `from` to `to` while `flowing` says so; while paused, bytes wait (nothing is read,
/// nothing closes), as with a server that stopped answering.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut flowing: watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if flowing.wait_for(|f| *f).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if flowing.wait_for(|f| *f).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl CuttableProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (enabled, rx) = watch::channel(true);
        let (flowing, flow_rx) = watch::channel(true);
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !*rx.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut rx = rx.clone();
                let flow = flow_rx.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    tokio::select! {
                        _ = pump(in_read, out_write, flow.clone()) => {}
                        _ = pump(out_read, in_write, flow) => {}
                        _ = rx.wait_for(|on| !*on) => {}
                    }
                });
            }
        });
        CuttableProxy {
            addr,
            enabled,
            flowing,
        }
    }

    /// Closes every connection and refuses new ones until [`CuttableProxy::restore`].
    pub fn cut(&self) {
        let _ = self.enabled.send(false);
    }

    pub fn restore(&self) {
        let _ = self.enabled.send(true);
    }

    /// Holds every byte in both directions, connections stay open: a paused server.
    pub fn pause(&self) {
        let _ = self.flowing.send(false);
    }

    pub fn resume(&self) {
        let _ = self.flowing.send(true);
    }
}

/// The host:port of a PostgreSQL URL.
pub fn database_socket_addr(url: &str) -> SocketAddr {
    let u = url::Url::parse(url).expect("url");
    let host = u.host_str().expect("host");
    let port = u.port().unwrap_or(5432);
    format!("{host}:{port}")
        .parse()
        .expect("DATABASE_URL host must be an IP address in tests")
}

/// The same URL pointing at `addr` instead.
pub fn database_url_via(url: &str, addr: SocketAddr) -> String {
    let mut u = url::Url::parse(url).expect("url");
    u.set_host(Some(&addr.ip().to_string())).expect("host");
    u.set_port(Some(addr.port())).expect("port");
    u.to_string()
}
