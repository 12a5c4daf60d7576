//! API keys: stored as SHA-256 digests, looked up by digest.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreResult};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub key_prefix: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub is_admin: bool,
    pub webhook_url: Option<String>,
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

const KEY_COLUMNS: &str =
    "id, key_prefix, name, email, is_admin, webhook_url, rate_limit_per_min, \
     rate_limit_per_hour, logs_enabled, analytics_level, created_at, revoked_at";

impl Store {
    pub async fn create_api_key(&self, new: NewApiKey<'_>) -> StoreResult<ApiKeyRecord> {
        let sql = format!(
            "INSERT INTO api_keys (id, key_hash, key_prefix, name, email, is_admin, rate_limit_per_min, rate_limit_per_hour) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {KEY_COLUMNS}"
        );
        Ok(sqlx::query_as::<_, ApiKeyRecord>(&sql)
            .bind(Uuid::now_v7())
            .bind(&new.hash[..])
            .bind(&new.prefix)
            .bind(new.name)
            .bind(new.email)
            .bind(new.is_admin)
            .bind(new.rate_limit_per_min as i32)
            .bind(new.rate_limit_per_hour as i32)
            .fetch_one(self.pool())
            .await?)
    }

    /// The live (not revoked) key with this digest.
    pub async fn find_api_key(&self, hash: &[u8; 32]) -> StoreResult<Option<ApiKeyRecord>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
        );
        Ok(sqlx::query_as::<_, ApiKeyRecord>(&sql)
            .bind(&hash[..])
            .fetch_optional(self.pool())
            .await?)
    }

    pub async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at");
        Ok(sqlx::query_as::<_, ApiKeyRecord>(&sql)
            .fetch_all(self.pool())
            .await?)
    }

    /// Revokes by id or by the 10-character prefix; returns how many keys were revoked.
    pub async fn revoke_api_key(&self, id_or_prefix: &str) -> StoreResult<u64> {
        let result = match Uuid::parse_str(id_or_prefix) {
            Ok(id) => {
                sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
                    .bind(id)
                    .execute(self.pool())
                    .await?
            }
            Err(_) => {
                sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE key_prefix = $1 AND revoked_at IS NULL")
                    .bind(id_or_prefix)
                    .execute(self.pool())
                    .await?
            }
        };
        Ok(result.rows_affected())
    }

    pub async fn set_webhook_url(&self, key_id: Uuid, url: Option<&str>) -> StoreResult<()> {
        sqlx::query("UPDATE api_keys SET webhook_url = $2 WHERE id = $1")
            .bind(key_id)
            .bind(url)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
