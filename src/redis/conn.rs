//! One connection type for both deployments of Redis: a standalone server (one `REDIS_URL`)
//! or a Redis Cluster (several, comma-separated: its seed nodes).
//!
//! A cluster routes each command to the master of its key's slot, and the `redis` crate sends
//! a pipeline to one node only: every key of one pipeline must hash to the same slot. Our
//! pipelines mix keys freely (a heartbeat writes three keys, a click flush appends to the
//! stream and bumps rate counters), so [`Conn`] takes that part over: a pipeline whose keys
//! share a slot goes out as one, as on a standalone server; one that does not is sent command
//! by command, in order, each to its own slot's node. In order, not all at once: an
//! invalidation deletes a cached link and then publishes its code, and a subscriber that heard
//! of it must not find the old entry still there. Commands that touch several keys at once
//! (Lua scripts, `MGET` aside, which the crate splits itself) must name keys of one slot:
//! [`super::keys::Keys`] gives those a shared hash tag in cluster mode.

use ::redis::aio::{ConnectionLike, ConnectionManager};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, ErrorKind, Pipeline, RedisFuture, Value};

/// Cloned for every call (both variants are handles to shared state): boxing the larger one
/// would add an allocation to each Redis call for the sake of a smaller copy.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => Box::pin(cluster_pipeline(c, pipeline, offset, count)),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// A pipeline on a cluster: as one when its keys share a slot, else command by command.
async fn cluster_pipeline(
    conn: &mut ClusterConnection,
    pipeline: &Pipeline,
    offset: usize,
    count: usize,
) -> ::redis::RedisResult<Vec<Value>> {
    let mut commands = pipeline.cmd_iter();
    // One command: sent as a command, so that the crate's own routing applies in full (MGET
    // over several slots is split and merged there, never inside a pipeline).
    if let (Some(only), None, 0, 1) = (commands.next(), commands.next(), offset, count) {
        return conn.req_packed_command(only).await.map(|v| vec![v]);
    }
    match conn.req_packed_commands(pipeline, offset, count).await {
        // The crate refuses a pipeline over several slots before sending anything.
        Err(e) if e.kind() == ErrorKind::CrossSlot && offset == 0 => {
            let mut replies = Vec::with_capacity(count);
            for cmd in pipeline.cmd_iter() {
                replies.push(conn.req_packed_command(cmd).await?);
            }
            Ok(replies)
        }
        other => other,
    }
}
