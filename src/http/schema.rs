//! The request and response bodies of the API as `utoipa` schemas: the `components/schemas` of
//! the OpenAPI document ([`super::openapi`]). Field docs become the schema descriptions.
//!
//! The link and campaign objects and the system health entries are the handlers' own types
//! (`LinkView`, `CampaignView`, `ServiceHealth`, registered here). The other types below
//! describe the wire format of bodies the handlers read or build with their own types and
//! `serde_json`; that both agree is checked by tests (`tests/it/ops.rs` validates real answers
//! against these schemas) and by the schemathesis run (`scripts/fuzz-api`).

use utoipa::openapi::ComponentsBuilder;
use utoipa::ToSchema;

/// Adds every body schema to the document's components.
pub fn register(builder: ComponentsBuilder) -> ComponentsBuilder {
    builder
        .schema_from::<Error>()
        .schema_from::<crate::http::routes::links::LinkView<'static>>()
        .schema_from::<ShortenRequest>()
        .schema_from::<RedirectRule>()
        .schema_from::<BulkResult>()
        .schema_from::<BulkRowResult>()
        .schema_from::<RuleCondition>()
        .schema_from::<RuleConditionType>()
        .schema_from::<LinkPatch>()
        .schema_from::<crate::http::routes::campaigns::CampaignView<'static>>()
        .schema_from::<CampaignCreate>()
        .schema_from::<CampaignPatch>()
        .schema_from::<CampaignLinkRequest>()
        .schema_from::<LinkDeleted>()
        .schema_from::<CampaignDeleted>()
        .schema_from::<Redirect>()
        .schema_from::<VerifyRequest>()
        .schema_from::<TopRegion>()
        .schema_from::<AnalyticsPoint>()
        .schema_from::<GlobalAnalyticsPoint>()
        .schema_from::<AnalyticsSummary>()
        .schema_from::<GlobalAnalyticsSummary>()
        .schema_from::<Analytics>()
        .schema_from::<GlobalAnalytics>()
        .schema_from::<StatsOverview>()
        .schema_from::<RateLimitStatus>()
        .schema_from::<Health>()
        .schema_from::<Ready>()
        .schema_from::<crate::http::routes::ops::ServiceHealth>()
        .schema_from::<DeveloperSettings>()
        .schema_from::<WebhookUpdateRequest>()
        .schema_from::<WebhookUpdateResponse>()
        .schema_from::<WebhookSecret>()
        .schema_from::<WebhookDelivery>()
        .schema_from::<MetadataRequest>()
        .schema_from::<MetadataResponse>()
        .schema_from::<GeneratedKey>()
        .schema_from::<Me>()
}

/// Every error body has this shape.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase", example = json!({"error": "Not found"}))]
pub struct Error {
    /// Message for a person.
    pub error: String,
}

/// `password` is read only when `isProtected` is true, `expiresAt` only when `isExpiring` is true; otherwise they are ignored. `null` is refused (400) for `isProtected`, `isExpiring`, `isRateLimited` and `maxClicksPerMin`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase", example = json!({"url": "https://example.com/page", "customCode": "my-page"}))]
pub struct ShortenRequest {
    /// Absolute http(s) URL, at most 2048 characters (also once normalised).
    #[schema(format = "uri", max_length = 2048)]
    pub url: String,
    /// 3–64 characters of `[A-Za-z0-9_-]` (surrounding whitespace is ignored), not reserved; taken → 409. Omitted, null or blank: an 8-character code is generated.
    #[schema(pattern = r"^\s*([A-Za-z0-9_-]{3,64})?\s*$", default = json!(null))]
    pub custom_code: Option<String>,
    /// Protect the link with `password`.
    #[schema(required = false, default = json!(false))]
    pub is_protected: bool,
    /// Required, 1–256 characters, when `isProtected` is true (else 400 `Password required for protected links`); ignored otherwise. Stored with a slow password hash, never returned.
    #[schema(default = json!(null))]
    pub password: Option<String>,
    #[schema(required = false, default = json!(false))]
    pub is_expiring: bool,
    /// RFC 3339 date-time. Required when `isExpiring` is true (else 400 `Expiration date required`) and then must be in the future (else 400 `Expiration date must be in the future`); ignored otherwise.
    #[schema(default = json!(null))]
    pub expires_at: Option<String>,
    #[schema(required = false, default = json!(false))]
    pub is_rate_limited: bool,
    #[schema(required = false, minimum = 1, maximum = 1000000, default = json!(100))]
    pub max_clicks_per_min: i64,
    /// A campaign of the caller's (else 400).
    #[schema(format = "uuid", default = json!(null))]
    pub campaign_id: Option<String>,
    /// The redirect's HTTP status. 301 and 308 are cached by browsers: repeat visits from one browser may not reach the server (and are then not counted).
    #[schema(required = false, value_type = i32, minimum = 301, maximum = 308, default = json!(302), examples(json!(301)))]
    pub redirect_type: u16,
    /// Add the visit's query string to the destination's; a parameter in both takes the visit's value.
    #[schema(required = false, default = json!(false))]
    pub forward_query: bool,
    /// Up to 10 tags, 1–32 characters of `[A-Za-z0-9_-]` each; stored lowercased, duplicates dropped.
    #[schema(required = false, max_items = 10, inline)]
    pub tags: Vec<Tag>,
    /// Up to 20 rules, tried in order; the first whose conditions all hold sends the visitor to its `url`, else `url` (the link's destination) is used. Password, expiry and the per-link cap apply first.
    #[schema(required = false, max_items = 20)]
    pub redirect_rules: Vec<RedirectRule>,
}

/// Any subset of the fields; absent fields stay as they are. Same validation as shorten. `null` is refused (400) for `originalUrl`, `isProtected`, `isExpiring`, `isRateLimited` and `maxClicksPerMin`; for `title`, `description`, `expiresAt` and `campaignId` it clears the field.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase", example = json!({"title": "Launch page", "isRateLimited": true, "maxClicksPerMin": 50}))]
pub struct LinkPatch {
    /// Absolute http(s) URL, at most 2048 characters.
    #[schema(required = false, format = "uri", max_length = 2048, examples(json!("https://example.com/new-page")))]
    pub original_url: String,
    /// At most 500 characters, no NUL; null clears it.
    #[schema(pattern = r"^[^\u0000]*$", max_length = 500)]
    pub title: Option<String>,
    /// At most 2000 characters, no NUL; null clears it.
    #[schema(pattern = r"^[^\u0000]*$", max_length = 2000)]
    pub description: Option<String>,
    /// true: protect the link (needs `password`); false: remove the protection (`password` is then ignored).
    #[schema(required = false)]
    pub is_protected: bool,
    /// 1–256 characters: the new password; it also protects the link when `isProtected` is absent. Ignored when `isProtected` is false; null or empty changes nothing (but `isProtected: true` needs one).
    pub password: Option<String>,
    /// true: needs a future `expiresAt`; false: remove the expiry (`expiresAt` is then ignored).
    #[schema(required = false)]
    pub is_expiring: bool,
    /// RFC 3339 date-time in the future: sets the expiry (also when `isExpiring` is absent). With `isExpiring` absent, null or blank removes the expiry. Ignored when `isExpiring` is false.
    pub expires_at: Option<String>,
    #[schema(required = false)]
    pub is_rate_limited: bool,
    #[schema(required = false, minimum = 1, maximum = 1000000)]
    pub max_clicks_per_min: i64,
    /// A campaign of the caller's (else 400); null takes the link out of its campaign.
    #[schema(format = "uuid", examples(json!(null)))]
    pub campaign_id: Option<String>,
    /// 301, 302, 307 or 308.
    #[schema(required = false, value_type = i32, minimum = 301, maximum = 308, examples(json!(308)))]
    pub redirect_type: u16,
    #[schema(required = false)]
    pub forward_query: bool,
    /// Replaces the tags (`[]` removes them all).
    #[schema(required = false, max_items = 10, inline)]
    pub tags: Vec<Tag>,
    /// Replaces the rules (`[]` removes them all).
    #[schema(required = false, max_items = 20)]
    pub redirect_rules: Vec<RedirectRule>,
}

/// 1–32 characters of `[A-Za-z0-9_-]`, stored lowercased.
#[derive(ToSchema)]
#[schema(value_type = String, pattern = r"^[A-Za-z0-9_-]{1,32}$", examples(json!("launch")))]
pub struct Tag(pub String);

/// When every condition holds, the visitor is sent to `url`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase", example = json!({"conditions": [{"type": "device", "value": "android"}, {"type": "country", "value": "DE"}], "url": "https://example.com/de/android"}))]
pub struct RedirectRule {
    /// 1–10 conditions, all of which must hold.
    #[schema(min_items = 1, max_items = 10)]
    pub conditions: Vec<RuleCondition>,
    /// Absolute http(s) URL, at most 2048 characters, validated like `originalUrl`.
    #[schema(format = "uri", max_length = 2048)]
    pub url: String,
}

/// One condition of a redirect rule. `value` by `type`: `device` — `mobile` (a phone), `tablet`, `desktop`, `ios` or `android`, from the User-Agent; `country` — an ISO 3166-1 alpha-2 code, from `cf-ipcountry` or the GeoIP database (`GEOIP_DB`); `language` — a primary language subtag (`de`) listed with q > 0 in `Accept-Language`; `query` — `key=value` present in the visit's query string (compared after percent-decoding).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase", example = json!({"type": "language", "value": "de"}))]
pub struct RuleCondition {
    #[schema(rename = "type")]
    pub kind: RuleConditionType,
    pub value: String,
}

#[derive(ToSchema)]
pub enum RuleConditionType {
    #[schema(rename = "device")]
    Device,
    #[schema(rename = "country")]
    Country,
    #[schema(rename = "language")]
    Language,
    #[schema(rename = "query")]
    Query,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase", example = json!({"name": "Spring launch", "description": "Links for the spring campaign"}))]
pub struct CampaignCreate {
    /// Required (missing, null or blank → 400 `Campaign name is required`); at most 200 characters once surrounding whitespace is removed (it is not stored), no NUL.
    #[schema(
        pattern = r"^\s*[^\s\u0000](?:[^\u0000]{0,198}[^\s\u0000])?\s*$",
        min_length = 1
    )]
    pub name: String,
    /// At most 2000 characters, no NUL.
    #[schema(pattern = r"^[^\u0000]*$", max_length = 2000)]
    pub description: Option<String>,
}

/// Any subset of the fields; absent fields stay as they are.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct CampaignPatch {
    /// Not null, not blank, at most 200 characters once surrounding whitespace is removed (it is not stored), no NUL.
    #[schema(
        required = false,
        pattern = r"^\s*[^\s\u0000](?:[^\u0000]{0,198}[^\s\u0000])?\s*$",
        min_length = 1
    )]
    pub name: String,
    /// At most 2000 characters, no NUL; null clears it.
    #[schema(pattern = r"^[^\u0000]*$", max_length = 2000)]
    pub description: Option<String>,
}

/// Both must belong to the caller.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct CampaignLinkRequest {
    #[schema(format = "uuid")]
    pub campaign_id: String,
    #[schema(format = "uuid")]
    pub link_id: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase", example = json!({"message": "Link deleted"}))]
pub struct LinkDeleted {
    pub message: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase", example = json!({"success": true, "message": "Campaign deleted"}))]
pub struct CampaignDeleted {
    pub success: bool,
    pub message: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase", example = json!({"redirect": "https://example.com/page"}))]
pub struct Redirect {
    /// The link's originalUrl.
    #[schema(format = "uri")]
    pub redirect: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase", example = json!({"password": "s3cret"}))]
pub struct VerifyRequest {
    /// Needed only for a protected link (missing, null or empty → 400 `Password required`); an unprotected link answers 200 without it.
    pub password: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct TopRegion {
    /// Country code from `cf-ipcountry`, or `UNKNOWN`.
    pub region: String,
    #[schema(minimum = 0)]
    pub clicks: i64,
    /// Share of clicks, one decimal, as a string.
    #[schema(pattern = r"^\d{1,3}\.\d$", examples(json!("12.3")))]
    pub percentage: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct AnalyticsPoint {
    /// Day, `YYYY-MM-DD`.
    #[schema(format = Date, examples(json!("2026-11-23")))]
    pub timestamp: String,
    #[schema(minimum = 0)]
    pub clicks: i64,
    /// The day's top region; null when the day had no clicks (only gated visits).
    #[schema(required = true)]
    pub region: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct GlobalAnalyticsPoint {
    /// Day, `YYYY-MM-DD`.
    #[schema(format = Date)]
    pub timestamp: String,
    #[schema(minimum = 0)]
    pub clicks: i64,
    /// The day's top region; null on a day without clicks.
    #[schema(required = true)]
    pub region: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct AnalyticsSummary {
    #[schema(minimum = 0)]
    pub total_clicks: i64,
    /// Region with the most clicks; null when there are none.
    #[schema(required = true)]
    pub top_region: Option<String>,
    /// Device/browser class derived from the user agent (not the raw string).
    #[schema(required = true)]
    pub top_device: Option<String>,
    /// Measured mean server-side redirect time in milliseconds (two decimals); 0 when there are no clicks.
    #[schema(minimum = 0)]
    pub avg_latency: f64,
    /// clicks / (clicks + gated visits) in percent, one decimal; 0 when there are none.
    #[schema(minimum = 0, maximum = 100)]
    pub conversion_rate: f64,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct GlobalAnalyticsSummary {
    #[schema(minimum = 0)]
    pub total_clicks: i64,
    #[schema(minimum = 0)]
    pub total_links: i64,
    /// Region with the most clicks; null when there are none.
    #[schema(required = true)]
    pub top_region: Option<String>,
    /// Device/browser class derived from the user agent (not the raw string).
    #[schema(required = true)]
    pub top_device: Option<String>,
    /// Measured mean server-side redirect time in milliseconds (two decimals); 0 when there are no clicks.
    #[schema(minimum = 0)]
    pub avg_latency: f64,
    /// clicks / (clicks + gated visits) in percent, one decimal; 0 when there are none.
    #[schema(minimum = 0, maximum = 100)]
    pub conversion_rate: f64,
}

/// Analytics of one of the caller's links, answered from rollups.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Analytics {
    pub summary: AnalyticsSummary,
    pub points: Vec<AnalyticsPoint>,
    pub top_regions: Vec<TopRegion>,
    pub short_code: String,
    #[schema(format = "uri")]
    pub original_url: String,
    #[schema(required = true)]
    pub title: Option<String>,
    #[schema(required = true)]
    pub favicon: Option<String>,
}

/// Analytics over all of the caller's links.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct GlobalAnalytics {
    pub summary: GlobalAnalyticsSummary,
    /// Last 7 days, one per day, zeros included.
    #[schema(min_items = 7, max_items = 7)]
    pub points: Vec<GlobalAnalyticsPoint>,
    #[schema(max_items = 5)]
    pub top_regions: Vec<TopRegion>,
    #[schema(format = DateTime)]
    pub last_updated: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct StatsOverviewTrend {
    /// Percent change of clicks, last 7 days against the 7 before, one decimal (100 when growing from zero).
    pub clicks: f64,
    /// Percent change of links that received clicks, last 7 days against the 7 before, one decimal (100 when growing from zero).
    pub active: f64,
}

#[derive(ToSchema)]
pub enum StatsOverviewPointsItemDay {
    #[schema(rename = "Mon")]
    Mon,
    #[schema(rename = "Tue")]
    Tue,
    #[schema(rename = "Wed")]
    Wed,
    #[schema(rename = "Thu")]
    Thu,
    #[schema(rename = "Fri")]
    Fri,
    #[schema(rename = "Sat")]
    Sat,
    #[schema(rename = "Sun")]
    Sun,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct StatsOverviewPointsItem {
    #[schema(inline)]
    pub day: StatsOverviewPointsItemDay,
    #[schema(minimum = 0)]
    pub clicks: i64,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct StatsOverview {
    #[schema(minimum = 0)]
    pub total_clicks: i64,
    #[schema(minimum = 0)]
    pub active_links: i64,
    #[schema(required = true)]
    pub top_region: Option<String>,
    #[schema(inline)]
    pub trend: StatsOverviewTrend,
    /// The last 7 days, today last, zeros included.
    #[schema(inline, min_items = 7, max_items = 7)]
    pub points: Vec<StatsOverviewPointsItem>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct RateLimitStatus {
    pub short_code: String,
    pub is_rate_limited: bool,
    #[schema(minimum = 1)]
    pub max_clicks_per_min: i64,
    #[schema(minimum = 0)]
    pub clicks_in_last_minute: i64,
    #[schema(required = true, minimum = 0)]
    pub remaining_clicks: Option<i64>,
    pub is_currently_limited: bool,
    /// When the current 60 s window frees up.
    #[schema(required = true, format = DateTime)]
    pub reset_time: Option<String>,
}

#[derive(ToSchema)]
pub enum HealthStatus {
    #[schema(rename = "healthy")]
    Healthy,
    #[schema(rename = "unhealthy")]
    Unhealthy,
}

#[derive(ToSchema)]
pub enum HealthChecksDatabase {
    #[schema(rename = "ok")]
    Ok,
    #[schema(rename = "failing")]
    Failing,
}

#[derive(ToSchema)]
pub enum HealthChecksRedis {
    #[schema(rename = "ok")]
    Ok,
    #[schema(rename = "failing")]
    Failing,
}

#[derive(ToSchema)]
pub enum HealthChecksDatabaseReplica {
    #[schema(rename = "ok")]
    Ok,
    #[schema(rename = "lagging")]
    Lagging,
    #[schema(rename = "failing")]
    Failing,
    #[schema(rename = "unknown")]
    Unknown,
}

/// `ok` per dependency, `failing` for a dependency that is down (its failure is in `errors`).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct HealthChecks {
    #[schema(inline)]
    pub database: HealthChecksDatabase,
    #[schema(inline)]
    pub redis: HealthChecksRedis,
    /// Only with `DATABASE_READ_URL` set. The replica is never needed: while it is `lagging`
    /// (further behind than `DATABASE_READ_MAX_LAG_MS`), `failing` or `unknown` (not checked
    /// yet), reads go to the primary and the status stays `healthy`; `errors` says why.
    #[schema(inline, required = false)]
    pub database_replica: HealthChecksDatabaseReplica,
}

/// Present only when a check fails (or the read replica is not `ok`): what went wrong, per
/// dependency.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct HealthErrors {
    #[schema(required = false)]
    pub database: String,
    #[schema(required = false)]
    pub redis: String,
    #[schema(required = false)]
    pub database_replica: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase", example = json!({"status": "healthy", "timestamp": "2026-11-23T08:00:00.000Z", "uptime": 3600, "service": "boltlink-api", "version": "0.1.0", "instance": "api-1", "checks": {"database": "ok", "redis": "ok"}}))]
pub struct Health {
    #[schema(inline)]
    pub status: HealthStatus,
    #[schema(format = DateTime)]
    pub timestamp: String,
    /// Process uptime in whole seconds.
    #[schema(minimum = 0)]
    pub uptime: f64,
    pub service: String,
    pub version: String,
    /// Name of the instance that answered (`BOLTLINK_INSTANCE`, by default `pid<N>`).
    #[schema(required = false)]
    pub instance: String,
    #[schema(inline)]
    pub checks: HealthChecks,
    #[schema(inline, required = false)]
    pub errors: HealthErrors,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase", example = json!({"ready": true}))]
pub struct Ready {
    pub ready: bool,
    /// Present when not ready: PostgreSQL unreachable (`database: ...`) or `shutting down`.
    #[schema(required = false)]
    pub error: String,
}

#[derive(ToSchema)]
pub enum SystemHealthEntryStatus {
    #[schema(rename = "healthy")]
    Healthy,
    #[schema(rename = "warning")]
    Warning,
    #[schema(rename = "error")]
    Error,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct DeveloperSettings {
    /// First 10 characters of the key followed by `...`.
    #[schema(pattern = r"^[0-9a-f]{10}\.\.\.$")]
    pub api_key: String,
    #[schema(required = true, format = "uri")]
    pub webhook_url: Option<String>,
    /// Signs webhook deliveries (`BoltLink-Signature`); made when a webhook URL is first set, null before.
    #[schema(required = true, pattern = r"^whsec_[0-9a-f]{64}$")]
    pub webhook_secret: Option<String>,
    #[schema(minimum = 0)]
    pub rate_limit_per_min: i64,
    #[schema(minimum = 0)]
    pub rate_limit_per_hour: i64,
    pub logs_enabled: bool,
    pub analytics_level: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase", example = json!({"url": "https://hooks.example.com/boltlink"}))]
pub struct WebhookUpdateRequest {
    /// An absolute http(s) URL of at most 2048 characters sets the webhook; `null` or `""` (or only whitespace) removes it.
    pub url: serde_json::Value,
}

#[derive(ToSchema)]
pub enum WebhookUpdateResponseMessage {
    #[schema(rename = "Webhook URL saved")]
    WebhookURLSaved,
    #[schema(rename = "Webhook URL removed")]
    WebhookURLRemoved,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct WebhookUpdateResponse {
    pub success: bool,
    #[schema(inline)]
    pub message: WebhookUpdateResponseMessage,
    /// The stored URL (normalised), or null when removed.
    #[schema(required = true, format = "uri")]
    pub webhook_url: Option<String>,
    /// The key's signing secret (made with the first URL; kept when the URL changes or is removed).
    #[schema(required = true, pattern = r"^whsec_[0-9a-f]{64}$")]
    pub webhook_secret: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase", example = json!({"webhookSecret": "whsec_4f9c2d0b6a1e8f7d3c5b9a0e1f2d3c4b5a6978685746352413021f0e1d2c3b4a"}))]
pub struct WebhookSecret {
    #[schema(pattern = r"^whsec_[0-9a-f]{64}$")]
    pub webhook_secret: String,
}

#[derive(ToSchema)]
pub enum WebhookEventType {
    #[schema(rename = "link.created")]
    LinkCreated,
    #[schema(rename = "link.updated")]
    LinkUpdated,
    #[schema(rename = "link.deleted")]
    LinkDeleted,
    #[schema(rename = "link.clicked")]
    LinkClicked,
}

#[derive(ToSchema)]
pub enum WebhookDeliveryStatus {
    #[schema(rename = "pending")]
    Pending,
    #[schema(rename = "delivered")]
    Delivered,
    #[schema(rename = "failed")]
    Failed,
}

/// One webhook event and where its delivery stands.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase", example = json!({"eventId": "0193a0c4-5b6e-7f80-9a1b-2c3d4e5f6a7b", "type": "link.created", "status": "delivered", "attempts": 1, "lastStatusCode": 200, "lastError": null, "nextAttemptAt": null, "deliveredAt": "2026-12-06T08:00:01.250Z"}))]
pub struct WebhookDelivery {
    /// Also sent as `BoltLink-Event-Id`, the same on every attempt.
    #[schema(format = "uuid")]
    pub event_id: String,
    #[schema(inline, rename = "type")]
    pub kind: WebhookEventType,
    #[schema(inline)]
    pub status: WebhookDeliveryStatus,
    #[schema(minimum = 0)]
    pub attempts: i64,
    /// The HTTP status of the last answer; null if there was none (network error, timeout).
    #[schema(required = true)]
    pub last_status_code: Option<i64>,
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// When the next attempt is due; null unless pending.
    #[schema(required = true, format = DateTime)]
    pub next_attempt_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub delivered_at: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase", example = json!({"url": "https://example.com/page"}))]
pub struct MetadataRequest {
    #[schema(format = "uri", max_length = 2048)]
    pub url: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct MetadataResponse {
    #[schema(required = true)]
    pub title: Option<String>,
    #[schema(required = true)]
    pub description: Option<String>,
    #[schema(required = true)]
    pub favicon: Option<String>,
    #[schema(format = "uri")]
    pub url: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct GeneratedKey {
    /// 32 random bytes, hex-encoded. Shown once; only its SHA-256 is stored.
    #[schema(pattern = r"^[0-9a-f]{64}$")]
    pub api_key: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Me {
    /// Id of the API key.
    #[schema(format = "uuid")]
    pub id: String,
    #[schema(required = true)]
    pub email: Option<String>,
    #[schema(required = true)]
    pub name: Option<String>,
}

/// What a bulk import did, row by row.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase", example = json!({"created": 1, "failed": 1, "results": [
    {"index": 0, "link": {"id": "0b8f3c1e-6a2d-4b7e-9f10-2c3d4e5f6a7b", "shortCode": "aB3_x9Qz"}},
    {"index": 1, "error": "Custom code already in use"}]}))]
pub struct BulkResult {
    #[schema(minimum = 0)]
    pub created: i64,
    #[schema(minimum = 0)]
    pub failed: i64,
    /// One entry per input row, in input order.
    pub results: Vec<BulkRowResult>,
}

/// A row of a bulk import: `index` and either `link` (created) or `error`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct BulkRowResult {
    /// The row's position in the input (0-based; the CSV header row is not counted).
    #[schema(minimum = 0)]
    pub index: i64,
    #[schema(value_type = crate::http::routes::links::LinkView<'static>, required = false)]
    pub link: Option<String>,
    /// Why the row was not created (the message `POST /api/shorten` would give).
    #[schema(required = false)]
    pub error: Option<String>,
}
