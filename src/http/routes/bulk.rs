//! Bulk import (`POST /api/links/bulk`, a JSON array or CSV) and the streamed CSV export
//! (`GET /api/links/export`) of API 0.2. Rows are independent: each is validated like
//! `POST /api/shorten` ([`super::links::new_link`]) and a bad row fails alone; the valid ones
//! are created in one statement ([`crate::store::Store::create_links_batch`]).

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::links::{new_link, LinkView, ShortenBody};
use super::timestamp;
use crate::app::{spawn_metadata_fills, App};
use crate::http::body::{chunks, ChunkError};
use crate::http::error::{json as json_response, rate_limit_headers, ApiError, Body};
use crate::http::request::{
    authenticate, authenticate_and_limit, parse_json_value, RequestCtx, RouteLimit,
};
use crate::redis::limiter::Limit;
use crate::store::{CreateLinkOutcome, LinkRecord};

pub const MAX_ROWS: usize = 1000;

/// The shorten fields a CSV header may name (`tags` separated by `|`, `redirectRules` as
/// JSON text).
const IMPORT_COLUMNS: &[&str] = &[
    "url",
    "customCode",
    "isProtected",
    "password",
    "isExpiring",
    "expiresAt",
    "isRateLimited",
    "maxClicksPerMin",
    "campaignId",
    "redirectType",
    "forwardQuery",
    "tags",
    "redirectRules",
];
/// Columns the export adds, which an import of an export ignores.
const EXPORT_ONLY_COLUMNS: &[&str] = &["shortCode", "shortUrl", "clicks", "createdAt"];
const BOOLEAN_COLUMNS: &[&str] = &["isProtected", "isExpiring", "isRateLimited", "forwardQuery"];
const NUMBER_COLUMNS: &[&str] = &["maxClicksPerMin", "redirectType"];

/// A row as read: its shorten body, or why it cannot be one.
type Row = Result<ShortenBody, String>;

pub async fn import(app: &App, ctx: &RequestCtx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let client_ip = ctx.client_ip.to_string();
    let route = RouteLimit {
        limit: Limit {
            name: "bulk",
            subject: &client_ip,
            limit: app.config.rate_limits.bulk_per_5min,
            window: Duration::from_secs(300),
        },
        refusal: "Too many bulk imports from this IP, please try again later",
    };
    let (caller, decision) = authenticate_and_limit(app, ctx, route).await?;
    let is_csv = ctx
        .header("content-type")
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/csv"));
    let rows = if is_csv {
        csv_rows(body)?
    } else {
        json_rows(body)?
    };
    if rows.is_empty() || rows.len() > MAX_ROWS {
        return Err(ApiError::BadRequest(format!(
            "a bulk import takes 1 to {MAX_ROWS} rows, not {}",
            rows.len()
        )));
    }
    let owner = caller.key.id;
    let mut errors: Vec<Option<String>> = vec![None; rows.len()];
    let mut valid = Vec::with_capacity(rows.len());
    let mut valid_at = Vec::with_capacity(rows.len());
    for (i, row) in rows.into_iter().enumerate() {
        let checked = match row {
            Ok(input) => new_link(app, owner, input, ctx.now_ms)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match checked {
            Ok(new) => {
                valid.push(new);
                valid_at.push(i);
            }
            Err(e) => errors[i] = Some(e),
        }
    }
    let outcomes = app.store.create_links_batch(owner, valid).await?;
    let mut links: Vec<Option<LinkRecord>> = (0..errors.len()).map(|_| None).collect();
    for (i, outcome) in valid_at.into_iter().zip(outcomes) {
        match outcome {
            CreateLinkOutcome::Created(link) => links[i] = Some(link),
            CreateLinkOutcome::CodeTaken => {
                errors[i] = Some("Custom code already in use".to_string())
            }
            CreateLinkOutcome::CampaignNotFound => {
                errors[i] = Some("campaignId does not name one of your campaigns".to_string())
            }
        }
    }
    let created: Vec<&LinkRecord> = links.iter().flatten().collect();
    // Cached "does not exist" answers for the new codes are dropped everywhere, in one round
    // trip; titles are fetched in the background, a few at a time.
    app.invalidate_links(created.iter().map(|l| l.short_code.clone()).collect())
        .await;
    spawn_metadata_fills(
        app,
        created
            .iter()
            .map(|l| (l.id, l.original_url.clone()))
            .collect(),
    );
    let results: Vec<Value> = links
        .iter()
        .zip(&errors)
        .enumerate()
        .map(|(index, (link, error))| match (link, error) {
            (Some(link), _) => json!({"index": index, "link": LinkView::new(app, link)}),
            (None, error) => {
                json!({"index": index, "error": error.as_deref().unwrap_or("not created")})
            }
        })
        .collect();
    let mut resp = json_response(
        StatusCode::OK,
        &json!({
            "created": created.len(),
            "failed": errors.iter().filter(|e| e.is_some()).count(),
            "results": results,
        }),
    );
    rate_limit_headers(&mut resp, &decision, false);
    Ok(resp)
}

/// A JSON array of shorten bodies; a row that is not one fails alone, with the message
/// `POST /api/shorten` would give.
fn json_rows(body: &[u8]) -> Result<Vec<Row>, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the body must be a JSON array of links, or text/csv: {e}"
        ))
    })?;
    let Value::Array(items) = value else {
        return Err(ApiError::BadRequest(
            "the body must be a JSON array of links, or text/csv".to_string(),
        ));
    };
    Ok(items
        .into_iter()
        .map(|item| {
            if !item.is_object() {
                return Err("a row must be a JSON object".to_string());
            }
            parse_json_value::<ShortenBody>(item).map_err(|e| e.to_string())
        })
        .collect())
}

/// CSV with a header row naming shorten fields; an empty cell is an absent field.
fn csv_rows(body: &[u8]) -> Result<Vec<Row>, ApiError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(body);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| ApiError::BadRequest(format!("the CSV header row cannot be read: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    for h in &headers {
        if !IMPORT_COLUMNS.contains(&h.as_str()) && !EXPORT_ONLY_COLUMNS.contains(&h.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "unknown CSV column {h:?} (known: {})",
                IMPORT_COLUMNS.join(", ")
            )));
        }
    }
    if !headers.iter().any(|h| h == "url") {
        return Err(ApiError::BadRequest(
            "the CSV header row must name a url column".to_string(),
        ));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        if rows.len() > MAX_ROWS {
            break;
        }
        let row = match record {
            Err(e) => Err(format!("the row cannot be read as CSV: {e}")),
            Ok(r) if r.len() != headers.len() => Err(format!(
                "the row has {} fields, the header {}",
                r.len(),
                headers.len()
            )),
            Ok(r) => csv_row(&headers, &r),
        };
        rows.push(row);
    }
    Ok(rows)
}

fn csv_row(headers: &[String], record: &csv::StringRecord) -> Row {
    let mut object = Map::new();
    for (name, cell) in headers.iter().zip(record.iter()) {
        let cell = cell.trim();
        if cell.is_empty() || EXPORT_ONLY_COLUMNS.contains(&name.as_str()) {
            continue;
        }
        let value = if BOOLEAN_COLUMNS.contains(&name.as_str()) {
            match cell.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Value::Bool(true),
                "false" | "0" | "no" => Value::Bool(false),
                _ => return Err(format!("{name} must be true or false, not {cell:?}")),
            }
        } else if NUMBER_COLUMNS.contains(&name.as_str()) {
            match cell.parse::<i64>() {
                Ok(n) => Value::from(n),
                Err(_) => return Err(format!("{name} must be a whole number, not {cell:?}")),
            }
        } else if name == "tags" {
            Value::Array(
                cell.split('|')
                    .map(|t| Value::String(t.trim().to_string()))
                    .collect(),
            )
        } else if name == "redirectRules" {
            serde_json::from_str(cell)
                .map_err(|e| format!("redirectRules must be a JSON array: {e}"))?
        } else {
            Value::String(cell.to_string())
        };
        object.insert(name.clone(), value);
    }
    parse_json_value::<ShortenBody>(Value::Object(object)).map_err(|e| e.to_string())
}

/// The export's columns: the import's (without the password, never stored readable, and the
/// campaign, which belongs to the key) and what the link became.
const EXPORT_COLUMNS: &[&str] = &[
    "url",
    "customCode",
    "isProtected",
    "isExpiring",
    "expiresAt",
    "isRateLimited",
    "maxClicksPerMin",
    "redirectType",
    "forwardQuery",
    "tags",
    "redirectRules",
    "shortCode",
    "shortUrl",
    "clicks",
    "createdAt",
];
const EXPORT_PAGE: i64 = 500;

/// Every link of the caller as CSV, oldest first, streamed page by page: the memory it holds
/// is a page and a few chunks, whatever the number of links. Pages come from the read replica
/// when it may serve the caller.
pub async fn export(app: &App, ctx: &RequestCtx) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, ctx).await?;
    let scope = caller.scope();
    // The first page is read before answering, so that an unavailable database is a 503,
    // not a 200 that breaks off.
    let key_id = caller.key.id;
    let page_after = move |app: App, after: Option<(DateTime<Utc>, Uuid)>| async move {
        app.read_for(key_id, |store| async move {
            store.export_page(scope, after, EXPORT_PAGE).await
        })
        .await
    };
    let first = page_after(app.clone(), None).await?;
    let (tx, body) = chunks(4);
    let app = app.clone();
    tokio::spawn(async move {
        let mut page = first;
        let mut header = true;
        loop {
            let chunk = match csv_chunk(&app, &page, header) {
                Ok(bytes) => bytes,
                Err(e) => {
                    let _ = tx.send(Err(ChunkError(e))).await;
                    return;
                }
            };
            header = false;
            if tx.send(Ok(chunk)).await.is_err() {
                return; // the client went away
            }
            let Some(last) = page.last() else { return };
            if (page.len() as i64) < EXPORT_PAGE {
                return;
            }
            let after: (DateTime<Utc>, Uuid) = (last.created_at, last.id);
            page = match page_after(app.clone(), Some(after)).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "link export stopped");
                    let _ = tx.send(Err(ChunkError(e.to_string()))).await;
                    return;
                }
            };
        }
    });
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    resp.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"boltlink-links.csv\""),
    );
    Ok(resp)
}

fn csv_chunk(app: &App, links: &[LinkRecord], header: bool) -> Result<Bytes, String> {
    let mut out = csv::Writer::from_writer(Vec::with_capacity(links.len() * 160 + 200));
    if header {
        out.write_record(EXPORT_COLUMNS)
            .map_err(|e| e.to_string())?;
    }
    for l in links {
        let rules = serde_json::to_string(&l.redirect_rules.0).map_err(|e| e.to_string())?;
        out.write_record([
            l.original_url.as_str(),
            l.short_code.as_str(),
            bool_text(l.is_protected),
            bool_text(l.is_expiring),
            &l.expires_at.map(timestamp).unwrap_or_default(),
            bool_text(l.is_rate_limited),
            &l.max_clicks_per_min.to_string(),
            &l.redirect_type.to_string(),
            bool_text(l.forward_query),
            &l.tags.join("|"),
            if l.redirect_rules.0.is_empty() {
                ""
            } else {
                rules.as_str()
            },
            l.short_code.as_str(),
            &format!("{}/{}", app.config.http.public_base_url, l.short_code),
            &l.clicks.to_string(),
            &timestamp(l.created_at),
        ])
        .map_err(|e| e.to_string())?;
    }
    out.into_inner().map(Bytes::from).map_err(|e| e.to_string())
}

fn bool_text(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// The OpenAPI operations of these routes.
pub mod doc {
    use crate::http::openapi::*;

    /// `POST /api/links/bulk`
    pub fn bulk_create_links() -> Operation {
        op("bulkCreateLinks", "links", "Create up to 1000 links at once").keyed().reads_body()
            .description(Some("A JSON array of shorten bodies (as `POST /api/shorten`), or `text/csv` whose header row names shorten fields (`url` required; `tags` separated by `|`, `redirectRules` as JSON text; the export's extra columns are ignored), 1–1000 rows, at most 1 MiB. Rows are independent: a bad row fails alone, with the message `POST /api/shorten` would give; the others are created in one statement."))
            .request_body(Some(bulk_body()))
            .response("200", respond("Per row, in input order, the created link or the error.")
                .content("application/json", content(schema("BulkResult"), None))
                .headers(&RATE_LIMIT))
            .response("400", error("Not a JSON array or CSV, no or more than 1000 rows, an unknown CSV column, no `url` column.", "a bulk import takes 1 to 1000 rows, not 0"))
            .response("429", error("Over the per-client-IP limit of 10 per 5 minutes (`RATE_LIMIT_BULK_PER_5MIN`), or over the API key's own limit.", "Too many bulk imports from this IP, please try again later")
                .headers(&RATE_LIMITED))
            .build()
    }

    /// `GET /api/links/export`
    pub fn export_links() -> Operation {
        op("exportLinks", "links", "Every link of the caller as CSV")
            .keyed()
            .description(Some("Streamed, oldest first, with a header row: `url, customCode, isProtected, isExpiring, expiresAt, isRateLimited, maxClicksPerMin, redirectType, forwardQuery, tags, redirectRules, shortCode, shortUrl, clicks, createdAt`. Importing it into another key recreates the links, codes kept when free (`customCode` is the link's code). Passwords and campaigns are not exported: a protected link's row needs a `password` to be imported, and campaigns belong to a key."))
            .response("200", respond("The CSV file.")
                .content("text/csv", content(text(), None)))
            .build()
    }
}
