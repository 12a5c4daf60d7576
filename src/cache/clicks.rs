//! Click events and the bounded in-memory queue between the redirect path and the stream.
//!
//! The redirect pushes an event and returns; the flusher task (see `super::flush`) ships
//! queued events to the Redis Stream in pipelined batches. While Redis is unreachable events
//! stay queued (oldest first) up to `CLICK_QUEUE_CAPACITY`; past it new events are dropped,
//! counted in `boltlink_clicks_dropped_total` and logged, never silently.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;
use uuid::Uuid;

/// Version of the stream entry layout, written as field `v`.
pub const CLICK_EVENT_VERSION: &str = "1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClickKind {
    /// The visitor reached the target (302, XHR redirect answer, or successful verify).
    Click,
    /// The visitor was stopped before the target (password form, per-link cap).
    Gated,
}

impl ClickKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClickKind::Click => "click",
            ClickKind::Gated => "gated",
        }
    }
}

/// One visit, as appended to the stream. `id` is unique per event so consumers can drop
/// duplicates (a batch resent after an ambiguous Redis failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickEvent {
    pub id: Uuid,
    pub link_id: Uuid,
    pub owner_key_id: Uuid,
    pub at_ms: i64,
    pub region: String,
    pub user_agent: String,
    pub referer: String,
    /// Server-side time from request to answer, microseconds.
    pub latency_us: u32,
    pub kind: ClickKind,
    /// The client address, only for the worker's GeoIP lookup; never stored in PostgreSQL.
    pub client_ip: Option<std::net::IpAddr>,
}

/// Named string fields of a stream entry, however they are held.
pub trait FieldLookup {
    fn field(&self, name: &str) -> Option<&str>;
}

impl FieldLookup for std::collections::HashMap<String, String> {
    fn field(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// As read from the stream: in entry order; the first of repeated names wins.
impl FieldLookup for Vec<(String, String)> {
    fn field(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A stream entry that is not a valid click event (wrong version, missing or bad field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid click event: {0}")]
pub struct InvalidEvent(pub String);

impl ClickEvent {
    pub const FIELD_COUNT: usize = 11;

    /// Stream entry fields, in `XADD` order.
    pub fn fields(&self) -> [(&'static str, String); Self::FIELD_COUNT] {
        [
            ("v", CLICK_EVENT_VERSION.to_string()),
            ("id", self.id.to_string()),
            ("link", self.link_id.to_string()),
            ("owner", self.owner_key_id.to_string()),
            ("at", self.at_ms.to_string()),
            ("region", self.region.clone()),
            ("ua", self.user_agent.clone()),
            ("ref", self.referer.clone()),
            ("lat", self.latency_us.to_string()),
            ("kind", self.kind.as_str().to_string()),
            (
                "ip",
                self.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            ),
        ]
    }

    /// Parses a stream entry written by [`ClickEvent::fields`]; rejects anything else with a
    /// message naming the field.
    pub fn from_fields(fields: &impl FieldLookup) -> Result<Self, InvalidEvent> {
        let get = |name: &str| {
            fields
                .field(name)
                .ok_or_else(|| InvalidEvent(format!("field `{name}` is missing")))
        };
        let version = get("v")?;
        if version != CLICK_EVENT_VERSION {
            return Err(InvalidEvent(format!(
                "version {version:?} is not supported"
            )));
        }
        let uuid = |name: &str| {
            get(name).and_then(|v| {
                Uuid::parse_str(v)
                    .map_err(|_| InvalidEvent(format!("field `{name}` is not a UUID")))
            })
        };
        let kind = match get("kind")? {
            "click" => ClickKind::Click,
            "gated" => ClickKind::Gated,
            other => {
                return Err(InvalidEvent(format!(
                    "field `kind` has unknown value {other:?}"
                )))
            }
        };
        let at_ms: i64 = get("at")?
            .parse()
            .map_err(|_| InvalidEvent("field `at` is not a millisecond timestamp".to_string()))?;
        if chrono::DateTime::from_timestamp_millis(at_ms).is_none() {
            return Err(InvalidEvent("field `at` is out of range".to_string()));
        }
        let latency_us: u32 = get("lat")?.parse().map_err(|_| {
            InvalidEvent("field `lat` is not a whole number of microseconds".to_string())
        })?;
        let client_ip = match fields.field("ip") {
            None | Some("") => None,
            Some(v) => Some(
                v.parse()
                    .map_err(|_| InvalidEvent("field `ip` is not an IP address".to_string()))?,
            ),
        };
        Ok(ClickEvent {
            id: uuid("id")?,
            link_id: uuid("link")?,
            owner_key_id: uuid("owner")?,
            at_ms,
            region: clip(get("region")?, 64),
            user_agent: clip(get("ua")?, 512),
            referer: clip(get("ref")?, 1024),
            latency_us,
            kind,
            client_ip,
        })
    }
}

/// Truncates to at most `max` bytes on a character boundary (user agents can be huge).
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// A batch on its way to Redis. It keeps its id until Redis confirms it, so a resend after an
/// ambiguous failure (applied, but the reply was lost) is recognised and not applied twice.
#[derive(Debug, Clone)]
pub struct Batch {
    pub id: Uuid,
    pub events: Vec<ClickEvent>,
}

pub struct ClickQueue {
    events: Mutex<VecDeque<ClickEvent>>,
    /// The batch that failed last; it is resent, unchanged, before anything else.
    held: Mutex<Option<Batch>>,
    capacity: usize,
    pub(super) notify: Notify,
    dropped: AtomicU64,
    enqueued: AtomicU64,
}

impl ClickQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            events: Mutex::new(VecDeque::new()),
            held: Mutex::new(None),
            capacity,
            notify: Notify::new(),
            dropped: AtomicU64::new(0),
            enqueued: AtomicU64::new(0),
        }
    }

    /// Never blocks and never fails the caller; returns false when the event was dropped.
    pub fn push(&self, event: ClickEvent) -> bool {
        let accepted = {
            let mut q = self.events.lock().unwrap_or_else(|p| p.into_inner());
            if q.len() >= self.capacity {
                false
            } else {
                q.push_back(event);
                true
            }
        };
        if accepted {
            self.enqueued.fetch_add(1, Ordering::Relaxed);
            self.notify.notify_one();
        } else {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Log the first drop and then every 10 000th, not every event.
            if n == 1 || n % 10_000 == 0 {
                tracing::error!(
                    clicks.dropped_total = n,
                    queue.capacity = self.capacity,
                    "click queue full: dropping click events until Redis accepts them again"
                );
            }
        }
        accepted
    }

    /// The next batch to ship: the held (failed) batch if there is one, else up to `max`
    /// events from the front, oldest first, under a new batch id.
    pub fn next_batch(&self, max: usize) -> Option<Batch> {
        if let Some(b) = self.held.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Some(b);
        }
        let mut q = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if q.is_empty() {
            return None;
        }
        let n = q.len().min(max);
        Some(Batch {
            id: Uuid::now_v7(),
            events: q.drain(..n).collect(),
        })
    }

    /// Keeps a batch Redis did not confirm, to be resent as it is.
    pub fn hold(&self, batch: Batch) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(batch);
    }

    /// Events not yet confirmed by Redis (queued plus held).
    pub fn len(&self) -> usize {
        let held = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, |b| b.events.len());
        held + self.events.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Timestamp (ms) of the oldest undelivered event.
    pub fn oldest_at_ms(&self) -> Option<i64> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .front()
            .map(|e| e.at_ms)
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn enqueued_total(&self) -> u64 {
        self.enqueued.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: i64) -> ClickEvent {
        ClickEvent {
            id: Uuid::now_v7(),
            link_id: Uuid::nil(),
            owner_key_id: Uuid::nil(),
            at_ms: n,
            region: "UNKNOWN".into(),
            user_agent: String::new(),
            referer: String::new(),
            latency_us: 1,
            kind: ClickKind::Click,
            client_ip: Some("192.0.2.7".parse().expect("ip")),
        }
    }

    #[test]
    fn queue_is_bounded_and_counts_drops() {
        let q = ClickQueue::new(2);
        assert!(q.push(ev(1)));
        assert!(q.push(ev(2)));
        assert!(!q.push(ev(3)));
        assert_eq!(q.dropped_total(), 1);
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn a_held_batch_is_resent_unchanged_before_newer_events() {
        let q = ClickQueue::new(10);
        for i in 0..4 {
            q.push(ev(i));
        }
        let first = q.next_batch(3).expect("batch");
        q.push(ev(99));
        let id = first.id;
        q.hold(first);
        assert_eq!(q.len(), 5);
        let again = q.next_batch(10).expect("held batch");
        assert_eq!(again.id, id);
        assert_eq!(
            again.events.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        let rest = q.next_batch(10).expect("rest");
        assert_ne!(rest.id, id);
        assert_eq!(
            rest.events.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
            vec![3, 99]
        );
        assert!(q.next_batch(10).is_none());
    }

    #[test]
    fn stream_fields_round_trip_and_bad_entries_name_the_field() {
        let e = ev(1_700_000_000_000);
        let map: std::collections::HashMap<String, String> = e
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(ClickEvent::from_fields(&map), Ok(e));
        for (field, bad) in [
            ("id", "x"),
            ("at", "soon"),
            ("kind", "visit"),
            ("lat", "-1"),
            ("ip", "nope"),
            ("v", "9"),
        ] {
            let mut m = map.clone();
            m.insert(field.to_string(), bad.to_string());
            let err = ClickEvent::from_fields(&m).expect_err(field);
            assert!(
                err.to_string()
                    .contains(if field == "v" { "version" } else { field }),
                "{err}"
            );
        }
        let mut m = map.clone();
        m.remove("link");
        assert!(ClickEvent::from_fields(&m)
            .expect_err("missing")
            .to_string()
            .contains("`link`"));
    }

    #[test]
    fn clip_respects_character_boundaries() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("abc", 10), "abc");
    }
}
