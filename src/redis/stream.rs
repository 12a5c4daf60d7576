//! The consuming side of the click stream: consumer groups, reads, acknowledgements, lag,
//! dead letters, and trimming below what every group has passed.

use std::time::Duration;

use ::redis::streams::StreamInfoGroupsReply;

use super::{Error, RedisHandle};
use crate::clicks::consumer::GROUPS;
use crate::clicks::offset::{GroupLag, StreamEntry, StreamId};
use crate::clicks::ports::{ClickLog, LogError};

/// Shards a stream may have (`CLICK_STREAM_SHARDS`); the consumers look this far for shards
/// left over from a larger setting.
pub const MAX_SHARDS: u16 = 64;

/// With several shards, how long a consumer waits after a read found its shard empty (a
/// read with several shards does not block in Redis: see `read_group`).
const SHARD_IDLE_WAIT: Duration = Duration::from_millis(50);

impl ClickLog for RedisHandle {
    async fn connect_now(&self) -> bool {
        RedisHandle::connect_now(self).await
    }

    fn shard(&self) -> u16 {
        RedisHandle::shard(self)
    }

    fn for_shard(&self, shard: u16) -> Self {
        RedisHandle::for_shard(self, shard)
    }

    async fn shards_in_use(&self) -> Option<Vec<u16>> {
        let configured = self.click_stream_shards();
        let mut shards: Vec<u16> = (0..configured).collect();
        for shard in configured..MAX_SHARDS {
            let cmd = ::redis::cmd("XLEN")
                .arg(self.for_shard(shard).keys().click_stream())
                .clone();
            if self.query_cmd::<u64>(&cmd).await? > 0 {
                shards.push(shard);
            }
        }
        Some(shards)
    }

    /// Creates the consumer groups (from id 0, creating the stream if needed); existing
    /// groups are left alone.
    async fn ensure_groups(&self) -> Result<(), LogError> {
        for group in GROUPS {
            let cmd = ::redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(self.keys().click_stream())
                .arg(group)
                .arg("0")
                .arg("MKSTREAM")
                .clone();
            let mut pipe = ::redis::pipe();
            pipe.add_command(cmd);
            match self.try_pipe::<(String,)>(&pipe).await {
                Ok(_) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reads up to `count` entries for `consumer` of `group`: its own unacknowledged entries
    /// when `pending` (after a restart), else new ones, waiting up to `block` for them.
    async fn read_group(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
        pending: bool,
    ) -> Result<Vec<StreamEntry>, LogError> {
        let mut cmd = ::redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count);
        // One connection carries every shard's reads: a read blocking in Redis would hold up
        // the other shards' reads and acknowledgements behind it. With several shards an empty
        // read waits here instead, a little, without holding the connection.
        let wait_here = self.click_stream_shards() > 1 || self.shard() > 0;
        if !pending && !wait_here {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        cmd.arg("STREAMS")
            .arg(self.keys().click_stream())
            .arg(if pending { "0" } else { ">" });
        let mut pipe = ::redis::pipe();
        pipe.add_command(cmd);
        let (reply,): (::redis::Value,) = self.try_pipe(&pipe).await?;
        let entries = stream_entries(reply)?;
        if entries.is_empty() && !pending && wait_here {
            tokio::time::sleep(block.min(SHARD_IDLE_WAIT)).await;
        }
        Ok(entries)
    }

    /// Moves every pending entry of `group` (whichever consumer it was delivered to) to
    /// `consumer`: there is one consumer per group, and a crashed one may have used another
    /// name. Without this such entries would never be processed nor trimmed.
    async fn claim_all_pending(&self, group: &str, consumer: &str) -> Result<(), LogError> {
        let mut cursor = "0-0".to_string();
        loop {
            let mut pipe = ::redis::pipe();
            pipe.cmd("XAUTOCLAIM")
                .arg(self.keys().click_stream())
                .arg(group)
                .arg(consumer)
                .arg(0)
                .arg(&cursor)
                .arg("COUNT")
                .arg(1000)
                .arg("JUSTID");
            let (reply,): (::redis::Value,) = self.try_pipe(&pipe).await?;
            let next = match reply {
                ::redis::Value::Array(items) => items
                    .first()
                    .and_then(|v| ::redis::from_redis_value::<String>(v).ok())
                    .unwrap_or_else(|| "0-0".to_string()),
                _ => "0-0".to_string(),
            };
            if next == "0-0" {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// `XAUTOCLAIM` from the start of the pending list: entries idle for `min_idle` and more.
    async fn claim_idle(
        &self,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<StreamEntry>, LogError> {
        let mut pipe = ::redis::pipe();
        pipe.cmd("XAUTOCLAIM")
            .arg(self.keys().click_stream())
            .arg(group)
            .arg(consumer)
            .arg(min_idle.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(count.max(1));
        let (reply,): (::redis::Value,) = self.try_pipe(&pipe).await?;
        // [next cursor, [[id, fields], ...], [ids of entries deleted meanwhile]]
        let claimed = match reply {
            ::redis::Value::Array(parts) => parts.into_iter().nth(1),
            _ => None,
        };
        match claimed {
            // Shaped like one stream of an XREADGROUP reply.
            Some(entries) => Ok(stream_entries(::redis::Value::Array(vec![
                ::redis::Value::Array(vec![::redis::Value::Nil, entries]),
            ]))?),
            None => Ok(Vec::new()),
        }
    }

    /// Acknowledges entries for `group`.
    async fn ack(&self, group: &str, ids: &[StreamId]) -> Result<(), LogError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut cmd = ::redis::cmd("XACK");
        cmd.arg(self.keys().click_stream()).arg(group);
        for id in ids {
            cmd.arg(id.to_string());
        }
        let mut pipe = ::redis::pipe();
        pipe.add_command(cmd).ignore();
        Ok(self.try_pipe::<()>(&pipe).await?)
    }

    /// Keeps an entry that is not a valid event, with the reason, in the dead-letter stream.
    async fn dead_letter(&self, entry: &StreamEntry, reason: &str) -> Result<(), LogError> {
        let mut cmd = ::redis::cmd("XADD");
        cmd.arg(self.keys().dead_letters())
            .arg("*")
            .arg("stream_id")
            .arg(entry.id.to_string());
        cmd.arg("reason").arg(reason);
        for (k, v) in &entry.fields {
            cmd.arg(format!("field.{k}")).arg(v);
        }
        let mut pipe = ::redis::pipe();
        pipe.add_command(cmd).ignore();
        Ok(self.try_pipe::<()>(&pipe).await?)
    }

    /// Keeps one unreadable click of a packed entry (its raw record), with the reason, in
    /// the dead-letter stream; the entry's other clicks go on.
    async fn dead_letter_record(
        &self,
        stream_id: StreamId,
        reason: &str,
        record: &str,
    ) -> Result<(), LogError> {
        let mut cmd = ::redis::cmd("XADD");
        cmd.arg(self.keys().dead_letters())
            .arg("*")
            .arg("stream_id")
            .arg(stream_id.to_string())
            .arg("reason")
            .arg(reason)
            .arg("record")
            .arg(record);
        let mut pipe = ::redis::pipe();
        pipe.add_command(cmd).ignore();
        Ok(self.try_pipe::<()>(&pipe).await?)
    }

    /// Extended `XPENDING` form, typed parse: a mistake here would let the trimmer delete
    /// entries a consumer still has to finish.
    async fn oldest_pending(&self, group: &str) -> Result<Option<StreamId>, LogError> {
        let mut pipe = ::redis::pipe();
        pipe.cmd("XPENDING")
            .arg(self.keys().click_stream())
            .arg(group)
            .arg("-")
            .arg("+")
            .arg(1);
        let (reply,): (Vec<(String, String, u64, u64)>,) = self.try_pipe(&pipe).await?;
        Ok(reply
            .first()
            .map(|(id, _, _, _)| id.parse().map_err(Error::BadReply))
            .transpose()?)
    }

    /// How far `group` is behind.
    async fn group_lag(&self, group: &str) -> Result<GroupLag, LogError> {
        let groups = self.groups().await?;
        let Some(info) = groups.groups.into_iter().find(|g| g.name == group) else {
            return Ok(GroupLag::default());
        };
        let pending = info.pending as u64;
        let undelivered = match info.lag {
            Some(lag) => lag as u64,
            // Redis could not compute it (after a trim of unread entries): count them.
            None => {
                let last: StreamId = info.last_delivered_id.parse().unwrap_or_default();
                let mut pipe = ::redis::pipe();
                pipe.cmd("XRANGE")
                    .arg(self.keys().click_stream())
                    .arg(format!("({last}"))
                    .arg("+");
                let (r,): (::redis::streams::StreamRangeReply,) = self.try_pipe(&pipe).await?;
                r.ids.len() as u64
            }
        };
        let oldest = match self.oldest_pending(group).await? {
            Some(id) => Some(id),
            None => {
                self.first_after(info.last_delivered_id.parse().unwrap_or_default())
                    .await?
            }
        };
        Ok(GroupLag {
            events: undelivered + pending,
            pending,
            oldest_ms: oldest.map(|id| id.ms),
        })
    }

    /// Trims the stream below the oldest entry any group still needs: for each group its
    /// oldest pending entry, or (nothing pending) the entry after its last delivered one.
    /// Never by length. Returns how many entries were removed.
    async fn trim_consumed(&self) -> Result<u64, LogError> {
        let groups = self.groups().await?;
        if GROUPS
            .iter()
            .any(|g| !groups.groups.iter().any(|i| i.name == *g))
        {
            return Ok(0);
        }
        let mut bound: Option<StreamId> = None;
        for info in &groups.groups {
            let last: StreamId = info.last_delivered_id.parse().unwrap_or_default();
            let needed = match self.oldest_pending(&info.name).await? {
                Some(id) => id,
                None => StreamId {
                    ms: last.ms,
                    seq: last.seq + 1,
                },
            };
            bound = Some(bound.map_or(needed, |b| b.min(needed)));
        }
        let Some(bound) = bound else { return Ok(0) };
        let mut pipe = ::redis::pipe();
        pipe.cmd("XTRIM")
            .arg(self.keys().click_stream())
            .arg("MINID")
            .arg(bound.to_string());
        let (removed,): (u64,) = self.try_pipe(&pipe).await?;
        Ok(removed)
    }

    /// Publishes a background process's heartbeat hash (expires after a minute).
    async fn publish_process_heartbeat(
        &self,
        process: &str,
        fields: &[(&str, String)],
    ) -> Result<(), LogError> {
        Ok(self.set_process_heartbeat(process, fields).await?)
    }
}

impl RedisHandle {
    /// Number of entries in the click stream (`XLEN`, summed over its shards), `None` if
    /// Redis is down.
    pub async fn click_stream_len(&self) -> Option<u64> {
        let mut total = 0;
        for shard in 0..self.click_stream_shards() {
            let cmd = ::redis::cmd("XLEN")
                .arg(self.for_shard(shard).keys().click_stream())
                .clone();
            total += self.query_cmd::<u64>(&cmd).await?;
        }
        Some(total)
    }

    async fn groups(&self) -> Result<StreamInfoGroupsReply, Error> {
        let mut pipe = ::redis::pipe();
        pipe.cmd("XINFO")
            .arg("GROUPS")
            .arg(self.keys().click_stream());
        let (reply,): (StreamInfoGroupsReply,) = self.try_pipe(&pipe).await?;
        Ok(reply)
    }

    /// The first entry after `after`, if any.
    async fn first_after(&self, after: StreamId) -> Result<Option<StreamId>, Error> {
        let mut pipe = ::redis::pipe();
        pipe.cmd("XRANGE")
            .arg(self.keys().click_stream())
            .arg(format!("({after}"))
            .arg("+")
            .arg("COUNT")
            .arg(1);
        let (reply,): (::redis::streams::StreamRangeReply,) = self.try_pipe(&pipe).await?;
        reply
            .ids
            .first()
            .map(|e| e.id.parse().map_err(Error::BadReply))
            .transpose()
    }
}

/// The entries of an `XREADGROUP`/`XRANGE`-style reply, taken apart in place: the reply's
/// strings become the fields without another copy (this runs for every click, twice).
/// `Nil` (nothing read) is no entries; an entry whose fields are `Nil` (deleted from the
/// stream while pending) gets no fields and is dead-lettered by the caller as invalid.
fn stream_entries(reply: ::redis::Value) -> Result<Vec<StreamEntry>, Error> {
    use ::redis::Value;
    fn text(v: Value) -> Result<String, Error> {
        match v {
            Value::BulkString(bytes) => String::from_utf8(bytes)
                .or_else(|e| Ok(String::from_utf8_lossy(e.as_bytes()).into_owned())),
            Value::SimpleString(s) => Ok(s),
            Value::Int(i) => Ok(i.to_string()),
            other => Err(Error::BadReply(format!(
                "unexpected value in a stream reply: {other:?}"
            ))),
        }
    }
    fn entries_of(v: Value, out: &mut Vec<StreamEntry>) -> Result<(), Error> {
        let Value::Array(list) = v else {
            return Err(Error::BadReply(format!(
                "unexpected entry list in a stream reply: {v:?}"
            )));
        };
        out.reserve(list.len());
        for entry in list {
            let Value::Array(pair) = entry else {
                return Err(Error::BadReply(format!(
                    "unexpected entry in a stream reply: {entry:?}"
                )));
            };
            let mut pair = pair.into_iter();
            let (Some(id), flat) = (pair.next(), pair.next()) else {
                return Err(Error::BadReply("a stream entry without an id".to_string()));
            };
            let id: StreamId = text(id)?.parse().map_err(Error::BadReply)?;
            let mut fields = Vec::new();
            if let Some(Value::Array(flat)) = flat {
                fields.reserve(flat.len() / 2);
                let mut flat = flat.into_iter();
                while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
                    fields.push((text(k)?, text(v)?));
                }
            }
            out.push(StreamEntry { id, fields });
        }
        Ok(())
    }
    let mut out = Vec::new();
    match reply {
        Value::Nil => {}
        // RESP2: [[stream, entries], ...]
        Value::Array(streams) => {
            for stream in streams {
                let Value::Array(kv) = stream else {
                    return Err(Error::BadReply(format!(
                        "unexpected stream in a reply: {stream:?}"
                    )));
                };
                if let Some(entries) = kv.into_iter().nth(1) {
                    entries_of(entries, &mut out)?;
                }
            }
        }
        // RESP3: {stream: entries, ...}
        Value::Map(streams) => {
            for (_, entries) in streams {
                entries_of(entries, &mut out)?;
            }
        }
        other => {
            return Err(Error::BadReply(format!(
                "unexpected XREADGROUP reply: {other:?}"
            )))
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_replies_become_entries_in_order_and_odd_shapes_are_errors() {
        use ::redis::Value;
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("clicks"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("5-1"),
                    Value::Array(vec![bulk("v"), bulk("1"), bulk("ua"), bulk("curl/8")]),
                ]),
                // Deleted while pending: no fields.
                Value::Array(vec![bulk("6-0"), Value::Nil]),
            ]),
        ])]);
        let entries = stream_entries(reply).expect("entries");
        assert_eq!(
            entries,
            vec![
                StreamEntry {
                    id: StreamId { ms: 5, seq: 1 },
                    fields: vec![("v".into(), "1".into()), ("ua".into(), "curl/8".into())],
                },
                StreamEntry {
                    id: StreamId { ms: 6, seq: 0 },
                    fields: vec![],
                },
            ]
        );
        assert_eq!(stream_entries(Value::Nil).expect("no entries"), vec![]);
        assert!(matches!(
            stream_entries(Value::Int(3)),
            Err(Error::BadReply(m)) if m == "unexpected XREADGROUP reply: int(3)"
        ));
        let bad_id = Value::Array(vec![Value::Array(vec![
            bulk("clicks"),
            Value::Array(vec![Value::Array(vec![bulk("nope"), Value::Nil])]),
        ])]);
        assert!(matches!(
            stream_entries(bad_id),
            Err(Error::BadReply(m)) if m.contains("is not a stream id")
        ));
    }
}
