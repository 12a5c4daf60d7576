//! Fair shares of the one listening socket: an instance holding clearly more than its share
//! of the suite's open connections stops accepting for a moment, so the others take the new
//! ones.
//!
//! Every API instance accepts from the same inherited socket. The kernel gives a new
//! connection to whichever process calls `accept` first, which is the one already awake and
//! busy: keep-alive clients that connect in a burst (a load balancer's pool, a benchmark)
//! used to land two to one on one instance (max/min 1.6–2.1 at 256 connections, bench
//! "Performance II"), and keep-alive made that permanent.
//!
//! The instances publish their open connections in a small table, a file under the units'
//! shared runtime directory (`RUNTIME_DIRECTORY`, `/run/boltlink-api`; `boltlinkctl run` makes
//! one per run): slot N holds instance `api-N`'s count, pid and the time it last wrote. Before
//! arming `accept`, the loop writes its own slot and reads the table (two system calls, once
//! per accepted connection and every [`RECHECK`] while holding back). It holds back while it
//! holds more than [`TOLERANCE`] × the fair share + [`SLACK`], but never longer than
//! [`MAX_HOLD`] at a time: a peer that cannot accept (stuck, at its cap) must not leave a
//! client waiting. Slots not written for [`STALE`] are instances that are gone. Without the
//! directory, or with one live instance, nothing changes.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

/// Slots in the table: instance numbers 1..=256 (`API_INSTANCES` allows up to 256).
const SLOTS: usize = 257;
/// Bytes per slot: count (u32), pid (u32), last write in Unix ms (u64), little-endian.
const SLOT_BYTES: usize = 16;
/// Held-back instances look again this often.
pub const RECHECK: Duration = Duration::from_millis(2);
/// The longest an instance holds back before it accepts anyway.
pub const MAX_HOLD: Duration = Duration::from_millis(20);
/// A slot not written for this long belongs to an instance that is gone.
pub const STALE: Duration = Duration::from_secs(3);
/// How far above the fair share an instance may be before it holds back: 10 %... (with
/// two instances the other is then at most 10 % below: max/min stays under 1.25 + slack)
pub const TOLERANCE: f64 = 1.1;
/// ...plus this many connections, so small numbers do not flap.
pub const SLACK: f64 = 2.0;

/// One instance's view of the shared table.
pub struct ShareTable {
    file: File,
    slot: usize,
    pid: u32,
}

impl ShareTable {
    /// Opens (creating) the table in `dir` for instance `instance` (`api-N`); `None` when
    /// the name has no slot or the file cannot be used (then the instance accepts as it
    /// always did; the reason is logged once).
    pub fn open(dir: &Path, instance: &str) -> Option<Self> {
        let slot = slot_of(instance)?;
        let path = dir.join("connections");
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
            Ok(file) => Some(Self {
                file,
                slot,
                pid: std::process::id(),
            }),
            Err(e) => {
                tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "cannot open the connection share table; accepting without balancing"
                );
                None
            }
        }
    }

    /// Writes this instance's open connections (and that it is alive at `now_ms`).
    pub fn publish(&self, open: usize, now_ms: u64) {
        let mut slot = [0u8; SLOT_BYTES];
        slot[0..4].copy_from_slice(&(open.min(u32::MAX as usize) as u32).to_le_bytes());
        slot[4..8].copy_from_slice(&self.pid.to_le_bytes());
        slot[8..16].copy_from_slice(&now_ms.to_le_bytes());
        let _ = self.file.write_at(&slot, (self.slot * SLOT_BYTES) as u64);
    }

    /// Marks the slot empty (on shutdown), so peers stop counting this instance at once.
    pub fn leave(&self) {
        let _ = self
            .file
            .write_at(&[0u8; SLOT_BYTES], (self.slot * SLOT_BYTES) as u64);
    }

    /// Publishes `open` and answers whether this instance holds more than its share.
    pub fn over_share(&self, open: usize, now_ms: u64) -> bool {
        self.publish(open, now_ms);
        // On the stack: this runs once per accepted connection.
        let mut table = [0u8; SLOTS * SLOT_BYTES];
        let Ok(n) = self.file.read_at(&mut table, 0) else {
            return false;
        };
        let counts = table[..n - n % SLOT_BYTES]
            .chunks_exact(SLOT_BYTES)
            .enumerate()
            .filter(|(i, _)| *i != self.slot)
            .filter_map(|(_, s)| {
                let written = u64::from_le_bytes(s[8..16].try_into().ok()?);
                let fresh =
                    written != 0 && now_ms.saturating_sub(written) < STALE.as_millis() as u64;
                fresh.then(|| u32::from_le_bytes(s[0..4].try_into().unwrap_or_default()) as usize)
            });
        is_over_share(open, counts)
    }
}

/// The slot of instance `api-N` (also `api@N`): N, from 1 to 256.
fn slot_of(instance: &str) -> Option<usize> {
    let n: usize = instance
        .strip_prefix("api-")
        .or_else(|| instance.strip_prefix("api@"))?
        .parse()
        .ok()?;
    (1..SLOTS).contains(&n).then_some(n)
}

/// Whether `mine` open connections are clearly more than a fair share, given the live
/// peers' counts.
pub fn is_over_share(mine: usize, peers: impl IntoIterator<Item = usize>) -> bool {
    let (n, total) = peers
        .into_iter()
        .fold((1usize, mine), |(n, t), c| (n + 1, t + c));
    if n < 2 {
        return false;
    }
    let fair = total as f64 / n as f64;
    mine as f64 > fair * TOLERANCE + SLACK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_holds_back_only_when_clearly_over_its_share() {
        assert!(!is_over_share(500, []), "alone: never");
        assert!(!is_over_share(3, [0]), "small numbers do not flap");
        assert!(is_over_share(6, [0]));
        assert!(!is_over_share(135, [121]), "128 each, within 10 %");
        assert!(is_over_share(150, [106]));
        assert!(
            !is_over_share(86, [170]),
            "the one under its share keeps accepting"
        );
        assert!(is_over_share(100, [40, 40, 40]));
        assert!(!is_over_share(48, [40, 40, 40]));
    }

    #[test]
    fn instance_names_map_to_slots() {
        assert_eq!(slot_of("api-1"), Some(1));
        assert_eq!(slot_of("api@256"), Some(256));
        for bad in ["api-0", "api-257", "worker", "api-", "api-x", "pid42"] {
            assert_eq!(slot_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn instances_see_each_other_through_the_table_and_forget_the_gone() {
        let dir = std::env::temp_dir().join(format!("bl-share-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let a = ShareTable::open(&dir, "api-1").expect("a");
        let b = ShareTable::open(&dir, "api-2").expect("b");
        let now = 1_700_000_000_000;
        assert!(!a.over_share(10, now), "b has not written: a is alone");
        b.publish(2, now);
        assert!(a.over_share(10, now), "10 against 2");
        assert!(!b.over_share(2, now));
        assert!(
            !a.over_share(10, now + STALE.as_millis() as u64),
            "b's slot went stale: a is alone again"
        );
        b.publish(2, now);
        b.leave();
        assert!(!a.over_share(10, now), "b left");
        assert!(ShareTable::open(&dir, "worker").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
