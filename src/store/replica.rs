//! The optional read replica (`DATABASE_READ_URL`): a PostgreSQL hot standby streaming from
//! the primary, which link lists and analytics may read from.
//!
//! Whether it may is decided by [`Replica::watch`], twice a second, from WAL positions rather
//! than clocks: it samples the primary's `pg_current_wal_lsn()` and remembers when; the
//! replica's `pg_last_wal_replay_lsn()` then says which of those samples it has replayed. The
//! newest replayed sample's time is how far the replica is caught up ([`Replica::caught_up_ms`]);
//! its age is the lag. An idle primary (no new WAL) thus shows no lag, however long ago its
//! last commit was, and a standby whose WAL receiver lost the primary shows a growing one.
//!
//! Read-your-writes on top of that is the caller's part (see `AppState::read_for`): a key
//! that wrote at time T reads from the replica only once it is caught up to T.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::metrics;

/// Clocks of the hosts in a fleet may differ by this much: a write stamped by one host's clock
/// counts as replayed only once the replica is caught up this much past it.
pub const CLOCK_SKEW_MS: i64 = 250;
/// How often the replica's position is checked: also the resolution of the lag it reports.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// One check's queries may take this long before the server counts as not answering.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// Samples older than the allowed lag plus this are dropped: a replica behind all of them is
/// lagging whatever it has replayed.
const HISTORY_MARGIN: Duration = Duration::from_secs(5);

/// The replica as the last check found it.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplicaState {
    /// Not checked yet (the process just started).
    Unknown,
    /// Reachable, replaying, and at most the allowed lag behind.
    Usable,
    /// Reachable but further behind than the allowed lag.
    Lagging,
    /// Unreachable, or not a standby; says why.
    Down(String),
}

impl ReplicaState {
    /// The one word `/health` and `boltlinkctl status` show.
    pub fn word(&self) -> &'static str {
        match self {
            ReplicaState::Unknown => "unknown",
            ReplicaState::Usable => "ok",
            ReplicaState::Lagging => "lagging",
            ReplicaState::Down(_) => "failing",
        }
    }
}

/// A snapshot for health views and heartbeats.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaHealth {
    pub state: ReplicaState,
    /// How far behind the primary, when known (a multiple of [`CHECK_INTERVAL`] at most).
    pub lag: Option<Duration>,
    pub max_lag: Duration,
}

impl ReplicaHealth {
    /// A sentence for `/health`'s errors and `/api/system/health`'s detail; `None` when usable.
    pub fn problem(&self) -> Option<String> {
        match &self.state {
            ReplicaState::Usable => None,
            ReplicaState::Unknown => Some("not checked yet: reads go to the primary".into()),
            ReplicaState::Lagging => Some(format!(
                "{} behind the primary (DATABASE_READ_MAX_LAG_MS={}): reads go to the primary",
                self.lag.map_or_else(
                    || "an unknown time".to_string(),
                    |l| format!("{:.1} s", l.as_secs_f64())
                ),
                self.max_lag.as_millis()
            )),
            ReplicaState::Down(why) => Some(format!("{why}: reads go to the primary")),
        }
    }
}

pub struct Replica {
    pool: PgPool,
    max_lag: Duration,
    usable: AtomicBool,
    /// Wall-clock milliseconds of the newest primary position the replica has replayed: every
    /// transaction committed before then is visible on it. 0 while unknown.
    caught_up_ms: AtomicI64,
    health: Mutex<ReplicaHealth>,
    /// Routed reads since start: served by the replica, and sent to the primary instead.
    reads_served: AtomicU64,
    reads_passed: AtomicU64,
}

/// A primary WAL position and when it was read (taken before the query was sent, so the
/// position includes every commit that finished before `wall_ms`).
#[derive(Debug, Clone, Copy)]
struct Position {
    at: Instant,
    wall_ms: i64,
    lsn: i64,
}

impl Replica {
    /// A lazily connecting pool: the replica being down at start is a state, not an error.
    pub fn connect_lazy(url: &str, pool_size: u32, max_lag: Duration) -> anyhow::Result<Self> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .min_connections(0)
            // Short: a replica that does not answer is skipped for the primary, not waited on.
            .acquire_timeout(Duration::from_secs(1))
            .idle_timeout(Duration::from_secs(300))
            .connect_lazy_with(options.application_name("boltlink-read"));
        Ok(Self {
            pool,
            max_lag,
            usable: AtomicBool::new(false),
            caught_up_ms: AtomicI64::new(0),
            health: Mutex::new(ReplicaHealth {
                state: ReplicaState::Unknown,
                lag: None,
                max_lag,
            }),
            reads_served: AtomicU64::new(0),
            reads_passed: AtomicU64::new(0),
        })
    }

    /// Counts a routed read: served by the replica, or run on the primary instead.
    pub fn count_read(&self, on_replica: bool) {
        let counter = if on_replica {
            &self.reads_served
        } else {
            &self.reads_passed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The replica's gauges and read counters for `/metrics`.
    pub fn samples(&self) -> Vec<metrics::Sample> {
        let health = self.health();
        let mut out = vec![
            metrics::Sample::new(
                "boltlink_database_reads_total",
                &[("server", "replica")],
                self.reads_served.load(Ordering::Relaxed) as f64,
            ),
            metrics::Sample::new(
                "boltlink_database_reads_total",
                &[("server", "primary")],
                self.reads_passed.load(Ordering::Relaxed) as f64,
            ),
            metrics::Sample::new(
                "boltlink_database_replica_usable",
                &[],
                if self.usable_now() { 1.0 } else { 0.0 },
            ),
        ];
        if let Some(lag) = health.lag {
            out.push(metrics::Sample::new(
                "boltlink_database_replica_lag_seconds",
                &[],
                lag.as_secs_f64(),
            ));
        }
        out
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether the last check found the replica usable.
    pub fn usable_now(&self) -> bool {
        self.usable.load(Ordering::Relaxed)
    }

    /// Whether reads may go to the replica now, for a caller whose last write finished at
    /// `written_ms` (wall clock, milliseconds), if it wrote recently.
    pub fn may_serve(&self, written_ms: Option<i64>) -> bool {
        self.usable.load(Ordering::Relaxed)
            && written_ms
                .is_none_or(|w| self.caught_up_ms.load(Ordering::Relaxed) >= w + CLOCK_SKEW_MS)
    }

    /// A replica read failed: stop sending reads to it until the next check finds it well.
    pub fn mark_failed(&self, error: &str) {
        if self.usable.swap(false, Ordering::Relaxed) {
            tracing::warn!(error, "read replica failed a read: reads go to the primary");
        }
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        health.state = ReplicaState::Down(format!("a read failed: {error}"));
    }

    pub fn health(&self) -> ReplicaHealth {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn max_lag(&self) -> Duration {
        self.max_lag
    }

    /// Checks the replica every [`CHECK_INTERVAL`] until `stop` resolves.
    pub async fn watch(&self, primary: PgPool, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut positions = VecDeque::new();
        loop {
            self.check(&primary, &mut positions).await;
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(CHECK_INTERVAL) => {}
            }
        }
    }

    async fn check(&self, primary: &PgPool, positions: &mut VecDeque<Position>) {
        // The replica first, then the primary: a replica that has replayed what the primary
        // wrote *after* being asked is caught up to that later moment.
        let asked_at = Instant::now();
        let replayed = replay_position(&self.pool).await;
        let at = Instant::now();
        let wall_ms = chrono::Utc::now().timestamp_millis();
        let primary_answered =
            match tokio::time::timeout(CHECK_TIMEOUT, wal_position(primary)).await {
                Ok(Ok(lsn)) => {
                    positions.push_back(Position { at, wall_ms, lsn });
                    true
                }
                _ => false,
            };
        let horizon = self.max_lag + HISTORY_MARGIN;
        while positions.len() > 1 && positions.front().is_some_and(|s| s.at.elapsed() > horizon) {
            positions.pop_front();
        }

        let replayed = replayed.map_err(|e| match e {
            ReplayError::Store(e) => crate::store::StoreError::from(e).to_string(),
            ReplayError::Silent => format!("no answer within {} s", CHECK_TIMEOUT.as_secs()),
        });
        let (state, lag, caught_up) = judge(
            replayed,
            positions,
            asked_at,
            primary_answered,
            self.max_lag,
        );
        self.caught_up_ms
            .store(caught_up.unwrap_or(0), Ordering::Relaxed);
        let usable = state == ReplicaState::Usable;
        let was_usable = self.usable.swap(usable, Ordering::Relaxed);
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let changed = std::mem::discriminant(&health.state) != std::mem::discriminant(&state);
        *health = ReplicaHealth {
            state,
            lag,
            max_lag: self.max_lag,
        };
        if changed || was_usable != usable {
            match health.problem() {
                None => tracing::info!("read replica usable: list and analytics reads go to it"),
                Some(problem) => tracing::warn!("read replica {problem}"),
            }
        }
    }
}

/// The replica's state, lag and caught-up time from what it has `replayed` (standby?, WAL
/// position; or why it did not say), asked at `asked_at`, against the primary's `samples`
/// (the newest taken right after, when `primary_answered`).
fn judge(
    replayed: Result<(bool, Option<i64>), String>,
    samples: &VecDeque<Position>,
    asked_at: Instant,
    primary_answered: bool,
    max_lag: Duration,
) -> (ReplicaState, Option<Duration>, Option<i64>) {
    let replayed = match replayed {
        Err(why) => return (ReplicaState::Down(why), None, None),
        Ok((false, _)) => {
            return (
                ReplicaState::Down("not a standby (pg_is_in_recovery() is false)".into()),
                None,
                None,
            )
        }
        Ok((true, None)) => {
            return (
                ReplicaState::Down("has replayed no WAL yet".into()),
                None,
                None,
            )
        }
        Ok((true, Some(replayed))) => replayed,
    };
    let Some(s) = samples.iter().rev().find(|s| s.lsn <= replayed) else {
        // Behind every sample kept, or no sample yet (the primary never answered).
        return (
            ReplicaState::Lagging,
            samples
                .front()
                .map(|s| asked_at.saturating_duration_since(s.at)),
            None,
        );
    };
    // While the primary does not answer it takes no writes either: a replica that has
    // replayed everything seen so far is as current as can be.
    let newest = samples.back().is_some_and(|n| n.lsn <= replayed);
    let lag = if !primary_answered && newest {
        Duration::ZERO
    } else {
        asked_at.saturating_duration_since(s.at)
    };
    let state = if lag <= max_lag {
        ReplicaState::Usable
    } else {
        ReplicaState::Lagging
    };
    (state, Some(lag), Some(s.wall_ms))
}

/// One look at the replica from outside a running API (`boltlinkctl status`): how far it is
/// behind the primary. Zero when it has replayed all the primary had written a moment before;
/// otherwise the age of its last replayed commit, which bounds the lag from above.
pub async fn probe(primary: &PgPool, replica: &PgPool) -> Result<Duration, String> {
    let written = tokio::time::timeout(CHECK_TIMEOUT * 3, wal_position(primary))
        .await
        .map_err(|_| "the primary did not answer within 3 s".to_string())?
        .map_err(|e| format!("the primary: {}", crate::store::StoreError::from(e)))?;
    let row = tokio::time::timeout(
        CHECK_TIMEOUT * 3,
        sqlx::query!(
            r#"SELECT pg_is_in_recovery() AS "standby!",
                      (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8 AS replayed,
                      extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS replay_age"#
        )
        .fetch_one(replica),
    )
    .await
    .map_err(|_| "no answer within 3 s".to_string())?
    .map_err(|e| crate::store::StoreError::from(e).to_string())?;
    if !row.standby {
        return Err("not a standby (pg_is_in_recovery() is false)".into());
    }
    match row.replayed {
        None => Err("has replayed no WAL yet".into()),
        Some(replayed) if replayed >= written => Ok(Duration::ZERO),
        Some(_) => Ok(Duration::from_secs_f64(
            row.replay_age.unwrap_or(f64::MAX).clamp(0.0, 1e9),
        )),
    }
}

/// The primary's current WAL write position, in bytes from 0/0.
async fn wal_position(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8 AS "lsn!""#)
        .fetch_one(pool)
        .await
}

enum ReplayError {
    Store(sqlx::Error),
    /// Connected, but the query had no answer within [`CHECK_TIMEOUT`].
    Silent,
}

/// Whether the server is a standby, and the WAL position it has replayed (none on a primary).
///
/// The connection comes first, bounded by the pool's own acquire timeout: a refused connection
/// is retried by the pool until then, and a timer of ours around both raced it (CI saw "no
/// answer within 1 s" once where the pool names the refusal).
async fn replay_position(pool: &PgPool) -> Result<(bool, Option<i64>), ReplayError> {
    let mut conn = pool.acquire().await.map_err(ReplayError::Store)?;
    let row = tokio::time::timeout(
        CHECK_TIMEOUT,
        sqlx::query!(
            r#"SELECT pg_is_in_recovery() AS "standby!",
                  (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8 AS replayed"#
        )
        .fetch_one(&mut *conn),
    )
    .await
    .map_err(|_| ReplayError::Silent)?
    .map_err(ReplayError::Store)?;
    Ok((row.standby, row.replayed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_say_why_reads_went_to_the_primary() {
        let max_lag = Duration::from_secs(5);
        let of = |state, lag| ReplicaHealth {
            state,
            lag,
            max_lag,
        };
        assert_eq!(
            of(ReplicaState::Usable, Some(Duration::ZERO)).problem(),
            None
        );
        assert_eq!(
            of(ReplicaState::Lagging, Some(Duration::from_millis(7_500))).problem(),
            Some(
                "7.5 s behind the primary (DATABASE_READ_MAX_LAG_MS=5000): reads go to the primary"
                    .into()
            )
        );
        assert_eq!(
            of(ReplicaState::Down("no answer within 1 s".into()), None).problem(),
            Some("no answer within 1 s: reads go to the primary".into())
        );
        assert_eq!(ReplicaState::Lagging.word(), "lagging");
    }

    fn history(now: Instant, points: &[(u64, i64)]) -> VecDeque<Position> {
        points
            .iter()
            .map(|&(ms_ago, lsn)| Position {
                at: now - Duration::from_millis(ms_ago),
                wall_ms: 1_000_000 - ms_ago as i64,
                lsn,
            })
            .collect()
    }

    #[test]
    fn the_lag_is_the_age_of_the_newest_primary_position_replayed() {
        let now = Instant::now();
        let max = Duration::from_secs(5);
        // Idle primary: the position taken right after the replica answered is replayed.
        let idle = history(now, &[(1000, 70), (500, 70), (0, 70)]);
        let (state, lag, caught_up) = judge(Ok((true, Some(70))), &idle, now, true, max);
        assert_eq!(
            (state, lag, caught_up),
            (ReplicaState::Usable, Some(Duration::ZERO), Some(1_000_000))
        );
        // Busy primary: replayed the position of 1 s ago, not the newer ones.
        let busy = history(now, &[(1500, 10), (1000, 20), (500, 30), (0, 40)]);
        let (state, lag, caught_up) = judge(Ok((true, Some(25))), &busy, now, true, max);
        assert_eq!(
            (state, lag, caught_up),
            (
                ReplicaState::Usable,
                Some(Duration::from_secs(1)),
                Some(999_000)
            )
        );
        let (state, _, _) = judge(
            Ok((true, Some(25))),
            &busy,
            now,
            true,
            Duration::from_millis(900),
        );
        assert_eq!(state, ReplicaState::Lagging);
        // Behind everything remembered: lagging, at least as long as the history reaches back.
        let (state, lag, caught_up) = judge(Ok((true, Some(5))), &busy, now, true, max);
        assert_eq!(
            (state, lag, caught_up),
            (
                ReplicaState::Lagging,
                Some(Duration::from_millis(1500)),
                None
            )
        );
    }

    #[test]
    fn with_the_primary_silent_a_replica_that_replayed_everything_stays_usable() {
        let now = Instant::now();
        let old = history(now, &[(9000, 70), (8500, 70)]);
        let (state, lag, _) = judge(
            Ok((true, Some(70))),
            &old,
            now,
            false,
            Duration::from_secs(5),
        );
        assert_eq!((state, lag), (ReplicaState::Usable, Some(Duration::ZERO)));
        // But one that had not caught up is as far behind as its last replayed sample.
        let moving = history(now, &[(9000, 60), (8500, 70)]);
        let (state, _, _) = judge(
            Ok((true, Some(65))),
            &moving,
            now,
            false,
            Duration::from_secs(5),
        );
        assert_eq!(state, ReplicaState::Lagging);
    }

    #[test]
    fn a_server_that_is_no_standby_or_does_not_answer_is_down() {
        let now = Instant::now();
        let samples = history(now, &[(0, 70)]);
        let max = Duration::from_secs(5);
        for (replayed, why) in [
            (
                Ok((false, None)),
                "not a standby (pg_is_in_recovery() is false)",
            ),
            (Ok((true, None)), "has replayed no WAL yet"),
            (
                Err("no answer within 1 s".to_string()),
                "no answer within 1 s",
            ),
        ] {
            let (state, lag, caught_up) = judge(replayed, &samples, now, true, max);
            assert_eq!(
                (state, lag, caught_up),
                (ReplicaState::Down(why.into()), None, None)
            );
        }
    }

    /// A refused connection is retried by the pool until its acquire timeout: the check must
    /// report that, not race it with a timer of its own (CI saw "no answer within 1 s" once).
    #[tokio::test]
    async fn a_replica_that_refuses_connections_is_down_as_unavailable_not_silent() {
        let nowhere = "postgres://boltlink:boltlink@127.0.0.1:1/boltlink";
        let primary = PgPoolOptions::new()
            .acquire_timeout(Duration::from_millis(100))
            .connect_lazy(nowhere)
            .expect("a URL");
        for _ in 0..5 {
            let replica = Replica::connect_lazy(nowhere, 1, Duration::from_secs(5)).expect("a URL");
            replica.check(&primary, &mut VecDeque::new()).await;
            match replica.health().state {
                ReplicaState::Down(why) => assert!(
                    why.starts_with("database unavailable: pool timed out"),
                    "{why}"
                ),
                other => panic!("{other:?}"),
            }
        }
    }
}
