//! The ceiling for a redirect on this machine: a minimal hyper server that answers every
//! request with the same 302, with the same hyper/tokio stack and connection settings as
//! `boltlink-api` (auto builder, HTTP/1 keep-alive, TCP_NODELAY) and nothing else — no
//! routing, lookups, logging, metrics or click accounting. `bench/performance` loads it
//! exactly as it loads BoltLink and reports BoltLink's figures as a ratio of this one.
//!
//!   cargo build --release --example ceiling
//!   target/release/examples/ceiling 127.0.0.1:5990 [WORKER_THREADS]
//!
//! Without WORKER_THREADS the runtime uses one worker thread per CPU.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = match args.next().map(|a| a.parse()) {
        Some(Ok(a)) => a,
        _ => {
            eprintln!("usage: ceiling ADDR:PORT [WORKER_THREADS]");
            return std::process::ExitCode::from(2);
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.next() {
        match threads.parse::<usize>() {
            Ok(n) if n > 0 => {
                runtime.worker_threads(n);
            }
            _ => {
                eprintln!("ceiling: WORKER_THREADS must be a positive number, not {threads:?}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ceiling: cannot start the runtime: {e}");
            return std::process::ExitCode::from(71);
        }
    };
    match runtime.block_on(serve(addr)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ceiling: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("ceiling: listening on {addr}");
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let conn = builder
            .serve_connection(
                TokioIo::new(stream),
                service_fn(|_req| async {
                    let mut resp = Response::new(Full::new(Bytes::new()));
                    *resp.status_mut() = StatusCode::FOUND;
                    resp.headers_mut().insert(
                        hyper::header::LOCATION,
                        hyper::header::HeaderValue::from_static("https://example.com/ceiling"),
                    );
                    Ok::<_, Infallible>(resp)
                }),
            )
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
