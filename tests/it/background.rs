//! Work that happens after the response: link metadata is fetched in the background, never
//! on the request path.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{eventually, TestApp};

/// A local page that answers only after `delay`.
async fn slow_page(delay: Duration) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                tokio::time::sleep(delay).await;
                let body = "<html><head><title>Slow &amp; Steady</title>\
                            <meta name=\"description\" content=\"A page that takes its time\">\
                            <link rel=\"icon\" href=\"/icon.png\"></head><body></body></html>";
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn shorten_answers_at_once_and_metadata_arrives_in_the_background() {
    let delay = Duration::from_millis(1500);
    let page = slow_page(delay).await;
    let allow = page.to_string();
    let app = TestApp::builder()
        .set("METADATA_FETCH", "true")
        .set("METADATA_ALLOWLIST", &allow)
        .start()
        .await;
    let key = app.key(false).await;

    let started = Instant::now();
    let link = app
        .shorten(&key, json!({"url": format!("http://{page}/article")}))
        .await;
    assert!(
        started.elapsed() < delay,
        "shorten waited for the page: {:?}",
        started.elapsed()
    );
    assert_eq!(link["title"], serde_json::Value::Null);

    let id = link["id"].as_str().expect("id").to_string();
    let get_link = || async {
        app.get_with_key(&format!("/api/links/{id}"), &key)
            .send()
            .await
            .expect("get")
            .json::<serde_json::Value>()
            .await
            .expect("json")
    };
    eventually(Duration::from_secs(10), || async {
        get_link().await["title"].is_string()
    })
    .await;
    let filled = get_link().await;
    assert_eq!(filled["title"], "Slow & Steady");
    assert_eq!(filled["description"], "A page that takes its time");
    assert_eq!(filled["favicon"], format!("http://{page}/icon.png"));
}
