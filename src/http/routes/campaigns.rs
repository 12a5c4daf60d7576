//! Campaigns: owner-scoped CRUD and link assignment.

use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::links::link_response;
use super::{parse_id, timestamp};
use crate::app::App;
use crate::http::error::{json, ApiError, Body};
use crate::http::request::{authenticate, double_option, non_null, parse_json, RequestCtx, Text};
use crate::store::{AssignOutcome, CampaignRecord};

// A campaign as answered, and its OpenAPI schema `Campaign` (which has no description).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Campaign)]
pub struct CampaignView<'a> {
    #[schema(value_type = String, format = "uuid")]
    id: Uuid,
    name: &'a str,
    #[schema(required = true)]
    description: Option<&'a str>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(minimum = 0)]
    total_links: i64,
    #[schema(minimum = 0)]
    total_clicks: i64,
}

impl<'a> From<&'a CampaignRecord> for CampaignView<'a> {
    fn from(c: &'a CampaignRecord) -> Self {
        Self {
            id: c.id,
            name: &c.name,
            description: c.description.as_deref(),
            created_at: timestamp(c.created_at),
            total_links: c.total_links,
            total_clicks: c.total_clicks,
        }
    }
}

fn not_found() -> ApiError {
    ApiError::NotFound("Campaign not found".to_string())
}

fn parse_name(name: &str) -> Result<&str, ApiError> {
    let name = name.trim();
    if name.is_empty() {
        Err(ApiError::BadRequest(
            "Campaign name is required".to_string(),
        ))
    } else if name.chars().count() > 200 {
        Err(ApiError::BadRequest(
            "name must be at most 200 characters".to_string(),
        ))
    } else {
        Ok(name)
    }
}

fn parse_description(d: Option<&str>) -> Result<Option<&str>, ApiError> {
    match d {
        Some(d) if d.chars().count() > 2000 => Err(ApiError::BadRequest(
            "description must be at most 2000 characters".to_string(),
        )),
        other => Ok(other),
    }
}

#[derive(Deserialize)]
struct CreateBody {
    /// Required; absent, `null` or blank all answer 400 `Campaign name is required`.
    #[serde(default)]
    name: Option<Text>,
    #[serde(default)]
    description: Option<Text>,
}

pub async fn create(app: &App, ctx: &RequestCtx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, ctx).await?;
    let input: CreateBody = parse_json(body)?;
    let name = parse_name(input.name.as_ref().map_or("", Text::as_str))?;
    let description = parse_description(input.description.as_ref().map(Text::as_str))?;
    let c = app
        .store
        .create_campaign(caller.key.id, name, description)
        .await?;
    Ok(json(StatusCode::CREATED, &CampaignView::from(&c)))
}

pub async fn list(app: &App, ctx: &RequestCtx) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, ctx).await?;
    let scope = caller.scope();
    let campaigns = app
        .read_for(caller.key.id, |store| async move {
            store.list_campaigns(scope).await
        })
        .await?;
    let views: Vec<CampaignView<'_>> = campaigns.iter().map(CampaignView::from).collect();
    Ok(json(StatusCode::OK, &views))
}

pub async fn get(app: &App, ctx: &RequestCtx, id: &str) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, ctx).await?;
    let id = parse_id(id, "Campaign")?;
    let c = app
        .store
        .get_campaign(caller.scope(), id)
        .await?
        .ok_or_else(not_found)?;
    Ok(json(StatusCode::OK, &CampaignView::from(&c)))
}

#[derive(Deserialize)]
struct PatchBody {
    #[serde(default, deserialize_with = "non_null")]
    name: Option<Text>,
    #[serde(default, deserialize_with = "double_option")]
    description: Option<Option<Text>>,
}

pub async fn patch(
    app: &App,
    ctx: &RequestCtx,
    id: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, ctx).await?;
    let id = parse_id(id, "Campaign")?;
    let input: PatchBody = parse_json(body)?;
    let name = input
        .name
        .as_ref()
        .map(|n| parse_name(n.as_str()))
        .transpose()?;
    let description = match &input.description {
        None => None,
        Some(d) => Some(parse_description(d.as_ref().map(Text::as_str))?),
    };
    let c = app
        .store
        .update_campaign(caller.scope(), id, name, description)
        .await?
        .ok_or_else(not_found)?;
    Ok(json(StatusCode::OK, &CampaignView::from(&c)))
}

pub async fn delete(app: &App, ctx: &RequestCtx, id: &str) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, ctx).await?;
    let id = parse_id(id, "Campaign")?;
    if app.store.delete_campaign(caller.scope(), id).await? {
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({"success": true, "message": "Campaign deleted"}),
        ))
    } else {
        Err(not_found())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssignBody {
    campaign_id: Uuid,
    link_id: Uuid,
}

pub async fn assign_link(
    app: &App,
    ctx: &RequestCtx,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, ctx).await?;
    let input: AssignBody = parse_json(body)?;
    match app
        .store
        .assign_link_to_campaign(caller.scope(), input.campaign_id, input.link_id)
        .await?
    {
        AssignOutcome::Assigned(link) => Ok(link_response(app, StatusCode::OK, &link)),
        AssignOutcome::LinkNotFound => Err(ApiError::NotFound("Link not found".to_string())),
        AssignOutcome::CampaignNotFound => Err(not_found()),
    }
}

/// The OpenAPI operations of these routes, named by their entries in `routes!`.
pub mod doc {
    use crate::http::openapi::*;
    use serde_json::json;

    /// `GET /api/campaigns`
    pub fn list_campaigns() -> Operation {
        op("listCampaigns", "campaigns", "List the caller's campaigns")
            .keyed()
            .response(
                "200",
                respond("The caller's campaigns.")
                    .content("application/json", content(array_of("Campaign"), None)),
            )
            .build()
    }

    /// `POST /api/campaigns`
    pub fn create_campaign() -> Operation {
        op("createCampaign", "campaigns", "Create a campaign").keyed().reads_body()
            .request_body(Some(json_body("CampaignCreate", true)))
            .response("201", respond("The created campaign.")
                .content("application/json", content(schema("Campaign"), None)))
            .response("400", error("`name` missing, null, blank or over 200 characters, `description` over 2000 characters, text containing NUL, or malformed JSON.", "Campaign name is required"))
            .build()
    }

    /// `GET /api/campaigns/{id}`
    pub fn get_campaign() -> Operation {
        op(
            "getCampaign",
            "campaigns",
            "Get one of the caller's campaigns",
        )
        .keyed()
        .parameter(campaign_id_param())
        .response(
            "200",
            respond("The campaign.").content("application/json", content(schema("Campaign"), None)),
        )
        .response("404", shared("NotFound"))
        .build()
    }

    /// `PATCH /api/campaigns/{id}`
    pub fn update_campaign() -> Operation {
        op(
            "updateCampaign",
            "campaigns",
            "Change one of the caller's campaigns",
        )
        .keyed()
        .reads_body()
        .parameter(campaign_id_param())
        .request_body(Some(json_body("CampaignPatch", true)))
        .response(
            "200",
            respond("The updated campaign.")
                .content("application/json", content(schema("Campaign"), None)),
        )
        .response("400", shared("BadRequest"))
        .response("404", shared("NotFound"))
        .build()
    }

    /// `DELETE /api/campaigns/{id}`
    pub fn delete_campaign() -> Operation {
        op(
            "deleteCampaign",
            "campaigns",
            "Delete one of the caller's campaigns",
        )
        .keyed()
        .parameter(campaign_id_param())
        .response(
            "200",
            respond("Deleted; its links stay, unassigned.").content(
                "application/json",
                content(
                    schema("CampaignDeleted"),
                    Some(json!({"success": true, "message": "Campaign deleted"})),
                ),
            ),
        )
        .response("404", shared("NotFound"))
        .build()
    }

    /// `POST /api/campaigns/link`
    pub fn add_link_to_campaign() -> Operation {
        op(
            "addLinkToCampaign",
            "campaigns",
            "Put one of the caller's links into one of the caller's campaigns",
        )
        .keyed()
        .reads_body()
        .request_body(Some(json_body("CampaignLinkRequest", true)))
        .response(
            "200",
            respond("The updated link.").content("application/json", content(schema("Link"), None)),
        )
        .response("400", shared("BadRequest"))
        .response(
            "404",
            error(
                "The campaign or the link does not exist or belongs to another key.",
                "Campaign not found",
            ),
        )
        .build()
    }
}
