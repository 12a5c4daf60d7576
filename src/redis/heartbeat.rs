//! Heartbeats in Redis: every API instance registers in `{prefix}instances` and publishes a
//! heartbeat hash and its metrics snapshot; the worker and aggregator publish theirs. Status
//! views (`/api/status`, `boltlinkctl status`) and every `/metrics` scrape read them back.

use std::collections::HashMap;

use super::{Error, RedisHandle};

/// A heartbeat hash as stored (field -> value).
pub type Heartbeat = HashMap<String, String>;

/// What an API instance publishes about itself at every heartbeat.
#[derive(Debug, Clone, Copy)]
pub struct InstanceHeartbeat<'a> {
    pub instance: &'a str,
    pub started_at_ms: i64,
    pub last_seen_ms: i64,
    pub pid: u32,
    pub version: &'a str,
    pub requests: u64,
    /// Its metrics snapshot (JSON), merged by every `/metrics` scrape.
    pub metrics_json: &'a str,
    /// Heartbeat and snapshot expire after this long unless published again.
    pub ttl_ms: u64,
}

impl RedisHandle {
    /// Publishes an API instance's heartbeat and metrics snapshot and registers the instance,
    /// in one pipeline. Returns how many instances are registered (expired members included
    /// until [`RedisHandle::instance_heartbeats`] prunes them), `None` if Redis is unreachable.
    pub async fn publish_instance_heartbeat(&self, beat: &InstanceHeartbeat<'_>) -> Option<u32> {
        let keys = self.keys();
        let mut pipe = ::redis::pipe();
        pipe.cmd("HSET")
            .arg(keys.instance(beat.instance))
            .arg("started_at")
            .arg(beat.started_at_ms)
            .arg("last_seen")
            .arg(beat.last_seen_ms)
            .arg("pid")
            .arg(beat.pid)
            .arg("version")
            .arg(beat.version)
            .arg("requests")
            .arg(beat.requests)
            .ignore();
        pipe.cmd("PEXPIRE")
            .arg(keys.instance(beat.instance))
            .arg(beat.ttl_ms)
            .ignore();
        pipe.cmd("SADD")
            .arg(keys.instances())
            .arg(beat.instance)
            .ignore();
        pipe.cmd("SET")
            .arg(keys.instance_metrics(beat.instance))
            .arg(beat.metrics_json)
            .arg("PX")
            .arg(beat.ttl_ms)
            .ignore();
        pipe.cmd("SCARD").arg(keys.instances());
        self.query_pipe::<(u32,)>(&pipe)
            .await
            .map(|(instances,)| instances)
    }

    /// Removes an API instance's heartbeat, snapshot and registration (on a clean stop, so
    /// status views do not show it).
    pub async fn retract_instance_heartbeat(&self, instance: &str) {
        let keys = self.keys();
        let mut pipe = ::redis::pipe();
        pipe.cmd("DEL").arg(keys.instance(instance)).ignore();
        pipe.cmd("DEL")
            .arg(keys.instance_metrics(instance))
            .ignore();
        pipe.cmd("SREM")
            .arg(keys.instances())
            .arg(instance)
            .ignore();
        let _: Option<()> = self.query_pipe(&pipe).await;
    }

    /// Publishes a background process's heartbeat hash (expires after a minute).
    pub async fn set_process_heartbeat(
        &self,
        process: &str,
        fields: &[(&str, String)],
    ) -> Result<(), Error> {
        let key = self.keys().process_heartbeat(process);
        let mut pipe = ::redis::pipe();
        let mut hset = ::redis::cmd("HSET");
        hset.arg(&key);
        for (k, v) in fields {
            hset.arg(*k).arg(v);
        }
        pipe.add_command(hset).ignore();
        pipe.cmd("PEXPIRE").arg(&key).arg(60_000).ignore();
        self.try_pipe::<()>(&pipe).await
    }

    /// Every registered API instance with its heartbeat (`None` once expired). Expired
    /// members are removed from the registry after being reported once.
    pub async fn instance_heartbeats(&self) -> Option<Vec<(String, Option<Heartbeat>)>> {
        let cmd = ::redis::cmd("SMEMBERS")
            .arg(self.keys().instances())
            .clone();
        let mut names: Vec<String> = self.query_cmd(&cmd).await?;
        names.sort();
        let mut pipe = ::redis::pipe();
        for name in &names {
            pipe.cmd("HGETALL").arg(self.keys().instance(name));
        }
        let beats: Vec<Heartbeat> = if names.is_empty() {
            Vec::new()
        } else {
            self.query_pipe(&pipe).await?
        };
        let mut out = Vec::new();
        let mut expired = Vec::new();
        for (name, beat) in names.into_iter().zip(beats) {
            if beat.is_empty() {
                expired.push(name.clone());
                out.push((name, None));
            } else {
                out.push((name, Some(beat)));
            }
        }
        if !expired.is_empty() {
            let cmd = ::redis::cmd("SREM")
                .arg(self.keys().instances())
                .arg(&expired)
                .clone();
            let _: Option<u64> = self.query_cmd(&cmd).await;
        }
        Some(out)
    }

    /// The heartbeat of a background process, `Some(None)` if it has none.
    pub async fn process_heartbeat(&self, process: &str) -> Option<Option<Heartbeat>> {
        let cmd = ::redis::cmd("HGETALL")
            .arg(self.keys().process_heartbeat(process))
            .clone();
        let h: Heartbeat = self.query_cmd(&cmd).await?;
        Some(if h.is_empty() { None } else { Some(h) })
    }

    /// Metrics snapshots (JSON) published by the given instances; expired ones are absent.
    pub async fn metrics_snapshots(&self, instances: &[String]) -> Option<Vec<String>> {
        if instances.is_empty() {
            return Some(Vec::new());
        }
        let keys: Vec<String> = instances
            .iter()
            .map(|i| self.keys().instance_metrics(i))
            .collect();
        let cmd = ::redis::cmd("MGET").arg(keys).clone();
        let values: Vec<Option<String>> = self.query_cmd(&cmd).await?;
        Some(values.into_iter().flatten().collect())
    }
}
