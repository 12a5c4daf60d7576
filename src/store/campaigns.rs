//! Campaigns: owner-scoped groups of links with live totals.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{LinkRecord, Scope, Store, StoreResult};

#[derive(Debug, Clone)]
pub struct CampaignRecord {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub total_links: i64,
    pub total_clicks: i64,
}

/// `sqlx::query_as!(CampaignRecord, ..)`: the campaign's columns and live totals, then
/// `$tail` (the `WHERE` and `ORDER BY`). The one place the columns are written; sqlx checks them
/// against [`CampaignRecord`] when compiling.
macro_rules! query_campaign_record {
    ($tail:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            CampaignRecord,
            r#"SELECT c.id, c.name, c.description, c.created_at,
                 (SELECT count(*) FROM links l WHERE l.campaign_id = c.id) AS "total_links!",
                 (SELECT COALESCE(sum(l.clicks), 0)::bigint FROM links l WHERE l.campaign_id = c.id) AS "total_clicks!"
               FROM campaigns c "#
                + $tail
            $(, $arg)*
        )
    };
}

pub enum AssignOutcome {
    Assigned(Box<LinkRecord>),
    LinkNotFound,
    CampaignNotFound,
}

impl Store {
    pub async fn campaign_owned_by(&self, campaign_id: Uuid, key_id: Uuid) -> StoreResult<bool> {
        Ok(sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM campaigns WHERE id = $1 AND owner_key_id = $2) AS "owned!""#,
            campaign_id,
            key_id,
        )
        .fetch_one(self.pool())
        .await?)
    }

    pub async fn create_campaign(
        &self,
        owner: Uuid,
        name: &str,
        description: Option<&str>,
    ) -> StoreResult<CampaignRecord> {
        // The stored row, not the process clock: the answer must match every later read.
        Ok(sqlx::query_as!(
            CampaignRecord,
            r#"INSERT INTO campaigns (id, owner_key_id, name, description) VALUES ($1, $2, $3, $4)
               RETURNING id, name, description, created_at, 0::bigint AS "total_links!", 0::bigint AS "total_clicks!""#,
            Uuid::now_v7(),
            owner,
            name,
            description,
        )
        .fetch_one(self.pool())
        .await?)
    }

    pub async fn list_campaigns(&self, scope: Scope) -> StoreResult<Vec<CampaignRecord>> {
        // One SQL text per case (see `Scope`).
        let campaigns = if scope.admin {
            query_campaign_record!("ORDER BY c.created_at DESC, c.id DESC")
                .fetch_all(self.pool())
                .await?
        } else {
            query_campaign_record!(
                "WHERE c.owner_key_id = $1 ORDER BY c.created_at DESC, c.id DESC",
                scope.key_id,
            )
            .fetch_all(self.pool())
            .await?
        };
        Ok(campaigns)
    }

    pub async fn get_campaign(
        &self,
        scope: Scope,
        id: Uuid,
    ) -> StoreResult<Option<CampaignRecord>> {
        Ok(query_campaign_record!(
            "WHERE c.id = $1 AND (c.owner_key_id = $2 OR $3)",
            id,
            scope.key_id,
            scope.admin,
        )
        .fetch_optional(self.pool())
        .await?)
    }

    /// `description`: outer `None` leaves it, `Some(None)` clears it.
    pub async fn update_campaign(
        &self,
        scope: Scope,
        id: Uuid,
        name: Option<&str>,
        description: Option<Option<&str>>,
    ) -> StoreResult<Option<CampaignRecord>> {
        let updated = sqlx::query!(
            "UPDATE campaigns SET name = COALESCE($4, name), \
             description = CASE WHEN $5 THEN $6 ELSE description END, updated_at = now() \
             WHERE id = $1 AND (owner_key_id = $2 OR $3)",
            id,
            scope.key_id,
            scope.admin,
            name,
            description.is_some(),
            description.flatten(),
        )
        .execute(self.pool())
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(None);
        }
        self.get_campaign(scope, id).await
    }

    /// Deletes the campaign; its links stay, unassigned (`ON DELETE SET NULL`).
    pub async fn delete_campaign(&self, scope: Scope, id: Uuid) -> StoreResult<bool> {
        let deleted = sqlx::query!(
            "DELETE FROM campaigns WHERE id = $1 AND (owner_key_id = $2 OR $3)",
            id,
            scope.key_id,
            scope.admin,
        )
        .execute(self.pool())
        .await?;
        Ok(deleted.rows_affected() > 0)
    }

    pub async fn assign_link_to_campaign(
        &self,
        scope: Scope,
        campaign_id: Uuid,
        link_id: Uuid,
    ) -> StoreResult<AssignOutcome> {
        let Some(_) = self.get_campaign(scope, campaign_id).await? else {
            return Ok(AssignOutcome::CampaignNotFound);
        };
        let changes = super::LinkChanges {
            campaign_id: Some(Some(campaign_id)),
            ..Default::default()
        };
        Ok(match self.update_link(scope, link_id, changes).await? {
            super::UpdateLinkOutcome::Updated(link) => AssignOutcome::Assigned(Box::new(link)),
            super::UpdateLinkOutcome::LinkNotFound => AssignOutcome::LinkNotFound,
            super::UpdateLinkOutcome::CampaignNotFound => AssignOutcome::CampaignNotFound,
        })
    }
}
