//! Links: creation, owner-scoped reads and changes, and the redirect lookup.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use sqlx::types::Json;

use super::{Scope, Store, StoreError, StoreResult};
use crate::domain::{RedirectTarget, ShortCode};
use crate::rules::RedirectRule;

/// A link row. Also deserialised from the row's JSON (`to_jsonb`) that webhook link events
/// keep (see `migrations/20261206000003_webhook_delivery.sql`).
#[derive(Debug, Clone, serde::Deserialize)]
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
    pub redirect_type: i16,
    pub forward_query: bool,
    pub tags: Vec<String>,
    pub redirect_rules: Json<Vec<RedirectRule>>,
}

/// `sqlx::query_as!(LinkRecord, ..)` with the columns of [`LinkRecord`] between `$head` and
/// `$tail`, the one place they are written: `query_link_record!("SELECT", "FROM links ..", args)`,
/// `query_link_record!("INSERT .. RETURNING", "", args)`. sqlx checks the list against the
/// struct when compiling: a column missing, extra or of another type is a build error. The
/// password hash is deliberately not among them.
macro_rules! query_link_record {
    ($head:literal, $tail:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            LinkRecord,
            $head
                + " id, owner_key_id, short_code, original_url, clicks, title, description, favicon, \
                   is_protected, is_expiring, expires_at, is_rate_limited, max_clicks_per_min, \
                   campaign_id, created_at, updated_at, redirect_type, forward_query, tags, \
                   redirect_rules AS \"redirect_rules: Json<Vec<RedirectRule>>\" "
                + $tail
            $(, $arg)*
        )
    };
}

/// What a redirect decision needs of a link row: read on a cache miss, and with the password
/// hash (kept apart, in [`ProtectedTarget`]) for verify.
struct RedirectRow {
    id: Uuid,
    owner_key_id: Uuid,
    short_code: String,
    original_url: String,
    is_protected: bool,
    is_expiring: bool,
    expires_at: Option<DateTime<Utc>>,
    is_rate_limited: bool,
    max_clicks_per_min: i32,
    redirect_type: i16,
    forward_query: bool,
    redirect_rules: Json<Vec<RedirectRule>>,
}

impl RedirectRow {
    fn into_target(self) -> RedirectTarget {
        RedirectTarget {
            link_id: self.id,
            owner_key_id: self.owner_key_id,
            url: crate::domain::location_of(&self.original_url),
            code: self.short_code,
            is_protected: self.is_protected,
            expires_at_ms: if self.is_expiring {
                self.expires_at.map(|t| t.timestamp_millis())
            } else {
                None
            },
            is_rate_limited: self.is_rate_limited,
            max_clicks_per_min: self.max_clicks_per_min.max(1) as u32,
            redirect_type: self.redirect_type as u16,
            forward_query: self.forward_query,
            rules: self.redirect_rules.0,
            location: Default::default(),
        }
    }
}

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
    pub redirect_type: i16,
    pub forward_query: bool,
    pub tags: Vec<String>,
    pub redirect_rules: Vec<RedirectRule>,
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
    pub redirect_type: Option<i16>,
    pub forward_query: Option<bool>,
    pub tags: Option<Vec<String>>,
    pub redirect_rules: Option<Vec<RedirectRule>>,
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

/// The list's filters (`tag=`, `q=`); both absent lists everything.
#[derive(Debug, Default, Clone)]
pub struct LinkFilter {
    /// Links carrying this tag (already lowercased).
    pub tag: Option<String>,
    /// Case-insensitive substring of the code, destination or title.
    pub text: Option<String>,
}

/// An `ILIKE` pattern matching `text` anywhere, its wildcards and escape taken literally.
fn like_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
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
            let result = query_link_record!(
                "INSERT INTO links (id, owner_key_id, short_code, original_url, password_hash, is_protected, \
                 is_expiring, expires_at, is_rate_limited, max_clicks_per_min, campaign_id, redirect_type, \
                 forward_query, tags, redirect_rules) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING",
                "",
                Uuid::now_v7(),
                new.owner_key_id,
                code.as_str(),
                &new.original_url,
                new.password_hash.as_deref(),
                new.password_hash.is_some(),
                new.expires_at.is_some(),
                new.expires_at,
                new.is_rate_limited,
                new.max_clicks_per_min,
                new.campaign_id,
                new.redirect_type,
                new.forward_query,
                &new.tags,
                Json(&new.redirect_rules) as _,
            )
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

    /// Creates up to a thousand links of one owner in one statement (bulk import): rows are
    /// independent, so a taken custom code fails its row alone. Returns, in input order, the
    /// created link or why its row failed. Campaigns are checked in one query before; a
    /// generated code that collides (rare) is drawn again in a second statement.
    pub async fn create_links_batch(
        &self,
        owner: Uuid,
        rows: Vec<NewLink>,
    ) -> StoreResult<Vec<CreateLinkOutcome>> {
        let campaigns: Vec<Uuid> = rows.iter().filter_map(|r| r.campaign_id).collect();
        let owned: std::collections::HashSet<Uuid> = if campaigns.is_empty() {
            Default::default()
        } else {
            sqlx::query_scalar!(
                "SELECT id FROM campaigns WHERE id = ANY($1) AND owner_key_id = $2",
                &campaigns,
                owner,
            )
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .collect()
        };
        let mut outcomes: Vec<Option<CreateLinkOutcome>> = rows
            .iter()
            .map(|r| match r.campaign_id {
                Some(c) if !owned.contains(&c) => Some(CreateLinkOutcome::CampaignNotFound),
                _ => None,
            })
            .collect();
        let mut pending: Vec<usize> = (0..rows.len()).filter(|i| outcomes[*i].is_none()).collect();
        for _ in 0..4 {
            if pending.is_empty() {
                break;
            }
            let ids: Vec<Uuid> = pending.iter().map(|_| Uuid::now_v7()).collect();
            let codes: Vec<String> = pending
                .iter()
                .map(|i| {
                    rows[*i]
                        .custom_code
                        .clone()
                        .unwrap_or_else(ShortCode::generate)
                        .as_str()
                        .to_string()
                })
                .collect();
            let batch: Vec<&NewLink> = pending.iter().map(|i| &rows[*i]).collect();
            let urls: Vec<String> = batch.iter().map(|r| r.original_url.clone()).collect();
            let hashes: Vec<Option<String>> =
                batch.iter().map(|r| r.password_hash.clone()).collect();
            let expiries: Vec<Option<DateTime<Utc>>> = batch.iter().map(|r| r.expires_at).collect();
            let limited: Vec<bool> = batch.iter().map(|r| r.is_rate_limited).collect();
            let maxes: Vec<i32> = batch.iter().map(|r| r.max_clicks_per_min).collect();
            let campaign_ids: Vec<Option<Uuid>> = batch.iter().map(|r| r.campaign_id).collect();
            let types: Vec<i16> = batch.iter().map(|r| r.redirect_type).collect();
            let forwards: Vec<bool> = batch.iter().map(|r| r.forward_query).collect();
            // Tags are [a-z0-9_-]: joined by commas they travel as one text per row (a
            // PostgreSQL array parameter must be rectangular), rules as their JSON text.
            let tags: Vec<String> = batch.iter().map(|r| r.tags.join(",")).collect();
            let rules: Vec<String> = batch
                .iter()
                .map(|r| {
                    serde_json::to_string(&r.redirect_rules).unwrap_or_else(|_| "[]".to_string())
                })
                .collect();
            let created = query_link_record!(
                r#"INSERT INTO links (id, owner_key_id, short_code, original_url, password_hash, is_protected,
                   is_expiring, expires_at, is_rate_limited, max_clicks_per_min, campaign_id, redirect_type,
                   forward_query, tags, redirect_rules)
                   SELECT r.id, $2, r.code, r.url, r.hash, r.hash IS NOT NULL, r.expires IS NOT NULL, r.expires,
                          r.limited, r.max, r.campaign, r.kind, r.forward,
                          CASE WHEN r.tags = '' THEN '{}'::text[] ELSE string_to_array(r.tags, ',') END,
                          r.rules::jsonb
                   FROM UNNEST($1::uuid[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::bool[],
                               $8::int4[], $9::uuid[], $10::int2[], $11::bool[], $12::text[], $13::text[])
                        AS r(id, code, url, hash, expires, limited, max, campaign, kind, forward, tags, rules)
                   ON CONFLICT (short_code) DO NOTHING
                   RETURNING"#,
                "",
                &ids,
                owner,
                &codes,
                &urls,
                &hashes as &[Option<String>],
                &expiries as &[Option<DateTime<Utc>>],
                &limited,
                &maxes,
                &campaign_ids as &[Option<Uuid>],
                &types,
                &forwards,
                &tags,
                &rules,
            )
            .fetch_all(self.pool())
            .await?;
            let mut by_id: std::collections::HashMap<Uuid, LinkRecord> =
                created.into_iter().map(|l| (l.id, l)).collect();
            let mut again = Vec::new();
            for (k, i) in pending.iter().enumerate() {
                match by_id.remove(&ids[k]) {
                    Some(link) => outcomes[*i] = Some(CreateLinkOutcome::Created(link)),
                    None if rows[*i].custom_code.is_some() => {
                        outcomes[*i] = Some(CreateLinkOutcome::CodeTaken)
                    }
                    None => again.push(*i),
                }
            }
            pending = again;
        }
        if !pending.is_empty() {
            return Err(StoreError::Conflict(
                "could not find free short codes".to_string(),
            ));
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or(CreateLinkOutcome::CodeTaken))
            .collect())
    }

    /// One page of an owner's links for the export, oldest first, after `after` (the last
    /// row of the previous page: its creation time and id).
    pub async fn export_page(
        &self,
        scope: Scope,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> StoreResult<Vec<LinkRecord>> {
        let (after_at, after_id) = match after {
            Some((at, id)) => (Some(at), Some(id)),
            None => (None, None),
        };
        Ok(query_link_record!(
            "SELECT",
            "FROM links WHERE (owner_key_id = $1 OR $2)
             AND ($3::timestamptz IS NULL OR (created_at, id) > ($3, $4))
             ORDER BY created_at, id LIMIT $5",
            scope.key_id,
            scope.admin,
            after_at,
            after_id,
            limit,
        )
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn get_link(&self, scope: Scope, id: Uuid) -> StoreResult<Option<LinkRecord>> {
        Ok(query_link_record!(
            "SELECT",
            "FROM links WHERE id = $1 AND (owner_key_id = $2 OR $3)",
            id,
            scope.key_id,
            scope.admin,
        )
        .fetch_optional(self.pool())
        .await?)
    }

    pub async fn get_link_by_code(
        &self,
        scope: Scope,
        code: &str,
    ) -> StoreResult<Option<LinkRecord>> {
        Ok(query_link_record!(
            "SELECT",
            "FROM links WHERE short_code = $1 AND (owner_key_id = $2 OR $3)",
            code,
            scope.key_id,
            scope.admin,
        )
        .fetch_optional(self.pool())
        .await?)
    }

    /// The redirect path's database lookup (only on a cache miss).
    pub async fn find_redirect_target(&self, code: &str) -> StoreResult<Option<RedirectTarget>> {
        Ok(sqlx::query_as!(
            RedirectRow,
            r#"SELECT id, owner_key_id, short_code, original_url, is_protected, is_expiring, expires_at,
               is_rate_limited, max_clicks_per_min, redirect_type, forward_query,
               redirect_rules AS "redirect_rules: Json<Vec<RedirectRule>>"
               FROM links WHERE short_code = $1"#,
            code,
        )
        .fetch_optional(self.pool())
        .await?
        .map(RedirectRow::into_target))
    }

    /// The redirect lookup plus the password hash; the one query that reads the hash.
    pub async fn find_protected_target(&self, code: &str) -> StoreResult<Option<ProtectedTarget>> {
        let row = sqlx::query!(
            r#"SELECT id, owner_key_id, short_code, original_url, is_protected, is_expiring, expires_at,
               is_rate_limited, max_clicks_per_min, redirect_type, forward_query,
               redirect_rules AS "redirect_rules: Json<Vec<RedirectRule>>", password_hash
               FROM links WHERE short_code = $1"#,
            code,
        )
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|row| ProtectedTarget {
            target: RedirectRow {
                id: row.id,
                owner_key_id: row.owner_key_id,
                short_code: row.short_code,
                original_url: row.original_url,
                is_protected: row.is_protected,
                is_expiring: row.is_expiring,
                expires_at: row.expires_at,
                is_rate_limited: row.is_rate_limited,
                max_clicks_per_min: row.max_clicks_per_min,
                redirect_type: row.redirect_type,
                forward_query: row.forward_query,
                redirect_rules: row.redirect_rules,
            }
            .into_target(),
            password_hash: row.password_hash,
        }))
    }

    /// Newest first; returns the page and the total count (of the filtered set) for
    /// `X-Total-Count`. An admin lists every key's links; one SQL text per case (see
    /// [`Scope`]).
    pub async fn list_links(
        &self,
        scope: Scope,
        filter: &LinkFilter,
        limit: i64,
        offset: i64,
    ) -> StoreResult<(Vec<LinkRecord>, i64)> {
        let tag = filter.tag.as_deref();
        let pattern = filter.text.as_deref().map(like_pattern);
        let pattern = pattern.as_deref();
        let (links, total) = if scope.admin {
            let links = query_link_record!(
                "SELECT",
                r"FROM links WHERE ($1::text IS NULL OR tags @> ARRAY[$1::text])
                  AND ($2::text IS NULL OR short_code ILIKE $2 ESCAPE '\' OR original_url ILIKE $2 ESCAPE '\'
                       OR title ILIKE $2 ESCAPE '\')
                  ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4",
                tag,
                pattern,
                limit,
                offset,
            )
            .fetch_all(self.pool())
            .await?;
            let total = sqlx::query_scalar!(
                r#"SELECT count(*) AS "count!" FROM links WHERE ($1::text IS NULL OR tags @> ARRAY[$1::text])
                   AND ($2::text IS NULL OR short_code ILIKE $2 ESCAPE '\' OR original_url ILIKE $2 ESCAPE '\'
                        OR title ILIKE $2 ESCAPE '\')"#,
                tag,
                pattern,
            )
            .fetch_one(self.pool())
            .await?;
            (links, total)
        } else {
            let links = query_link_record!(
                "SELECT",
                r"FROM links WHERE owner_key_id = $1 AND ($2::text IS NULL OR tags @> ARRAY[$2::text])
                  AND ($3::text IS NULL OR short_code ILIKE $3 ESCAPE '\' OR original_url ILIKE $3 ESCAPE '\'
                       OR title ILIKE $3 ESCAPE '\')
                  ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5",
                scope.key_id,
                tag,
                pattern,
                limit,
                offset,
            )
            .fetch_all(self.pool())
            .await?;
            let total = sqlx::query_scalar!(
                r#"SELECT count(*) AS "count!" FROM links WHERE owner_key_id = $1
                   AND ($2::text IS NULL OR tags @> ARRAY[$2::text])
                   AND ($3::text IS NULL OR short_code ILIKE $3 ESCAPE '\' OR original_url ILIKE $3 ESCAPE '\'
                        OR title ILIKE $3 ESCAPE '\')"#,
                scope.key_id,
                tag,
                pattern,
            )
            .fetch_one(self.pool())
            .await?;
            (links, total)
        };
        Ok((links, total))
    }

    /// Most clicked first; an admin sees every key's links.
    pub async fn top_links(&self, scope: Scope, limit: i64) -> StoreResult<Vec<LinkRecord>> {
        let links = if scope.admin {
            query_link_record!(
                "SELECT",
                "FROM links ORDER BY clicks DESC, created_at DESC LIMIT $1",
                limit,
            )
            .fetch_all(self.pool())
            .await?
        } else {
            query_link_record!(
                "SELECT",
                "FROM links WHERE owner_key_id = $1 ORDER BY clicks DESC, created_at DESC LIMIT $2",
                scope.key_id,
                limit,
            )
            .fetch_all(self.pool())
            .await?
        };
        Ok(links)
    }

    pub async fn update_link(
        &self,
        scope: Scope,
        id: Uuid,
        changes: LinkChanges,
    ) -> StoreResult<UpdateLinkOutcome> {
        let mut tx = self.pool().begin().await?;
        let link = query_link_record!(
            "SELECT",
            "FROM links WHERE id = $1 AND (owner_key_id = $2 OR $3) FOR UPDATE",
            id,
            scope.key_id,
            scope.admin,
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(mut link) = link else {
            return Ok(UpdateLinkOutcome::LinkNotFound);
        };

        if let Some(Some(campaign_id)) = changes.campaign_id {
            let owned = sqlx::query_scalar!(
                r#"SELECT EXISTS (SELECT 1 FROM campaigns WHERE id = $1 AND (owner_key_id = $2 OR $3)) AS "owned!""#,
                campaign_id,
                scope.key_id,
                scope.admin,
            )
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
        // The hash is written only when protection changes; otherwise the row keeps its own
        // (locked above), so the hash never has to be read here.
        let (set_password, password_hash) = match changes.protection {
            Some(protection) => {
                link.is_protected = protection.is_some();
                (true, protection)
            }
            None => (false, None),
        };
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
        if let Some(t) = changes.redirect_type {
            link.redirect_type = t;
        }
        if let Some(f) = changes.forward_query {
            link.forward_query = f;
        }
        if let Some(tags) = changes.tags {
            link.tags = tags;
        }
        if let Some(rules) = changes.redirect_rules {
            link.redirect_rules = Json(rules);
        }
        let updated = query_link_record!(
            "UPDATE links SET original_url = $2, title = $3, description = $4, is_protected = $5, \
             password_hash = CASE WHEN $6 THEN $7 ELSE password_hash END, is_expiring = $8, expires_at = $9, \
             is_rate_limited = $10, max_clicks_per_min = $11, campaign_id = $12, redirect_type = $13, \
             forward_query = $14, tags = $15, redirect_rules = $16, updated_at = now() \
             WHERE id = $1 RETURNING",
            "",
            link.id,
            &link.original_url,
            link.title.as_deref(),
            link.description.as_deref(),
            link.is_protected,
            set_password,
            password_hash.as_deref(),
            link.is_expiring,
            link.expires_at,
            link.is_rate_limited,
            link.max_clicks_per_min,
            link.campaign_id,
            link.redirect_type,
            link.forward_query,
            &link.tags,
            &link.redirect_rules as _,
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(UpdateLinkOutcome::Updated(updated))
    }

    /// Deletes and returns the code (for cache invalidation), or `None` if not the caller's.
    pub async fn delete_link(&self, scope: Scope, id: Uuid) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar!(
            "DELETE FROM links WHERE id = $1 AND (owner_key_id = $2 OR $3) RETURNING short_code",
            id,
            scope.key_id,
            scope.admin,
        )
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
        sqlx::query!(
            "UPDATE links SET title = COALESCE(title, $2), description = COALESCE(description, $3), \
             favicon = COALESCE(favicon, $4) WHERE id = $1",
            id,
            title,
            description,
            favicon,
        )
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
