//! Every Redis key and channel name, built in one place from the configured prefix, so tests
//! can isolate themselves with a prefix and operators can read the key space from this file.

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Cached [`crate::domain::RedirectTarget`] (JSON), or the negative marker.
    pub fn link(&self, code: &str) -> String {
        format!("{}link:{code}", self.prefix)
    }

    /// The click stream the API appends to and the worker/aggregator consume.
    pub fn click_stream(&self) -> String {
        format!("{}clicks", self.prefix)
    }

    /// The sequence number of the last click batch a producer (one API process) appended;
    /// makes resends idempotent. One key per process start, not per batch.
    pub fn click_producer(&self, producer: &str) -> String {
        format!("{}clickproducer:{producer}", self.prefix)
    }

    /// Where entries that are not valid click events are moved, with the reason.
    pub fn dead_letters(&self) -> String {
        format!("{}clicks:dead", self.prefix)
    }

    /// When an API key last changed something (wall-clock ms), while a read replica may not
    /// have replayed it yet: that key's reads stay on the primary until it has.
    pub fn read_fence(&self, key_id: &uuid::Uuid) -> String {
        format!("{}readfence:{key_id}", self.prefix)
    }

    /// Pub/sub channel carrying short codes whose cached state changed.
    pub fn invalidation_channel(&self) -> String {
        format!("{}invalidate", self.prefix)
    }

    /// One fixed window of a rate-limit counter: `{prefix}rl:{name}:{subject}:{window index}`.
    pub fn rate_window(&self, name: &str, subject: &str, window: i64) -> String {
        format!("{}rl:{name}:{subject}:{window}", self.prefix)
    }

    /// The lock that allows one attempt in flight for `subject` (e.g. a password check per
    /// link and client), held while the attempt is checked.
    pub fn attempt_lock(&self, subject: &str) -> String {
        format!("{}attempt:{subject}", self.prefix)
    }

    /// Held (with an expiry) by the API instance that is restarting for memory, so that the
    /// others wait their turn instead of draining at the same moment.
    pub fn memory_restart_turn(&self) -> String {
        format!("{}memrestart", self.prefix)
    }

    /// Set of API instance names that have published a heartbeat.
    pub fn instances(&self) -> String {
        format!("{}instances", self.prefix)
    }

    /// Hash with one API instance's heartbeat (started, last seen, pid, version).
    pub fn instance(&self, name: &str) -> String {
        format!("{}instance:{name}", self.prefix)
    }

    /// One instance's metrics snapshot (JSON), merged by every `/metrics` scrape.
    pub fn instance_metrics(&self, name: &str) -> String {
        format!("{}metrics:{name}", self.prefix)
    }

    /// Heartbeat hash of a background process (`worker`, `aggregator`).
    pub fn process_heartbeat(&self, process: &str) -> String {
        format!("{}heartbeat:{process}", self.prefix)
    }
}
