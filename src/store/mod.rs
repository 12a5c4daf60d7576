//! PostgreSQL access. The only module that uses sqlx; everything above it sees plain records
//! and a [`StoreError`] that says whether the database was unreachable (503) or something else.
//!
//! Ownership is enforced here, in the SQL: every query on links and campaigns takes a
//! [`Scope`] and filters by owner unless the key is an admin key, so a route cannot forget it.

pub mod analytics;
pub mod campaigns;
pub mod keys;
pub mod links;
pub mod pipeline;
pub mod replica;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use uuid::Uuid;

pub use analytics::*;
pub use campaigns::*;
pub use keys::*;
pub use links::*;
pub use pipeline::*;
pub use webhooks::*;

use crate::config::ReadReplicaConfig;
use replica::Replica;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
            sqlx::Error::Database(db) => match db.code().as_deref() {
                // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections
                Some("57P01" | "57P02" | "57P03" | "53300") => StoreError::Unavailable(e),
                _ => StoreError::Other(e),
            },
            _ => StoreError::Other(e),
        }
    }
}

impl StoreError {
    pub fn is_unique_violation(e: &sqlx::Error) -> Option<String> {
        match e {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
                Some(db.constraint().unwrap_or("unique").to_string())
            }
            _ => None,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Whose rows a request may see. Lists and totals are one SQL text per case, the key's rows
/// (`owner_key_id = $1`) or an admin's everything, never a shared `(owner_key_id = $1 OR $2)`:
/// that would let PostgreSQL settle on a generic plan that scans. Lookups of one row by id or
/// code use the shared form; their unique index decides the plan either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    pub key_id: Uuid,
    pub admin: bool,
}

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    /// `DATABASE_READ_URL`'s standby, when configured.
    replica: Option<Arc<Replica>>,
    /// The session holding the aggregator's lock, in the aggregator (`pipeline.rs`).
    aggregator: pipeline::SharedAggregatorSession,
}

impl Store {
    /// Builds a lazily connecting pool: the process can start (and serve cached redirects)
    /// while PostgreSQL is down. `acquire_timeout` bounds how long a request waits for it.
    pub fn connect_lazy(database_url: &str, pool_size: u32) -> anyhow::Result<Self> {
        let options: PgConnectOptions = database_url.parse()?;
        let options = options.application_name("boltlink");
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(2))
            .idle_timeout(Duration::from_secs(300))
            .connect_lazy_with(options);
        Ok(Self::from_pool(pool))
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            replica: None,
            aggregator: Default::default(),
        }
    }

    /// Adds the read replica ([`replica`]); its pool is as large as the primary's.
    pub fn with_replica(mut self, config: &ReadReplicaConfig) -> anyhow::Result<Self> {
        let size = self.pool.options().get_max_connections();
        self.replica = Some(Arc::new(Replica::connect_lazy(
            &config.url,
            size,
            config.max_lag,
        )?));
        Ok(self)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn replica(&self) -> Option<&Arc<Replica>> {
        self.replica.as_ref()
    }

    /// The same queries, run on the replica (when there is one).
    pub fn on_replica(&self) -> Option<Store> {
        self.replica
            .as_ref()
            .map(|r| Store::from_pool(r.pool().clone()))
    }

    /// Applies pending migrations. sqlx takes a PostgreSQL advisory lock around the run, so
    /// several instances starting at once apply each migration exactly once.
    pub async fn migrate(&self) -> StoreResult<()> {
        match MIGRATOR.run(&self.pool).await {
            Ok(()) => Ok(()),
            Err(sqlx::migrate::MigrateError::Execute(e)) => match StoreError::from(e) {
                StoreError::Other(e) => Err(StoreError::Migration(e.to_string())),
                unavailable => Err(unavailable),
            },
            Err(e) => Err(StoreError::Migration(e.to_string())),
        }
    }

    /// `SELECT 1` with the pool's timeout; used by `/health` and readiness.
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query_scalar!(r#"SELECT 1 AS "one!""#)
            .fetch_one(&self.pool)
            .await?;
        Ok(())
    }

    /// Seconds since the PostgreSQL server started, for `/api/system/health`.
    pub async fn server_uptime_secs(&self) -> StoreResult<i64> {
        let secs = sqlx::query_scalar!(
            r#"SELECT extract(epoch FROM now() - pg_postmaster_start_time())::float8 AS "secs!""#
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(secs as i64)
    }
}
