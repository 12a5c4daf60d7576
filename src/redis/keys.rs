//! Every Redis key and channel name, built in one place from the configured prefix, so tests
//! can isolate themselves with a prefix and operators can read the key space from this file.
//!
//! On a Redis Cluster, keys that one command or script touches together must hash to one slot,
//! so they carry the same hash tag (the part in `{}`, which alone decides the slot): the click
//! stream with its producer sequences and dead letters (`{prefix}{clicks}`…), the two windows
//! of one rate-limit counter (`{prefix}rl:{name:subject}:window`). On a standalone server the
//! names stay as they always were, so an upgrade finds its stream and counters where it left
//! them. The prefix itself may not contain braces in cluster mode (config refuses it).

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    cluster: bool,
    /// Which shard of the click stream the stream's keys name (`CLICK_STREAM_SHARDS`).
    shard: u16,
}

impl Keys {
    pub fn new(prefix: &str, cluster: bool) -> Self {
        Self {
            prefix: prefix.to_string(),
            cluster,
            shard: 0,
        }
    }

    /// The same keys, with the stream's keys naming `shard`.
    pub fn for_shard(&self, shard: u16) -> Self {
        Self {
            shard,
            ..self.clone()
        }
    }

    pub fn shard(&self) -> u16 {
        self.shard
    }

    /// What the shard's stream keys start with: `{prefix}clicks` for shard 0 (the name of the
    /// one stream before there were shards), `{prefix}clicks.N` for shard N; in braces on a
    /// cluster, so that each shard's keys share a slot and the shards spread over the slots.
    fn clicks(&self) -> String {
        let name = match self.shard {
            0 => "clicks".to_string(),
            n => format!("clicks.{n}"),
        };
        if self.cluster {
            format!("{}{{{name}}}", self.prefix)
        } else {
            format!("{}{name}", self.prefix)
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
        self.clicks()
    }

    /// The sequence number of the last click batch a producer (one API process) appended;
    /// makes resends idempotent. One key per process start, not per batch.
    pub fn click_producer(&self, producer: &str) -> String {
        match (self.cluster, self.shard) {
            (true, _) => format!("{}:producer:{producer}", self.clicks()),
            (false, 0) => format!("{}clickproducer:{producer}", self.prefix),
            (false, n) => format!("{}clickproducer.{n}:{producer}", self.prefix),
        }
    }

    /// Where entries that are not valid click events are moved, with the reason.
    pub fn dead_letters(&self) -> String {
        format!("{}:dead", self.clicks())
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
    /// On a cluster the counter's name is its hash tag, unless the subject brings its own
    /// (the password throttle tags every key of an attempt with the link).
    pub fn rate_window(&self, name: &str, subject: &str, window: i64) -> String {
        if self.cluster && !subject.contains('{') {
            format!("{}rl:{{{name}:{subject}}}:{window}", self.prefix)
        } else {
            format!("{}rl:{name}:{subject}:{window}", self.prefix)
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(key: &str) -> u16 {
        ::redis::cluster_routing::get_slot(key.as_bytes())
    }

    #[test]
    fn every_shard_has_its_own_stream_producers_and_dead_letters() {
        let k = Keys::new("bl:", false).for_shard(2);
        assert_eq!(k.click_stream(), "bl:clicks.2");
        assert_eq!(k.click_producer("p1"), "bl:clickproducer.2:p1");
        assert_eq!(k.dead_letters(), "bl:clicks.2:dead");
        let c = Keys::new("bl:", true).for_shard(2);
        assert_eq!(c.click_stream(), "bl:{clicks.2}");
        assert_eq!(slot(&c.click_producer("p1")), slot(&c.click_stream()));
        assert_eq!(slot(&c.dead_letters()), slot(&c.click_stream()));
        // Shards spread over the slots (of a cluster's masters, as far as hashing goes).
        let slots: std::collections::HashSet<u16> = (0..8)
            .map(|i| slot(&Keys::new("bl:", true).for_shard(i).click_stream()))
            .collect();
        assert_eq!(slots.len(), 8);
        // Shard 0 keeps the names of the one stream before there were shards.
        assert_eq!(
            Keys::new("bl:", true).for_shard(0).click_stream(),
            "bl:{clicks}"
        );
    }

    #[test]
    fn standalone_names_are_unchanged() {
        let k = Keys::new("bl:", false);
        assert_eq!(k.click_stream(), "bl:clicks");
        assert_eq!(k.click_producer("p1"), "bl:clickproducer:p1");
        assert_eq!(k.dead_letters(), "bl:clicks:dead");
        assert_eq!(
            k.rate_window("redirect", "1.2.3.4", 7),
            "bl:rl:redirect:1.2.3.4:7"
        );
    }

    #[test]
    fn on_a_cluster_keys_used_together_share_a_slot() {
        let k = Keys::new("bl:", true);
        let stream = slot(&k.click_stream());
        assert_eq!(slot(&k.click_producer("p1")), stream);
        assert_eq!(slot(&k.dead_letters()), stream);
        let w = |name: &str, subject: &str, i| slot(&k.rate_window(name, subject, i));
        assert_eq!(w("linkcap", "a", 7), w("linkcap", "a", 6));
        // Different counters spread over the slots.
        let spread: std::collections::HashSet<u16> = (0..50)
            .map(|i| w("redirect", &format!("10.0.0.{i}"), 7))
            .collect();
        assert!(spread.len() > 40, "{spread:?}");
        // A subject with its own tag keeps it: every key of a password attempt in one slot.
        let link = "{0b4f}";
        let client = format!("{link}:1.2.3.4");
        assert_eq!(
            slot(&k.rate_window("verifyfail", &client, 7)),
            slot(&k.rate_window("verifyfail", link, 6))
        );
        assert_eq!(
            slot(&k.attempt_lock(&format!("verify:{client}"))),
            slot(&k.rate_window("verifyfail", link, 7))
        );
    }
}
