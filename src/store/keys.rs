//! API keys: stored as SHA-256 digests, looked up by digest.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreResult};

#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub key_prefix: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub is_admin: bool,
    pub webhook_url: Option<String>,
    /// `whsec_` + 64 hex: signs the key's webhook deliveries; `None` until a URL is set.
    pub webhook_secret: Option<String>,
    pub rate_limit_per_min: i32,
    pub rate_limit_per_hour: i32,
    pub logs_enabled: bool,
    pub analytics_level: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub struct NewApiKey<'a> {
    pub hash: [u8; 32],
    pub prefix: String,
    pub name: Option<&'a str>,
    pub email: Option<&'a str>,
    pub is_admin: bool,
    pub rate_limit_per_min: u32,
    pub rate_limit_per_hour: u32,
}

/// `sqlx::query_as!(ApiKeyRecord, ..)` with the columns of [`ApiKeyRecord`] between `$head`
/// and `$tail`, the one place they are written; sqlx checks them against the struct when
/// compiling. The key hash is deliberately not among them.
macro_rules! query_api_key_record {
    ($head:literal, $tail:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            ApiKeyRecord,
            $head
                + " id, key_prefix, name, email, is_admin, webhook_url, webhook_secret, rate_limit_per_min, \
                   rate_limit_per_hour, logs_enabled, analytics_level, created_at, revoked_at "
                + $tail
            $(, $arg)*
        )
    };
}

impl Store {
    pub async fn create_api_key(&self, new: NewApiKey<'_>) -> StoreResult<ApiKeyRecord> {
        Ok(query_api_key_record!(
            "INSERT INTO api_keys (id, key_hash, key_prefix, name, email, is_admin, rate_limit_per_min, \
             rate_limit_per_hour) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING",
            "",
            Uuid::now_v7(),
            &new.hash[..],
            &new.prefix,
            new.name,
            new.email,
            new.is_admin,
            new.rate_limit_per_min as i32,
            new.rate_limit_per_hour as i32,
        )
        .fetch_one(self.pool())
        .await?)
    }

    /// The live (not revoked) key with this digest.
    pub async fn find_api_key(&self, hash: &[u8; 32]) -> StoreResult<Option<ApiKeyRecord>> {
        Ok(query_api_key_record!(
            "SELECT",
            "FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
            &hash[..],
        )
        .fetch_optional(self.pool())
        .await?)
    }

    pub async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        Ok(
            query_api_key_record!("SELECT", "FROM api_keys ORDER BY created_at")
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// Revokes by id or by the 10-character prefix; returns how many keys were revoked.
    pub async fn revoke_api_key(&self, id_or_prefix: &str) -> StoreResult<u64> {
        let result = match Uuid::parse_str(id_or_prefix) {
            Ok(id) => {
                sqlx::query!(
                    "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
                    id,
                )
                .execute(self.pool())
                .await?
            }
            Err(_) => {
                sqlx::query!(
                    "UPDATE api_keys SET revoked_at = now() WHERE key_prefix = $1 AND revoked_at IS NULL",
                    id_or_prefix,
                )
                .execute(self.pool())
                .await?
            }
        };
        Ok(result.rows_affected())
    }

    /// Sets or removes the webhook URL. The first URL also stores `new_secret` as the
    /// signing secret; later changes keep the secret there is (removing the URL too, so a
    /// receiver set up again keeps verifying). Returns the secret now stored.
    pub async fn set_webhook_url(
        &self,
        key_id: Uuid,
        url: Option<&str>,
        new_secret: &str,
    ) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar!(
            "UPDATE api_keys SET webhook_url = $2, \
             webhook_secret = CASE WHEN $2::text IS NULL THEN webhook_secret ELSE COALESCE(webhook_secret, $3) END \
             WHERE id = $1 RETURNING webhook_secret",
            key_id,
            url,
            new_secret,
        )
        .fetch_one(self.pool())
        .await?)
    }

    /// Replaces the key's signing secret.
    pub async fn rotate_webhook_secret(&self, key_id: Uuid, secret: &str) -> StoreResult<()> {
        sqlx::query!(
            "UPDATE api_keys SET webhook_secret = $2 WHERE id = $1",
            key_id,
            secret,
        )
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
