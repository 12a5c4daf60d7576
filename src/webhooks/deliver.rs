//! Sending events: the dispatcher that picks due events from the outbox, one POST per
//! attempt (signed, under the address rules, within 5 s), and the record of each attempt.
//!
//! One delivery per key at a time, at most [`WebhookConfig::concurrency`] at once: a receiver
//! that hangs holds its own key's slot for the 5 s timeout and nothing else. `link.clicked`
//! events of a key start at most once a second. An attempt is recorded after it ended; if the
//! process dies first, the event is still pending and is sent again (at least once; the
//! receiver deduplicates on `BoltLink-Event-Id`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::signature;
use crate::config::WebhookConfig;
use crate::daemon::Shutdown;
use crate::http::routes::links::LinkView;
use crate::http::routes::timestamp;
use crate::metadata::{MetadataError, MetadataFetcher};
use crate::store::{AttemptResult, DueEvent, LinkRecord, Store};

/// How often the outbox is looked at for due events when nothing else wakes the dispatcher.
const TICK: Duration = Duration::from_millis(250);
/// At most one `link.clicked` delivery per key per this long.
const CLICKED_SPACING: Duration = Duration::from_secs(1);
/// How long in-flight deliveries may finish after SIGTERM (within the unit's 5 s).
const DRAIN: Duration = Duration::from_secs(3);

const SENDER_AGENT: &str = concat!("BoltLink-Webhooks/", env!("CARGO_PKG_VERSION"));

/// Delivery counts since the process started, for the heartbeat.
#[derive(Debug, Default)]
pub struct Counters {
    pub delivered: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
    pub retried: std::sync::atomic::AtomicU64,
}

/// What one attempt needs.
pub struct Sender {
    pub store: Store,
    pub fetcher: MetadataFetcher,
    pub config: WebhookConfig,
    /// `PUBLIC_BASE_URL`: link objects carry their short URL.
    pub public_base_url: String,
    pub counters: Arc<Counters>,
}

/// The body of `event` as sent: `{id, type, createdAt, data}`; `data` is the API's link
/// object for link events, the batch for `link.clicked`.
pub fn render_body(event: &DueEvent, public_base_url: &str) -> Result<Vec<u8>, String> {
    let data = if event.kind == "link.clicked" {
        event.data.clone()
    } else {
        let link: LinkRecord = serde_json::from_value(event.data.clone())
            .map_err(|e| format!("the stored link of this event cannot be read: {e}"))?;
        serde_json::to_value(LinkView::of(public_base_url, &link))
            .map_err(|e| format!("the link of this event cannot be rendered: {e}"))?
    };
    serde_json::to_vec(&serde_json::json!({
        "id": event.id,
        "type": event.kind,
        "createdAt": timestamp(event.created_at),
        "data": data,
    }))
    .map_err(|e| format!("the event cannot be rendered: {e}"))
}

/// When attempt `attempts + 1` is due after attempt `attempts` failed at `now`: `base`
/// doubled for each failure before, as long as that is within `window` of the event;
/// `None`: give up (recorded as failed).
pub fn next_attempt(
    created_at: DateTime<Utc>,
    attempts: i32,
    now: DateTime<Utc>,
    base: Duration,
    window: Duration,
) -> Option<DateTime<Utc>> {
    let doublings = attempts.saturating_sub(1).clamp(0, 40) as u32;
    let delay = base.checked_mul(1u32 << doublings.min(31))?;
    let next = now + chrono::Duration::from_std(delay).ok()?;
    let deadline = created_at + chrono::Duration::from_std(window).ok()?;
    (next <= deadline).then_some(next)
}

impl Sender {
    /// One attempt at `event`: sends it (unless it can no longer be), then records the
    /// attempt and the event's new state.
    pub async fn attempt(&self, event: &DueEvent) {
        let attempt = event.attempts + 1;
        let started_at = Utc::now();
        let clock = Instant::now();
        let outcome = self.send(event).await;
        let duration_ms = clock.elapsed().as_millis().min(i32::MAX as u128) as i32;
        let result = match outcome {
            Ok(code) if (200..300).contains(&code) => {
                AttemptResult::Delivered { status_code: code }
            }
            Ok(code) => self.failed(event, attempt, Some(code), format!("answered HTTP {code}")),
            Err(Refusal::Retry(error)) => self.failed(event, attempt, None, error),
            Err(Refusal::GiveUp(error)) => AttemptResult::Failed {
                status_code: None,
                error,
                next_attempt_at: None,
            },
        };
        let counter = match &result {
            AttemptResult::Delivered { .. } => &self.counters.delivered,
            AttemptResult::Failed {
                next_attempt_at: Some(_),
                ..
            } => &self.counters.retried,
            AttemptResult::Failed { .. } => &self.counters.failed,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match &result {
            AttemptResult::Delivered { status_code } => tracing::debug!(
                webhook.event = %event.id, webhook.type = %event.kind, attempt, status = status_code,
                "webhook delivered"
            ),
            AttemptResult::Failed {
                error,
                next_attempt_at,
                ..
            } => tracing::info!(
                webhook.event = %event.id, webhook.type = %event.kind, attempt,
                error = %error, retry_at = ?next_attempt_at,
                "webhook delivery failed"
            ),
        }
        if let Err(e) = self
            .store
            .record_webhook_attempt(event.id, attempt, started_at, duration_ms, &result)
            .await
        {
            // The event stays pending as it was: it is sent again, which the event id lets
            // the receiver recognise.
            tracing::warn!(webhook.event = %event.id, error = %e, "could not record a webhook attempt; it will be sent again");
        }
    }

    fn failed(
        &self,
        event: &DueEvent,
        attempt: i32,
        status_code: Option<u16>,
        error: String,
    ) -> AttemptResult {
        AttemptResult::Failed {
            status_code,
            error,
            next_attempt_at: next_attempt(
                event.created_at,
                attempt,
                Utc::now(),
                self.config.retry_base,
                self.config.retry_window,
            ),
        }
    }

    /// Sends `event` once; the status code of the answer.
    async fn send(&self, event: &DueEvent) -> Result<u16, Refusal> {
        if event.key_revoked {
            return Err(Refusal::GiveUp("the API key was revoked".to_string()));
        }
        let (Some(url), Some(secret)) = (&event.webhook_url, &event.webhook_secret) else {
            return Err(Refusal::GiveUp(
                "the API key has no webhook URL any more".to_string(),
            ));
        };
        let url = url::Url::parse(url)
            .map_err(|e| Refusal::GiveUp(format!("the webhook URL is not valid: {e}")))?;
        let body = render_body(event, &self.public_base_url).map_err(Refusal::GiveUp)?;
        let t = Utc::now().timestamp();
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static(SENDER_AGENT));
        headers.insert(
            HeaderName::from_static("boltlink-event-id"),
            HeaderValue::from_str(&event.id.to_string()).expect("a UUID is a header value"),
        );
        headers.insert(
            HeaderName::from_static("boltlink-signature"),
            HeaderValue::from_str(&signature::sign(secret, t, &body))
                .expect("hex and digits are a header value"),
        );
        self.fetcher
            .post(&url, headers, Bytes::from(body), self.config.allow_private)
            .await
            .map_err(|e| {
                tracing::debug!(webhook.event = %event.id, error = %e, "webhook attempt got no answer");
                Refusal::of(e)
            })
    }
}

/// Why an attempt did not get an answer.
enum Refusal {
    /// Worth another try later (network, timeout, refused address: DNS answers change).
    Retry(String),
    /// Never deliverable (no URL any more, revoked key): recorded as failed at once.
    GiveUp(String),
}

impl Refusal {
    /// The error as the key's holder reads it in the deliveries list: what kind of failure,
    /// never an address, a range or a resolver's message (the list must not become a way to
    /// map our network, as the metadata route's errors must not); the journal has the
    /// details at debug level.
    fn of(e: MetadataError) -> Refusal {
        match e {
            MetadataError::Timeout => Refusal::Retry("no answer within 5 s".to_string()),
            MetadataError::ForbiddenAddress(_) => Refusal::Retry(
                "refused: the webhook URL's host is not a public Internet address".to_string(),
            ),
            MetadataError::InvalidUrl(_) => {
                Refusal::GiveUp("the webhook URL is not a valid http(s) URL".to_string())
            }
            MetadataError::Network(_)
            | MetadataError::TooManyRedirects
            | MetadataError::UpstreamStatus(_) => {
                Refusal::Retry("could not connect to the webhook URL or send to it".to_string())
            }
        }
    }
}

/// Keys not to pick now: with a delivery in flight (`None`), or a `link.clicked` delivery
/// started less than [`CLICKED_SPACING`] ago (until when).
type Busy = Arc<Mutex<HashMap<Uuid, Option<Instant>>>>;

/// Picks due events and runs their attempts until `shutdown`; then lets the attempts in flight
/// finish for up to [`DRAIN`] (those cut short stay pending and are sent again).
pub async fn run_dispatcher(sender: Arc<Sender>, shutdown: Shutdown) {
    let slots = Arc::new(Semaphore::new(sender.config.concurrency));
    let busy: Busy = Arc::default();
    let mut last_clicked: HashMap<Uuid, Instant> = HashMap::new();
    let mut in_flight = JoinSet::new();
    let mut in_outage = false;
    while !shutdown.is_triggered() {
        while in_flight.try_join_next().is_some() {}
        let free = slots.available_permits();
        let mut wait = TICK;
        if free > 0 {
            let now = Instant::now();
            let excluded: Vec<Uuid> = {
                let mut busy = busy.lock().expect("busy keys");
                busy.retain(|_, until| until.is_none_or(|t| t > now));
                busy.keys().copied().collect()
            };
            match sender
                .store
                .due_webhook_events(&excluded, free as i64)
                .await
            {
                Ok(events) => {
                    if in_outage {
                        tracing::info!("webhook outbox reachable again");
                        in_outage = false;
                    }
                    if events.len() == free {
                        // More may be due: look again as soon as a slot frees.
                        wait = Duration::from_millis(20);
                    }
                    for event in events {
                        if event.kind == "link.clicked" {
                            if let Some(at) = last_clicked.get(&event.api_key_id) {
                                let next = *at + CLICKED_SPACING;
                                if next > now {
                                    busy.lock()
                                        .expect("busy keys")
                                        .insert(event.api_key_id, Some(next));
                                    continue;
                                }
                            }
                            last_clicked.insert(event.api_key_id, now);
                        }
                        let Ok(permit) = slots.clone().try_acquire_owned() else {
                            break;
                        };
                        busy.lock()
                            .expect("busy keys")
                            .insert(event.api_key_id, None);
                        let (sender, busy) = (sender.clone(), busy.clone());
                        in_flight.spawn(async move {
                            sender.attempt(&event).await;
                            busy.lock().expect("busy keys").remove(&event.api_key_id);
                            drop(permit);
                        });
                    }
                    last_clicked.retain(|_, at| now.duration_since(*at) < CLICKED_SPACING);
                }
                Err(e) => {
                    if !in_outage {
                        tracing::error!(error = %e, "cannot read the webhook outbox; retrying");
                        in_outage = true;
                    }
                    wait = Duration::from_secs(1);
                }
            }
        }
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep(wait) => {}
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    }
    let _ = tokio::time::timeout(DRAIN, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    in_flight.abort_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn retries_double_from_the_base_and_stop_at_the_window() {
        let created = Utc
            .with_ymd_and_hms(2026, 12, 6, 0, 0, 0)
            .single()
            .expect("date");
        let base = Duration::from_secs(10);
        let day = Duration::from_secs(86_400);
        let after = |attempts: i32, now: DateTime<Utc>| {
            next_attempt(created, attempts, now, base, day).map(|t| (t - now).num_seconds())
        };
        assert_eq!(after(1, created), Some(10));
        assert_eq!(after(2, created), Some(20));
        assert_eq!(after(3, created), Some(40));
        assert_eq!(after(10, created), Some(10 * 512));
        // 10 s × 2^13 = 22.8 h still fits a day from the event; 2^14 does not.
        assert_eq!(after(14, created), Some(10 * 8192));
        assert_eq!(after(15, created), None);
        // Late in the window, even a short wait that ends past it gives up.
        assert_eq!(after(1, created + chrono::Duration::seconds(86_395)), None);
        // Absurd attempt counts neither overflow nor panic.
        assert_eq!(after(i32::MAX, created), None);
    }

    fn event(kind: &str, data: serde_json::Value) -> DueEvent {
        DueEvent {
            id: Uuid::nil(),
            api_key_id: Uuid::nil(),
            kind: kind.to_string(),
            created_at: Utc
                .with_ymd_and_hms(2026, 12, 6, 1, 2, 3)
                .single()
                .expect("date"),
            data,
            attempts: 0,
            webhook_url: None,
            webhook_secret: None,
            key_revoked: false,
        }
    }

    #[test]
    fn link_events_carry_the_api_link_object_rendered_from_the_stored_row() {
        // The row as `to_jsonb(links)` stores it: snake_case columns, PostgreSQL timestamps.
        let row = serde_json::json!({
            "id": "0b8f3c1e-6a2d-4b7e-9f10-2c3d4e5f6a7b", "owner_key_id": "00000000-0000-0000-0000-000000000001",
            "short_code": "abc", "original_url": "https://example.com/", "clicks": 3,
            "title": null, "description": null, "favicon": null, "is_protected": false,
            "is_expiring": false, "expires_at": null, "is_rate_limited": false,
            "max_clicks_per_min": 100, "campaign_id": null,
            "created_at": "2026-12-06T01:02:03.456789+00:00", "updated_at": "2026-12-06T01:02:03.456789+00:00",
            "redirect_type": 301, "forward_query": true, "tags": ["a"],
            "redirect_rules": [{"conditions": [{"type": "device", "value": "ios"}], "url": "https://apps.example/"}],
            "last_click_at": null
        });
        let body = render_body(&event("link.created", row), "https://bl.example").expect("renders");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
        assert_eq!(v["id"], "00000000-0000-0000-0000-000000000000");
        assert_eq!(v["type"], "link.created");
        assert_eq!(v["createdAt"], "2026-12-06T01:02:03.000Z");
        assert_eq!(v["data"]["shortUrl"], "https://bl.example/abc");
        assert_eq!(v["data"]["createdAt"], "2026-12-06T01:02:03.456Z");
        assert_eq!(v["data"]["redirectType"], 301);
        assert_eq!(
            v["data"]["redirectRules"][0]["url"],
            "https://apps.example/"
        );
        assert!(v["data"].get("passwordHash").is_none());
        let clicked = serde_json::json!({"clicks": [{"linkId": "x"}]});
        let body = render_body(
            &event("link.clicked", clicked.clone()),
            "https://bl.example",
        )
        .expect("renders");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
        assert_eq!(v["data"], clicked);
        let broken = render_body(&event("link.updated", serde_json::json!({"id": 1})), "x");
        assert!(broken
            .expect_err("a row that is not a link")
            .contains("cannot be read"));
    }
}
