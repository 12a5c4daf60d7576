//! Webhook delivery end to end: the API (in process) changes links and answers redirects, a
//! real `boltlink-webhooks` process delivers to a receiver in the test, on loopback, that
//! checks every signature itself (HMAC-SHA256 over "t.body", computed here, not with the
//! sender's code) and answers as each test tells it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::support::{end_the_lock_holders_session, eventually, id_of, logged, Daemon, TestApp};

const WEBHOOKS_BIN: &str = env!("CARGO_BIN_EXE_boltlink-webhooks");

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16),
    /// Never answers (the sender's 5 s timeout ends the attempt).
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    event_id: String,
    signature: String,
    body: Bytes,
    at: Instant,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a webhook body is JSON")
    }
}

/// A webhook receiver on 127.0.0.1: records every request, answers with the queued answers
/// in order, then with `otherwise`.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(plan: &[Answer], otherwise: Answer) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let plan = Arc::new(Mutex::new(plan.iter().copied().collect::<VecDeque<_>>()));
        let task = tokio::spawn({
            let (got, plan) = (got.clone(), plan.clone());
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let (got, plan) = (got.clone(), plan.clone());
                    tokio::spawn(async move {
                        let service =
                            service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                                let (got, plan) = (got.clone(), plan.clone());
                                async move {
                                    let header = |name: &str| {
                                        req.headers()
                                            .get(name)
                                            .and_then(|v| v.to_str().ok())
                                            .unwrap_or("")
                                            .to_string()
                                    };
                                    let (event_id, signature) =
                                        (header("boltlink-event-id"), header("boltlink-signature"));
                                    let body =
                                        req.into_body().collect().await.map(|b| b.to_bytes());
                                    let answer =
                                        plan.lock().expect("plan").pop_front().unwrap_or(otherwise);
                                    got.lock().expect("got").push(Received {
                                        event_id,
                                        signature,
                                        body: body.unwrap_or_default(),
                                        at: Instant::now(),
                                    });
                                    let status = match answer {
                                        Answer::Status(s) => s,
                                        Answer::Hang => {
                                            tokio::time::sleep(Duration::from_secs(3600)).await;
                                            200
                                        }
                                    };
                                    let mut resp =
                                        hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
                                    *resp.status_mut() =
                                        hyper::StatusCode::from_u16(status).expect("status");
                                    Ok::<_, std::convert::Infallible>(resp)
                                }
                            });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Receiver { addr, got, task }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().expect("got").clone()
    }

    /// Requests received for each event id, in arrival order.
    fn by_event(&self) -> HashMap<String, Vec<Received>> {
        let mut out: HashMap<String, Vec<Received>> = HashMap::new();
        for r in self.received() {
            out.entry(r.event_id.clone()).or_default().push(r);
        }
        out
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `BoltLink-Signature` checked as a receiver would: `t=<unix>,v1=<hex HMAC-SHA256(secret,
/// "<t>.<raw body>")>`, with a timestamp close to now.
fn assert_signed(r: &Received, secret: &str) {
    let mut t = None;
    let mut v1 = None;
    for part in r.signature.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = Some(v.to_string()),
            Some(("v1", v)) => v1 = Some(v.to_string()),
            _ => {}
        }
    }
    let (t, v1) = (
        t.expect("a t= part in BoltLink-Signature"),
        v1.expect("a v1= part in BoltLink-Signature"),
    );
    let at: i64 = t.parse().expect("t is unix seconds");
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now - at).abs() <= 60,
        "signature timestamp {at} is not close to now {now}"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(&r.body);
    let expected = hex::encode(mac.finalize().into_bytes());
    assert_eq!(
        v1, expected,
        "BoltLink-Signature does not verify with the key's secret"
    );
}

/// A `boltlink-webhooks` process for `app`'s database, Redis and key prefix; `extra`
/// settings win over the defaults here (loopback allowed, quick retries).
fn start_sender(app: &TestApp, extra: &[(&str, &str)]) -> Daemon {
    Daemon::start(WEBHOOKS_BIN, sender_env(app, extra), None)
}

/// The environment of [`start_sender`].
fn sender_env(app: &TestApp, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("DATABASE_URL", app.database_url.as_str()),
        ("REDIS_URL", app.redis_url.as_str()),
        ("REDIS_KEY_PREFIX", app.prefix.as_str()),
        ("BOLTLINK_ENV_FILE", "/dev/null"),
        ("PUBLIC_BASE_URL", "https://bl.example"),
        ("LOG_LEVEL", "warn"),
        ("PIPELINE_POLL_MS", "100"),
        ("WEBHOOK_ALLOW_PRIVATE", "true"),
        ("WEBHOOK_RETRY_BASE_MS", "200"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        env.retain(|(name, _)| name != k);
        env.push((k.to_string(), v.to_string()));
    }
    env
}

/// An app that accepts loopback webhook URLs (the receiver lives on 127.0.0.1).
async fn app() -> TestApp {
    TestApp::builder()
        .set("WEBHOOK_ALLOW_PRIVATE", "true")
        .set("RATE_LIMIT_REDIRECT_PER_MIN", "100000")
        .start()
        .await
}

/// A key with its webhook set to `receiver`; returns the key and its signing secret.
async fn key_with_webhook(app: &TestApp, receiver: &Receiver) -> (String, String) {
    let key = app.key(false).await;
    let resp = app
        .set_webhook(&key, json!({ "url": receiver.url() }))
        .await;
    assert_eq!(resp.status(), 200, "setting the webhook");
    let body: Value = resp.json().await.expect("json");
    let secret = body["webhookSecret"]
        .as_str()
        .expect("a secret with the first URL")
        .to_string();
    (key, secret)
}

async fn deliveries(app: &TestApp, key: &str) -> Vec<Value> {
    app.get_ok_json("/api/settings/developer/webhook/deliveries?limit=500", key)
        .await
        .as_array()
        .expect("an array")
        .clone()
}

/// The key's newest delivery, once `check` holds for it (waiting up to 20 s).
async fn newest_delivery_once(app: &TestApp, key: &str, check: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(20), || async {
        deliveries(app, key).await.first().is_some_and(&check)
    })
    .await;
    deliveries(app, key).await[0].clone()
}

/// Waits until the receiver holds requests for `n` distinct events.
async fn wait_for_events(receiver: &Receiver, n: usize, within: Duration) {
    eventually(within, || async { receiver.by_event().len() >= n }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_events_arrive_signed_with_the_event_id_and_are_listed_as_delivered() {
    let app = app().await;
    let receiver = Receiver::start(&[], Answer::Status(200)).await;
    let (key, secret) = key_with_webhook(&app, &receiver).await;
    let _sender = start_sender(&app, &[]);

    let link = app
        .create_link(&key, json!({"tags": ["launch"], "redirectType": 301}))
        .await;
    let id = id_of(&link);
    let resp = app
        .patch_json(
            &format!("/api/links/{id}"),
            &key,
            json!({"title": "Renamed"}),
        )
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 200);
    let resp = app
        .delete_with_key(&format!("/api/links/{id}"), &key)
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 200);
    wait_for_events(&receiver, 3, Duration::from_secs(20)).await;

    let got = receiver.received();
    let types: Vec<String> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        types,
        ["link.created", "link.updated", "link.deleted"],
        "one delivery per event, in order (one key's deliveries go one at a time)"
    );
    for r in &got {
        assert_signed(r, &secret);
        let body = r.json();
        assert_eq!(
            body["id"].as_str(),
            Some(r.event_id.as_str()),
            "BoltLink-Event-Id is the body's id"
        );
        assert!(body["createdAt"].as_str().is_some_and(|t| t.ends_with('Z')));
        let data = &body["data"];
        assert_eq!(data["id"], link["id"]);
        assert_eq!(data["shortUrl"], link["shortUrl"]);
        assert_eq!(data["tags"], json!(["launch"]));
        assert_eq!(data["redirectType"], 301);
        assert!(data.get("passwordHash").is_none() && data.get("password_hash").is_none());
    }
    assert_eq!(got[1].json()["data"]["title"], "Renamed");
    assert_eq!(
        got[0].json()["data"],
        link,
        "link.created carries the link object the API answered"
    );

    // The deliveries route: newest first, one attempt each, answered 200.
    eventually(Duration::from_secs(10), || async {
        deliveries(&app, &key)
            .await
            .iter()
            .all(|d| d["status"] == "delivered")
    })
    .await;
    let listed = deliveries(&app, &key).await;
    assert_eq!(listed.len(), 3);
    let listed_types: Vec<&str> = listed
        .iter()
        .map(|d| d["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        listed_types,
        ["link.deleted", "link.updated", "link.created"]
    );
    for d in &listed {
        crate::support::assert_fields(
            d,
            &[
                "eventId",
                "type",
                "status",
                "attempts",
                "lastStatusCode",
                "lastError",
                "nextAttemptAt",
                "deliveredAt",
            ],
            "a delivery",
        );
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["lastStatusCode"], 200);
        assert_eq!(d["lastError"], Value::Null);
        assert_eq!(d["nextAttemptAt"], Value::Null);
        assert!(d["deliveredAt"].is_string());
    }
    let ids: HashSet<&str> = listed
        .iter()
        .filter_map(|d| d["eventId"].as_str())
        .collect();
    let sent: HashSet<&str> = got.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(ids, sent);

    // The sender's lag and deliveries reach /metrics through its heartbeat.
    eventually(Duration::from_secs(10), || async {
        let text = app.metrics_text().await;
        text.contains("boltlink_consumer_lag_events{group=\"webhooks\"} 0")
            && text.contains("boltlink_webhook_deliveries_pending 0")
            && text.contains("boltlink_webhook_attempts_total{result=\"delivered\"} 3")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_is_retried_with_the_same_event_id_after_a_growing_wait() {
    let app = app().await;
    let receiver = Receiver::start(
        &[Answer::Status(500), Answer::Status(503)],
        Answer::Status(204),
    )
    .await;
    let (key, secret) = key_with_webhook(&app, &receiver).await;
    let _sender = start_sender(&app, &[("WEBHOOK_RETRY_BASE_MS", "400")]);
    app.create_link(&key, json!({})).await;

    newest_delivery_once(&app, &key, |d| d["status"] == "delivered").await;
    let got = receiver.received();
    assert_eq!(got.len(), 3, "two failures, then the delivery");
    assert!(
        got.iter()
            .all(|r| r.event_id == got[0].event_id && r.body == got[0].body),
        "every attempt carries the same event id and body"
    );
    for r in &got {
        assert_signed(r, &secret);
    }
    // First retry after the base (400 ms), the second after twice that.
    let first_wait = got[1].at - got[0].at;
    let second_wait = got[2].at - got[1].at;
    assert!(
        first_wait >= Duration::from_millis(400),
        "first retry after {first_wait:?}"
    );
    assert!(
        second_wait >= Duration::from_millis(800),
        "second retry after {second_wait:?}"
    );

    let listed = deliveries(&app, &key).await;
    assert_eq!(listed[0]["attempts"], 3);
    assert_eq!(listed[0]["lastStatusCode"], 204);
    let attempts: Vec<(i32, Option<i32>)> = sqlx::query_as(
        "SELECT attempt, status_code FROM webhook_attempts a JOIN webhook_events e ON e.id = a.event_id \
         WHERE e.id = $1::uuid ORDER BY attempt",
    )
    .bind(&got[0].event_id)
    .fetch_all(&app.db)
    .await
    .expect("attempts");
    assert_eq!(
        attempts,
        [(1, Some(500)), (2, Some(503)), (3, Some(204))],
        "each attempt is recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_undelivered_within_the_retry_window_is_recorded_as_failed() {
    let app = app().await;
    let receiver = Receiver::start(&[], Answer::Status(500)).await;
    let (key, _) = key_with_webhook(&app, &receiver).await;
    let _sender = start_sender(
        &app,
        &[
            ("WEBHOOK_RETRY_BASE_MS", "300"),
            ("WEBHOOK_RETRY_WINDOW_S", "2"),
        ],
    );
    app.create_link(&key, json!({})).await;
    let d = &newest_delivery_once(&app, &key, |d| d["status"] == "failed").await;
    assert_eq!(d["lastStatusCode"], 500);
    assert_eq!(d["lastError"], "answered HTTP 500");
    assert_eq!(d["nextAttemptAt"], Value::Null);
    assert_eq!(d["deliveredAt"], Value::Null);
    let attempts = d["attempts"].as_i64().expect("attempts");
    assert!(
        attempts >= 2,
        "retried before giving up ({attempts} attempts)"
    );
    assert_eq!(receiver.received().len() as i64, attempts);
    // Given up means given up: no further attempt.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received().len() as i64, attempts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_arrive_in_batches_of_the_keys_own_links_at_most_one_per_second() {
    let app = app().await;
    let receiver = Receiver::start(&[], Answer::Status(200)).await;
    let (key, secret) = key_with_webhook(&app, &receiver).await;
    let other = app.key(false).await; // no webhook: its clicks are nobody's business
    let link = app.create_link(&key, json!({})).await;
    let rule_link = app
        .create_link(
            &key,
            json!({"redirectRules": [{"conditions": [{"type": "query", "value": "src=qr"}],
                                       "url": "https://example.com/from-qr"}]}),
        )
        .await;
    let unwatched = app.create_link(&other, json!({})).await;
    let _sender = start_sender(&app, &[]);
    // The sender is at work once the two links' `link.created` events are delivered: clicks
    // sent before would all wait for its start and go in one batch (once in a loaded run).
    eventually(Duration::from_secs(30), || async {
        deliveries(&app, &key)
            .await
            .iter()
            .filter(|d| d["status"] == "delivered")
            .count()
            == 2
    })
    .await;

    let code = link["shortCode"].as_str().expect("code");
    let rule_code = rule_link["shortCode"].as_str().expect("code");
    let other_code = unwatched["shortCode"].as_str().expect("code");
    const CLICKS: usize = 40;
    for i in 0..CLICKS {
        let resp = app
            .get(&format!("/{code}"))
            .header("referer", "https://news.example.org/item?id=1")
            .header("user-agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")
            .send()
            .await
            .expect("visit");
        assert_eq!(resp.status(), 302);
        assert_eq!(app.visit(&format!("/{other_code}")).await.status(), 302);
        if i % 5 == 0 {
            // Spread over a few seconds, so that several batches form.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    assert_eq!(
        app.visit(&format!("/{rule_code}?src=qr")).await.status(),
        302
    );

    let clicked = || {
        receiver
            .received()
            .into_iter()
            .filter(|r| r.json()["type"] == "link.clicked")
            .collect::<Vec<_>>()
    };
    let total = |batches: &[Received]| -> usize {
        batches
            .iter()
            .map(|r| r.json()["data"]["clicks"].as_array().map_or(0, Vec::len))
            .sum()
    };
    eventually(Duration::from_secs(30), || async {
        total(&clicked()) > CLICKS
    })
    .await;
    // Nothing more arrives: each click once.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let batches = clicked();
    assert_eq!(
        total(&batches),
        CLICKS + 1,
        "every click of the key's links, once"
    );
    let mut seen_links = HashSet::new();
    for (i, r) in batches.iter().enumerate() {
        assert_signed(r, &secret);
        let clicks = r.json()["data"]["clicks"]
            .as_array()
            .expect("clicks")
            .clone();
        assert!(!clicks.is_empty() && clicks.len() <= 1000);
        for c in &clicks {
            crate::support::assert_fields(
                c,
                &[
                    "linkId",
                    "shortCode",
                    "at",
                    "region",
                    "device",
                    "referrerHost",
                    "bot",
                    "url",
                ],
                "a click",
            );
            seen_links.insert(c["shortCode"].as_str().unwrap_or("").to_string());
            if c["shortCode"] == code {
                assert_eq!(c["linkId"], link["id"]);
                assert_eq!(c["url"], link["originalUrl"]);
                assert_eq!(c["device"], "mobile");
                assert_eq!(c["referrerHost"], "news.example.org");
                assert_eq!(c["bot"], false);
            } else {
                assert_eq!(
                    c["url"], "https://example.com/from-qr",
                    "the URL a rule served"
                );
            }
            assert!(c["at"].as_str().is_some_and(|t| t.ends_with('Z')));
        }
        if i > 0 {
            let gap = r.at - batches[i - 1].at;
            assert!(
                gap >= Duration::from_millis(900),
                "link.clicked deliveries of one key {gap:?} apart"
            );
        }
    }
    assert!(
        !seen_links.contains(other_code),
        "another key's clicks were sent"
    );
    assert_eq!(seen_links.len(), 2);
    assert!(
        batches.len() >= 2,
        "clicks over several seconds come in several batches"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_holds_up_only_its_own_key() {
    let app = app().await;
    let stuck = Receiver::start(&[], Answer::Hang).await;
    let healthy = Receiver::start(&[], Answer::Status(200)).await;
    let (stuck_key, _) = key_with_webhook(&app, &stuck).await;
    let (key, secret) = key_with_webhook(&app, &healthy).await;
    let _sender = start_sender(&app, &[("WEBHOOK_CONCURRENCY", "4")]);
    for _ in 0..6 {
        app.create_link(&stuck_key, json!({})).await;
    }
    eventually(Duration::from_secs(10), || async {
        !stuck.received().is_empty()
    })
    .await;
    let began = Instant::now();
    for _ in 0..5 {
        app.create_link(&key, json!({})).await;
    }
    wait_for_events(&healthy, 5, Duration::from_secs(4)).await;
    assert!(began.elapsed() < Duration::from_secs(4));
    for r in healthy.received() {
        assert_signed(&r, &secret);
    }
    assert_eq!(
        stuck.received().len(),
        1,
        "one delivery at a time to the hanging receiver"
    );
    // The hung attempt ends at the 5 s timeout and is retried later; recorded meanwhile.
    eventually(Duration::from_secs(15), || async {
        deliveries(&app, &stuck_key).await.iter().any(|d| {
            d["attempts"] == 1
                && d["status"] == "pending"
                && d["lastError"] == "no answer within 5 s"
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_lost_when_the_sender_is_killed_mid_delivery() {
    let app = app().await;
    // The first answers fail, so that events are pending and being retried when the kills
    // come; later ones succeed.
    let receiver = Receiver::start(&[Answer::Status(500); 6], Answer::Status(200)).await;
    let (key, secret) = key_with_webhook(&app, &receiver).await;
    let mut sender = start_sender(&app, &[("WEBHOOK_RETRY_BASE_MS", "300")]);
    const LINKS: usize = 30;
    let mut ids = HashSet::new();
    for i in 0..LINKS {
        let link = app.create_link(&key, json!({})).await;
        ids.insert(link["id"].as_str().expect("id").to_string());
        if i % 10 == 9 {
            sender.kill9_and_restart();
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    sender.kill9_and_restart();

    let events: Vec<(String,)> = sqlx::query_as("SELECT id::text FROM webhook_events")
        .fetch_all(&app.db)
        .await
        .expect("events");
    assert_eq!(
        events.len(),
        LINKS,
        "one link.created event per link, in the outbox"
    );
    eventually(Duration::from_secs(40), || async {
        deliveries(&app, &key)
            .await
            .iter()
            .filter(|d| d["status"] == "delivered")
            .count()
            == LINKS
    })
    .await;
    let by_event = receiver.by_event();
    for (id,) in &events {
        let got = by_event
            .get(id)
            .unwrap_or_else(|| panic!("event {id} never reached the receiver"));
        for r in got {
            assert_signed(r, &secret);
        }
    }
    let delivered_links: HashSet<String> = by_event
        .values()
        .map(|rs| {
            rs[0].json()["data"]["id"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(delivered_links, ids, "every link's event arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_allow_private_a_loopback_webhook_is_refused_at_delivery() {
    // The API (default settings) refuses the URL when it is set...
    let strict = TestApp::start().await;
    let receiver = Receiver::start(&[], Answer::Status(200)).await;
    let key = strict.key(false).await;
    let resp = strict
        .set_webhook(&key, json!({"url": receiver.url()}))
        .await;
    assert_eq!(resp.status(), 400);
    // ...and a URL that got in anyway (set while allowed, or a name that now resolves to a
    // private address) is refused again at every delivery.
    sqlx::query(
        "UPDATE api_keys SET webhook_url = $1, webhook_secret = 'whsec_' || repeat('ab', 32) WHERE key_prefix = $2",
    )
    .bind(receiver.url())
    .bind(&key[..10])
    .execute(&strict.db)
    .await
    .expect("set url");
    let _sender = start_sender(
        &strict,
        &[
            ("WEBHOOK_ALLOW_PRIVATE", "false"),
            ("WEBHOOK_RETRY_BASE_MS", "60000"),
        ],
    );
    strict.create_link(&key, json!({})).await;
    let d = &newest_delivery_once(&strict, &key, |d| d["attempts"] == 1).await;
    assert_eq!(d["status"], "pending", "retried later: DNS answers change");
    assert_eq!(d["lastStatusCode"], Value::Null);
    assert_eq!(
        d["lastError"], "refused: the webhook URL's host is not a public Internet address",
        "no address named: {d}"
    );
    assert!(
        receiver.received().is_empty(),
        "nothing reached the loopback receiver"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_signs_the_next_deliveries_with_the_new_secret_and_a_removed_url_stops_events() {
    let app = app().await;
    let receiver = Receiver::start(&[], Answer::Status(200)).await;
    let (key, old_secret) = key_with_webhook(&app, &receiver).await;
    let _sender = start_sender(&app, &[]);
    app.create_link(&key, json!({})).await;
    wait_for_events(&receiver, 1, Duration::from_secs(15)).await;
    assert_signed(&receiver.received()[0], &old_secret);

    let resp = app
        .post_json("/api/settings/developer/webhook/rotate", &key, json!({}))
        .send()
        .await
        .expect("rotate");
    assert_eq!(resp.status(), 200);
    let new_secret = resp.json::<Value>().await.expect("json")["webhookSecret"]
        .as_str()
        .expect("secret")
        .to_string();
    assert_ne!(new_secret, old_secret);
    app.create_link(&key, json!({})).await;
    wait_for_events(&receiver, 2, Duration::from_secs(15)).await;
    assert_signed(&receiver.received()[1], &new_secret);

    // A key with no webhook URL gets no events at all.
    let resp = app.set_webhook(&key, json!({"url": null})).await;
    assert_eq!(resp.status(), 200);
    app.create_link(&key, json!({})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(deliveries(&app, &key).await.len(), 2);
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deliveries_route_checks_its_key_and_limit() {
    let app = app().await;
    let resp = app
        .get("/api/settings/developer/webhook/deliveries")
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 401);
    let key = app.key(false).await;
    assert_eq!(deliveries(&app, &key).await, Vec::<Value>::new());
    for bad in ["0", "501", "ten", "-1"] {
        let (status, body) = app
            .get_json(
                &format!("/api/settings/developer/webhook/deliveries?limit={bad}"),
                Some(&key),
            )
            .await;
        assert_eq!(status, 400, "limit={bad}");
        assert_eq!(body["error"], "limit must be a whole number from 1 to 500");
    }
    // Another key's events are not listed.
    let receiver = Receiver::start(&[], Answer::Status(200)).await;
    let (watched, _) = key_with_webhook(&app, &receiver).await;
    app.create_link(&watched, json!({})).await;
    assert_eq!(deliveries(&app, &watched).await.len(), 1);
    assert_eq!(deliveries(&app, &key).await.len(), 0);
    let (status, body) = app
        .get_json(
            "/api/settings/developer/webhook/deliveries?limit=1",
            Some(&watched),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().map(Vec::len), Some(1));
    assert_eq!(body[0]["status"], "pending", "no sender runs in this test");
    assert!(body[0]["nextAttemptAt"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_events_of_a_removed_webhook_url_are_recorded_as_failed() {
    let app = app().await;
    let receiver = Receiver::start(&[], Answer::Status(500)).await;
    let (key, _) = key_with_webhook(&app, &receiver).await;
    let _sender = start_sender(&app, &[("WEBHOOK_RETRY_BASE_MS", "500")]);
    app.create_link(&key, json!({})).await;
    newest_delivery_once(&app, &key, |d| d["attempts"] == 1).await;
    let resp = app.set_webhook(&key, json!({"url": ""})).await;
    assert_eq!(resp.status(), 200);
    let d = &newest_delivery_once(&app, &key, |d| d["status"] == "failed").await;
    assert_eq!(d["lastError"], "the API key has no webhook URL any more");
    assert_eq!(d["attempts"], 2);
    assert_eq!(
        receiver.received().len(),
        1,
        "nothing sent after the URL was removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_finished_events_older_than_a_week_and_keeps_pending_ones() {
    let app = app().await;
    let receiver = Receiver::start(&[], Answer::Status(200)).await;
    let (key, _) = key_with_webhook(&app, &receiver).await;
    for _ in 0..3 {
        app.create_link(&key, json!({})).await;
    }
    // Two finished long ago (one delivered, one failed, with an attempt each), one pending.
    sqlx::query(
        "WITH old AS (SELECT id, row_number() OVER (ORDER BY created_at, id) AS n FROM webhook_events) \
         UPDATE webhook_events e SET status = CASE WHEN old.n = 1 THEN 'delivered' ELSE 'failed' END, \
             finished_at = now() - interval '8 days', attempts = 1 \
         FROM old WHERE e.id = old.id AND old.n <= 2",
    )
    .execute(&app.db)
    .await
    .expect("age events");
    sqlx::query(
        "INSERT INTO webhook_attempts (event_id, attempt, at, status_code, duration_ms) \
         SELECT id, 1, now() - interval '8 days', 200, 5 FROM webhook_events WHERE status <> 'pending'",
    )
    .execute(&app.db)
    .await
    .expect("attempts");
    let removed = boltlink::webhooks::apply_retention(&app.store)
        .await
        .expect("retention");
    assert_eq!(removed, 2);
    let left: Vec<(String,)> = sqlx::query_as("SELECT status FROM webhook_events")
        .fetch_all(&app.db)
        .await
        .expect("left");
    assert_eq!(left, [("pending".to_string(),)]);
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_attempts")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(attempts, 0, "attempts go with their events");
    assert_eq!(deliveries(&app, &key).await.len(), 1);
}

/// Found in the fleet work, after the same finding for the aggregator: the sender's lock lives
/// in a PostgreSQL session, which ends without a word on a restart of the primary or a broken
/// connection. A standby sender then took the lock while the first went on delivering — two
/// senders, every event sent twice — and the first never stood by again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_whose_lock_was_taken_by_another_stands_by_and_takes_over_when_that_one_dies() {
    let app = app().await;
    let receiver = Receiver::start(&[], Answer::Status(200)).await;
    let (key, _) = key_with_webhook(&app, &receiver).await;
    let logs = std::env::temp_dir().join(format!("bl-wh-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&logs).expect("log dir");
    let (first_log, second_log) = (logs.join("first.log"), logs.join("second.log"));
    let env = sender_env(&app, &[("LOG_LEVEL", "info")]);
    let first = Daemon::start(
        WEBHOOKS_BIN,
        env.clone(),
        Some(first_log.display().to_string()),
    );
    let delivered = |n: usize| {
        let (app, key) = (&app, &key);
        async move {
            eventually(Duration::from_secs(30), || async {
                deliveries(app, key)
                    .await
                    .iter()
                    .filter(|d| d["status"] == "delivered")
                    .count()
                    == n
            })
            .await
        }
    };
    app.create_link(&key, json!({})).await;
    delivered(1).await;
    let second = Daemon::start(WEBHOOKS_BIN, env, Some(second_log.display().to_string()));
    eventually(Duration::from_secs(30), || async {
        logged(&second_log, "boltlink-webhooks on standby")
    })
    .await;
    // The first one's lock session ends while it is paused: the standby takes the lock.
    first.signal("STOP");
    end_the_lock_holders_session(&app.db).await;
    eventually(Duration::from_secs(30), || async {
        logged(&second_log, "lock taken; leaving standby")
    })
    .await;
    first.signal("CONT");
    eventually(Duration::from_secs(30), || async {
        logged(&first_log, "back to standby")
    })
    .await;
    for _ in 0..5 {
        app.create_link(&key, json!({})).await;
    }
    delivered(6).await;

    // The holder dies: the first takes the lock again and delivers what follows.
    second.signal("KILL");
    for _ in 0..5 {
        app.create_link(&key, json!({})).await;
    }
    delivered(11).await;
    assert!(
        logged(&first_log, "lock taken; leaving standby"),
        "{}",
        std::fs::read_to_string(&first_log).unwrap_or_default()
    );
    assert_eq!(
        receiver.by_event().len(),
        11,
        "every event reached the receiver"
    );
    let _ = std::fs::remove_dir_all(&logs);
}
