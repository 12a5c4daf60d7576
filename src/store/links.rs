//! Links: creation, owner-scoped reads and changes, and the redirect lookup.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Scope, Store, StoreError, StoreResult};
use crate::domain::{RedirectTarget, ShortCode};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LinkRecord {
    pub id: Uuid,
    pub owner_key_id: Uuid,
    pub short_code: String,
    pub original_url: String,
    pub clicks: i64,
    pub title: Option<String>,
    pub description: Option<String>,
    pub favicon: Option<String>,
    pub is_protected: bool,
    pub is_expiring: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub is_rate_limited: bool,
    pub max_clicks_per_min: i32,
    pub campaign_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl LinkRecord {
    pub fn redirect_target(&self) -> RedirectTarget {
        RedirectTarget {
            link_id: self.id,
            owner_key_id: self.owner_key_id,
            code: self.short_code.clone(),
            url: crate::domain::location_of(&self.original_url),
            is_protected: self.is_protected,
            expires_at_ms: if self.is_expiring {
                self.expires_at.map(|t| t.timestamp_millis())
            } else {
                None
            },
            is_rate_limited: self.is_rate_limited,
            max_clicks_per_min: self.max_clicks_per_min.max(1) as u32,
        }
    }
}

/// Columns of [`LinkRecord`]; the password hash is deliberately not among them.
const LINK_COLUMNS: &str = "id, owner_key_id, short_code, original_url, clicks, title, description, favicon, \
     is_protected, is_expiring, expires_at, is_rate_limited, max_clicks_per_min, campaign_id, created_at, updated_at";

pub struct NewLink {
    pub owner_key_id: Uuid,
    /// `None`: generate one.
    pub custom_code: Option<ShortCode>,
    pub original_url: String,
    pub password_hash: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub is_rate_limited: bool,
    pub max_clicks_per_min: i32,
    pub campaign_id: Option<Uuid>,
}

/// A change set for PATCH: the outer `Option` is "leave as is".
#[derive(Default)]
pub struct LinkChanges {
    pub original_url: Option<String>,
    pub title: Option<Option<String>>,
    pub description: Option<Option<String>>,
    /// `Some(Some(hash))`: protect with this password; `Some(None)`: remove protection.
    pub protection: Option<Option<String>>,
    /// `Some(Some(t))`: expire at t; `Some(None)`: never expire.
    pub expiry: Option<Option<DateTime<Utc>>>,
    pub is_rate_limited: Option<bool>,
    pub max_clicks_per_min: Option<i32>,
    pub campaign_id: Option<Option<Uuid>>,
}

#[allow(clippy::large_enum_variant)]
pub enum CreateLinkOutcome {
    Created(LinkRecord),
    CodeTaken,
    CampaignNotFound,
}

#[allow(clippy::large_enum_variant)]
pub enum UpdateLinkOutcome {
    Updated(LinkRecord),
    LinkNotFound,
    CampaignNotFound,
}

/// A redirect lookup with the password hash, for verify only.
pub struct ProtectedTarget {
    pub target: RedirectTarget,
    pub password_hash: Option<String>,
}

impl Store {
    pub async fn create_link(&self, new: NewLink) -> StoreResult<CreateLinkOutcome> {
        if let Some(campaign_id) = new.campaign_id {
            if !self
                .campaign_owned_by(campaign_id, new.owner_key_id)
                .await?
            {
                return Ok(CreateLinkOutcome::CampaignNotFound);
            }
        }
        // Generated codes: 64^8 possibilities, so a collision is rare; retry a few times.
        for _ in 0..8 {
            let code = new.custom_code.clone().unwrap_or_else(ShortCode::generate);
            let sql = format!(
                "INSERT INTO links (id, owner_key_id, short_code, original_url, password_hash, is_protected, \
                 is_expiring, expires_at, is_rate_limited, max_clicks_per_min, campaign_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {LINK_COLUMNS}"
            );
            let result = sqlx::query_as::<_, LinkRecord>(&sql)
                .bind(Uuid::now_v7())
                .bind(new.owner_key_id)
                .bind(code.as_str())
                .bind(&new.original_url)
                .bind(new.password_hash.as_deref())
                .bind(new.password_hash.is_some())
                .bind(new.expires_at.is_some())
                .bind(new.expires_at)
                .bind(new.is_rate_limited)
                .bind(new.max_clicks_per_min)
                .bind(new.campaign_id)
                .fetch_one(self.pool())
                .await;
            match result {
                Ok(link) => return Ok(CreateLinkOutcome::Created(link)),
                Err(e) if StoreError::is_unique_violation(&e).is_some() => {
                    if new.custom_code.is_some() {
                        return Ok(CreateLinkOutcome::CodeTaken);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict(
            "could not find a free short code".to_string(),
        ))
    }

    pub async fn get_link(&self, scope: Scope, id: Uuid) -> StoreResult<Option<LinkRecord>> {
        let sql =
            format!("SELECT {LINK_COLUMNS} FROM links WHERE id = $1 AND (owner_key_id = $2 OR $3)");
        Ok(sqlx::query_as::<_, LinkRecord>(&sql)
            .bind(id)
            .bind(scope.key_id)
            .bind(scope.admin)
            .fetch_optional(self.pool())
            .await?)
    }

    pub async fn get_link_by_code(
        &self,
        scope: Scope,
        code: &str,
    ) -> StoreResult<Option<LinkRecord>> {
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM links WHERE short_code = $1 AND (owner_key_id = $2 OR $3)"
        );
        Ok(sqlx::query_as::<_, LinkRecord>(&sql)
            .bind(code)
            .bind(scope.key_id)
            .bind(scope.admin)
            .fetch_optional(self.pool())
            .await?)
    }

    /// The redirect path's database lookup (only on a cache miss).
    pub async fn find_redirect_target(&self, code: &str) -> StoreResult<Option<RedirectTarget>> {
        let sql = format!("SELECT {LINK_COLUMNS} FROM links WHERE short_code = $1");
        Ok(sqlx::query_as::<_, LinkRecord>(&sql)
            .bind(code)
            .fetch_optional(self.pool())
            .await?
            .map(|l| l.redirect_target()))
    }

    pub async fn find_protected_target(&self, code: &str) -> StoreResult<Option<ProtectedTarget>> {
        let sql = format!("SELECT {LINK_COLUMNS}, password_hash FROM links WHERE short_code = $1");
        let row = sqlx::query(&sql)
            .bind(code)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        use sqlx::{FromRow, Row};
        let link = LinkRecord::from_row(&row)?;
        let password_hash: Option<String> = row.try_get("password_hash")?;
        Ok(Some(ProtectedTarget {
            target: link.redirect_target(),
            password_hash,
        }))
    }

    /// Newest first; returns the page and the total count for `X-Total-Count`.
    pub async fn list_links(
        &self,
        scope: Scope,
        limit: i64,
        offset: i64,
    ) -> StoreResult<(Vec<LinkRecord>, i64)> {
        let filter = scope.owner_filter("owner_key_id");
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM links WHERE {filter} \
             ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
        );
        let links = sqlx::query_as::<_, LinkRecord>(&sql)
            .bind(scope.key_id)
            .bind(limit)
            .bind(offset)
            .fetch_all(self.pool())
            .await?;
        let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM links WHERE {filter}"))
            .bind(scope.key_id)
            .fetch_one(self.pool())
            .await?;
        Ok((links, total))
    }

    pub async fn top_links(&self, scope: Scope, limit: i64) -> StoreResult<Vec<LinkRecord>> {
        let filter = scope.owner_filter("owner_key_id");
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM links WHERE {filter} \
             ORDER BY clicks DESC, created_at DESC LIMIT $2"
        );
        Ok(sqlx::query_as::<_, LinkRecord>(&sql)
            .bind(scope.key_id)
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn update_link(
        &self,
        scope: Scope,
        id: Uuid,
        changes: LinkChanges,
    ) -> StoreResult<UpdateLinkOutcome> {
        let mut tx = self.pool().begin().await?;
        let sql = format!(
            "SELECT {LINK_COLUMNS}, password_hash FROM links WHERE id = $1 AND (owner_key_id = $2 OR $3) FOR UPDATE"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(scope.key_id)
            .bind(scope.admin)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(UpdateLinkOutcome::LinkNotFound);
        };
        use sqlx::{FromRow, Row};
        let mut link = LinkRecord::from_row(&row)?;
        let mut password_hash: Option<String> = row.try_get("password_hash")?;

        if let Some(Some(campaign_id)) = changes.campaign_id {
            let owned: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM campaigns WHERE id = $1 AND (owner_key_id = $2 OR $3))",
            )
            .bind(campaign_id)
            .bind(scope.key_id)
            .bind(scope.admin)
            .fetch_one(&mut *tx)
            .await?;
            if !owned {
                return Ok(UpdateLinkOutcome::CampaignNotFound);
            }
        }
        if let Some(url) = changes.original_url {
            link.original_url = url;
        }
        if let Some(title) = changes.title {
            link.title = title;
        }
        if let Some(description) = changes.description {
            link.description = description;
        }
        if let Some(protection) = changes.protection {
            link.is_protected = protection.is_some();
            password_hash = protection;
        }
        if let Some(expiry) = changes.expiry {
            link.is_expiring = expiry.is_some();
            link.expires_at = expiry;
        }
        if let Some(limited) = changes.is_rate_limited {
            link.is_rate_limited = limited;
        }
        if let Some(max) = changes.max_clicks_per_min {
            link.max_clicks_per_min = max;
        }
        if let Some(campaign) = changes.campaign_id {
            link.campaign_id = campaign;
        }
        let sql = format!(
            "UPDATE links SET original_url = $2, title = $3, description = $4, is_protected = $5, password_hash = $6, \
             is_expiring = $7, expires_at = $8, is_rate_limited = $9, max_clicks_per_min = $10, campaign_id = $11, \
             updated_at = now() WHERE id = $1 RETURNING {LINK_COLUMNS}"
        );
        let updated = sqlx::query_as::<_, LinkRecord>(&sql)
            .bind(link.id)
            .bind(&link.original_url)
            .bind(&link.title)
            .bind(&link.description)
            .bind(link.is_protected)
            .bind(&password_hash)
            .bind(link.is_expiring)
            .bind(link.expires_at)
            .bind(link.is_rate_limited)
            .bind(link.max_clicks_per_min)
            .bind(link.campaign_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(UpdateLinkOutcome::Updated(updated))
    }

    /// Deletes and returns the code (for cache invalidation), or `None` if not the caller's.
    pub async fn delete_link(&self, scope: Scope, id: Uuid) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "DELETE FROM links WHERE id = $1 AND (owner_key_id = $2 OR $3) RETURNING short_code",
        )
        .bind(id)
        .bind(scope.key_id)
        .bind(scope.admin)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Background metadata fill: never overwrites what the owner set in the meantime.
    pub async fn fill_link_metadata(
        &self,
        id: Uuid,
        title: Option<&str>,
        description: Option<&str>,
        favicon: Option<&str>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE links SET title = COALESCE(title, $2), description = COALESCE(description, $3), \
             favicon = COALESCE(favicon, $4) WHERE id = $1",
        )
        .bind(id)
        .bind(title)
        .bind(description)
        .bind(favicon)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
