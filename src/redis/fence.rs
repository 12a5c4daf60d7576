//! Read-your-writes with a read replica: after an API key changes something, the time of the
//! change is kept in Redis (`{prefix}readfence:{key}`) for as long as a usable replica can be
//! behind, and that key's list and analytics reads stay on the primary until the replica has
//! replayed past it ([`crate::store::replica::Replica::may_serve`]). Every instance sees the
//! fence, whichever one took the write.

use std::time::Duration;

use uuid::Uuid;

use super::RedisHandle;

impl RedisHandle {
    /// Records that `key_id` wrote at `written_ms` (wall clock). `false` when Redis did not
    /// take it: the caller then has no fence, and its next reads may miss this write.
    pub async fn set_read_fence(&self, key_id: &Uuid, written_ms: i64, keep: Duration) -> bool {
        let cmd = ::redis::cmd("SET")
            .arg(self.keys().read_fence(key_id))
            .arg(written_ms)
            .arg("PX")
            .arg(keep.as_millis().max(1) as u64)
            .to_owned();
        self.query_cmd::<()>(&cmd).await.is_some()
    }

    /// When `key_id` last wrote, if recently: `Ok(None)` no fence, `Err(())` Redis did not
    /// answer (the caller cannot know, so it reads from the primary).
    pub async fn read_fence(&self, key_id: &Uuid) -> Result<Option<i64>, ()> {
        let cmd = ::redis::cmd("GET")
            .arg(self.keys().read_fence(key_id))
            .to_owned();
        self.query_cmd::<Option<i64>>(&cmd).await.ok_or(())
    }
}
