//! The producing side of the click stream: [`RedisShipper`], the click flusher's way out,
//! appends a batch of clicks (once, by [`APPEND_SCRIPT`]) and ships the hot limiter's
//! increments in the same pipeline.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::limiter::HotLimiter;
use super::RedisHandle;
use crate::clicks::event::{pack, PACKED_VERSION};
use crate::clicks::queue::{ClickQueue, ClickShipper, FlushOutcome, FLUSH_BATCH};

/// Appends one batch of click events to the stream as ONE packed entry, unless this producer
/// already appended a batch with this sequence number or a later one (`KEYS[2]` holds the
/// producer's last sequence number, kept a day after its last batch). Atomic: Redis runs a
/// script as one unit, so a batch is either wholly in the stream or not at all, and a resend
/// after a lost reply changes nothing. `ARGV[1]` is the sequence number, the rest the entry's
/// fields and values.
pub const APPEND_SCRIPT: &str = r#"
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'EX', 86400)
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
return 1
"#;

impl RedisHandle {
    /// One pipeline: a batch of up to [`FLUSH_BATCH`] events (appended as one packed entry by
    /// [`APPEND_SCRIPT`], at most once per batch) plus every pending limiter increment.
    pub async fn flush_once(&self, queue: &ClickQueue, limiter: &HotLimiter) -> FlushOutcome {
        if !self.is_healthy() {
            return FlushOutcome::Failed;
        }
        let batch = queue.next_batch(FLUSH_BATCH);
        let increments = limiter.take_pending();
        if batch.is_none() && increments.is_empty() {
            return FlushOutcome::Empty;
        }
        let mut pipe = ::redis::pipe();
        if let Some(batch) = &batch {
            // A batch's shard follows from its sequence number: a resend goes where the first
            // send went, whose producer sequence makes it idempotent.
            let keys = self
                .keys()
                .for_shard((batch.seq % u64::from(self.click_stream_shards())) as u16);
            let mut cmd = ::redis::cmd("EVAL");
            cmd.arg(APPEND_SCRIPT)
                .arg(2)
                .arg(keys.click_stream())
                .arg(keys.click_producer(&queue.producer().to_string()))
                .arg(batch.seq)
                .arg("v")
                .arg(PACKED_VERSION)
                .arg("n")
                .arg(batch.events.len());
            let packed = pack(&batch.events);
            cmd.arg("strings")
                .arg(packed.strings)
                .arg("events")
                .arg(packed.events);
            pipe.add_command(cmd).ignore();
        }
        for inc in &increments {
            let (name, subject) = inc.subject.key_parts();
            let key = self.keys().rate_window(name, &subject, inc.window);
            pipe.cmd("INCRBY").arg(&key).arg(inc.delta);
            pipe.cmd("PEXPIRE")
                .arg(&key)
                .arg(inc.window_ms * 2)
                .ignore();
        }
        match self.try_pipe::<Vec<u64>>(&pipe).await {
            Ok(totals) => {
                let now_ms = chrono::Utc::now().timestamp_millis();
                for (inc, total) in increments
                    .iter()
                    .zip(totals.into_iter().map(Some).chain(std::iter::repeat(None)))
                {
                    limiter.report(inc, total, now_ms);
                }
                if let Some(batch) = batch {
                    self.inner
                        .flushed_total
                        .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
                }
                FlushOutcome::Delivered
            }
            Err(_) => {
                let now_ms = chrono::Utc::now().timestamp_millis();
                for inc in &increments {
                    limiter.report(inc, None, now_ms);
                }
                if let Some(batch) = batch {
                    queue.hold(batch);
                }
                FlushOutcome::Failed
            }
        }
    }

    pub fn flushed_events_total(&self) -> u64 {
        self.inner.flushed_total.load(Ordering::Relaxed)
    }
}

/// The click flusher's way out ([`crate::clicks::queue::run_flusher`]): each flush ships a
/// batch of clicks and every pending rate-limit increment in one pipeline, and idle limiter
/// windows are evicted every 10 s.
pub struct RedisShipper {
    pub redis: RedisHandle,
    pub limiter: Arc<HotLimiter>,
    last_eviction: std::sync::Mutex<std::time::Instant>,
}

impl RedisShipper {
    pub fn new(redis: RedisHandle, limiter: Arc<HotLimiter>) -> Self {
        Self {
            redis,
            limiter,
            last_eviction: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }
}

impl ClickShipper for RedisShipper {
    async fn flush_once(&self, queue: &ClickQueue) -> FlushOutcome {
        self.redis.flush_once(queue, &self.limiter).await
    }

    fn tick(&self) {
        let mut last = self
            .last_eviction
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.elapsed() > Duration::from_secs(10) {
            self.limiter
                .evict_idle(chrono::Utc::now().timestamp_millis());
            *last = std::time::Instant::now();
        }
    }
}
