//! The OpenAPI 3.1 document of the API (`GET /api/openapi.json`), generated with `utoipa` from
//! the route table: one path item per [`ROUTES`] entry, one operation per declared method,
//! taken from the `doc` function the entry names (next to its handler, `routes/<area>.rs`).
//! Schemas are the `ToSchema` types of [`super::schema`].
//!
//! A committed snapshot, `docs/openapi.json`, is compared with the served document by a test
//! (`tests/it/ops.rs`), so a change to the document is always visible in review; refresh it with
//! `BOLTLINK_BLESS_OPENAPI=1 cargo test --test it openapi`.

use std::sync::OnceLock;

use serde_json::{json, Value};
use utoipa::openapi::path::{
    OperationBuilder, Parameter, ParameterBuilder, ParameterIn, PathsBuilder,
};
use utoipa::openapi::request_body::{RequestBody, RequestBodyBuilder};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    Components, ComponentsBuilder, Content, ContentBuilder, Header, HeaderBuilder, InfoBuilder,
    OpenApi, OpenApiBuilder, Ref, RefOr, Required, Response, ResponseBuilder,
};

pub use utoipa::openapi::path::Operation;

use super::schema;
use super::ROUTES;

/// The document's introduction: conventions, authentication, rate limits.
const INTRODUCTION: &str = include_str!("openapi.md");

/// Tags, in the order the document lists them.
const TAGS: [(&str, &str); 6] = [
    (
        "redirect",
        "Following short links and unlocking protected ones.",
    ),
    ("links", "Creating and managing the caller's links."),
    (
        "analytics",
        "Click analytics of the caller's links, from rollups.",
    ),
    ("campaigns", "Grouping the caller's links into campaigns."),
    ("keys", "API keys, account and developer settings."),
    (
        "operations",
        "Health, readiness, metrics and this document.",
    ),
];

/// The served document, pretty-printed with sorted keys (stable from build to build).
pub fn document_json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut text = serde_json::to_string_pretty(&document()).unwrap_or_default();
        text.push('\n');
        text
    })
}

/// The document as JSON: what `utoipa` builds, refined by `refine`.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(openapi()).unwrap_or(Value::Null);
    refine(&mut doc);
    doc
}

/// The document as `utoipa` builds it.
pub fn openapi() -> OpenApi {
    let mut paths = PathsBuilder::new().build();
    for route in ROUTES {
        for operation in route.operations {
            paths.add_path_operation(
                route.path,
                vec![http_method(&operation.method)],
                (operation.doc)(),
            );
        }
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("BoltLink API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(INTRODUCTION)),
        )
        .tags(Some(TAGS.map(|(name, description)| {
            TagBuilder::new()
                .name(name)
                .description(Some(description))
                .build()
        })))
        .paths(paths)
        .components(Some(components()))
        .build()
}

fn http_method(method: &http::Method) -> utoipa::openapi::HttpMethod {
    use utoipa::openapi::HttpMethod;
    match *method {
        http::Method::POST => HttpMethod::Post,
        http::Method::PUT => HttpMethod::Put,
        http::Method::PATCH => HttpMethod::Patch,
        http::Method::DELETE => HttpMethod::Delete,
        http::Method::HEAD => HttpMethod::Head,
        http::Method::OPTIONS => HttpMethod::Options,
        http::Method::TRACE => HttpMethod::Trace,
        _ => HttpMethod::Get,
    }
}

fn components() -> Components {
    let api_key = SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
        "x-api-key",
        "64 hex characters from `POST /api/generate-key` (or `boltlinkctl keys create`). Each key has its own request limits on every route that needs it: 600 per minute and 20 000 per hour by default (`RATE_LIMIT_KEY_PER_MIN`, `RATE_LIMIT_KEY_PER_HOUR`, stored on the key when it is made); over them → 429 with `Retry-After` and `RateLimit-*` headers.",
    )));
    let shared_responses = [
        ("BadRequest", error("Bad input: malformed JSON, a wrong field type or an invalid value; the message names the field.", "limit must be a whole number from 1 to 500")),
        ("Unauthorized", error("The `x-api-key` header is missing.", "API Key missing")),
        ("Forbidden", error("The API key is unknown or revoked.", "Invalid API Key")),
        ("NotFound", error("Not found, or owned by another key (answered as if it did not exist).", "Link not found")),
        ("Conflict", error("The custom code is already taken.", "Custom code already in use")),
        ("RequestTimeout", error("The request body did not arrive whole within `HTTP_BODY_TIMEOUT_MS` (10 s by default).", "Request body not received within 10 s")),
        ("PayloadTooLarge", error("The request body exceeds 1 MiB (by its `Content-Length`, or as it arrives).", "Request body too large (limit 1 MiB)")),
        ("KeyRateLimited", error("Over the API key's own request limit: `RATE_LIMIT_KEY_PER_MIN` per minute and `RATE_LIMIT_KEY_PER_HOUR` per hour (600 and 20 000 by default, stored on the key when it is made).", "Too many requests for this API key, please slow down")
                .headers(&RATE_LIMITED)),
        ("ServiceUnavailable", error("PostgreSQL is unavailable.", "Database unavailable, please retry shortly")
                .header("Retry-After", header("Retry-After"))),
        ("PasswordChecksBusy", error("Too many password checks in progress in this API process (password hashing is bounded by `PASSWORD_HASH_CONCURRENCY`), or PostgreSQL is unavailable. Retry after `Retry-After` (1 s).", "Too many password checks in progress, please retry in a moment")
                .header("Retry-After", header("Retry-After"))),
    ];
    let mut builder = ComponentsBuilder::new().security_scheme("apiKey", api_key);
    for (name, response) in shared_responses {
        builder = builder.response(name, response);
    }
    builder = schema::register(builder);
    builder.build()
}

/// What `utoipa` cannot express, added to the built document: JSON Schema keywords its
/// derive has no attribute for (`const`, `anyOf`, the `if`/`then` conditionals that tie
/// `password` to `isProtected` and `expiresAt` to `isExpiring`), and `required: true` on the
/// response headers the server always sends (its `Header` has no `required`).
fn refine(doc: &mut Value) {
    for (pointer, extra) in keywords() {
        if let (Some(Value::Object(target)), Value::Object(extra)) =
            (doc.pointer_mut(pointer), extra)
        {
            target.extend(extra);
        }
    }
    let Some(Value::Object(paths)) = doc.pointer_mut("/paths") else {
        return;
    };
    for item in paths.values_mut() {
        for operation in item
            .as_object_mut()
            .into_iter()
            .flat_map(|i| i.values_mut())
        {
            for response in operation["responses"]
                .as_object_mut()
                .into_iter()
                .flat_map(|r| r.values_mut())
            {
                mark_required_headers(response);
            }
        }
    }
    if let Some(Value::Object(responses)) = doc.pointer_mut("/components/responses") {
        responses.values_mut().for_each(mark_required_headers);
    }
}

/// JSON Schema keywords added to the schema at each JSON pointer (see [`refine`]).
fn keywords() -> Vec<(&'static str, Value)> {
    vec![
        (
            "/components/schemas/ShortenRequest",
            json!({
                "allOf": [
                    {
                        "if": {
                            "properties": {
                                "isProtected": {
                                    "const": true
                                }
                            },
                            "required": [
                                "isProtected"
                            ]
                        },
                        "then": {
                            "properties": {
                                "password": {
                                    "type": "string",
                                    "minLength": 1,
                                    "maxLength": 256
                                }
                            },
                            "required": [
                                "password"
                            ]
                        }
                    },
                    {
                        "if": {
                            "properties": {
                                "isExpiring": {
                                    "const": true
                                }
                            },
                            "required": [
                                "isExpiring"
                            ]
                        },
                        "then": {
                            "properties": {
                                "expiresAt": {
                                    "type": "string",
                                    "format": "date-time"
                                }
                            },
                            "required": [
                                "expiresAt"
                            ]
                        }
                    }
                ]
            }),
        ),
        (
            "/components/schemas/LinkPatch",
            json!({
                "allOf": [
                    {
                        "if": {
                            "properties": {
                                "isProtected": {
                                    "const": true
                                }
                            },
                            "required": [
                                "isProtected"
                            ]
                        },
                        "then": {
                            "properties": {
                                "password": {
                                    "type": "string",
                                    "minLength": 1
                                }
                            },
                            "required": [
                                "password"
                            ]
                        }
                    },
                    {
                        "if": {
                            "properties": {
                                "isProtected": {
                                    "const": false
                                }
                            },
                            "required": [
                                "isProtected"
                            ]
                        },
                        "else": {
                            "properties": {
                                "password": {
                                    "maxLength": 256
                                }
                            }
                        }
                    },
                    {
                        "if": {
                            "properties": {
                                "isExpiring": {
                                    "const": true
                                }
                            },
                            "required": [
                                "isExpiring"
                            ]
                        },
                        "then": {
                            "properties": {
                                "expiresAt": {
                                    "type": "string",
                                    "format": "date-time"
                                }
                            },
                            "required": [
                                "expiresAt"
                            ]
                        }
                    },
                    {
                        "if": {
                            "required": [
                                "isExpiring"
                            ]
                        },
                        "else": {
                            "properties": {
                                "expiresAt": {
                                    "anyOf": [
                                        {
                                            "type": "null"
                                        },
                                        {
                                            "type": "string",
                                            "pattern": "^\\s*$"
                                        },
                                        {
                                            "type": "string",
                                            "format": "date-time"
                                        }
                                    ]
                                }
                            }
                        }
                    }
                ]
            }),
        ),
        (
            "/components/schemas/ShortenRequest/properties/redirectType",
            json!({"enum": [301, 302, 307, 308]}),
        ),
        (
            "/components/schemas/LinkPatch/properties/redirectType",
            json!({"enum": [301, 302, 307, 308]}),
        ),
        (
            "/components/schemas/Link/properties/redirectType",
            json!({"enum": [301, 302, 307, 308]}),
        ),
        (
            "/components/schemas/LinkDeleted/properties/message",
            json!({"const": "Link deleted"}),
        ),
        (
            "/components/schemas/CampaignDeleted/properties/success",
            json!({"const": true}),
        ),
        (
            "/components/schemas/CampaignDeleted/properties/message",
            json!({"const": "Campaign deleted"}),
        ),
        (
            "/components/schemas/Health/properties/service",
            json!({"const": "boltlink-api"}),
        ),
        (
            "/components/schemas/WebhookUpdateRequest/properties/url",
            json!({
                "anyOf": [
                    {
                        "type": "string",
                        "format": "uri",
                        "maxLength": 2048
                    },
                    {
                        "type": "string",
                        "pattern": "^\\s*$"
                    },
                    {
                        "type": "null"
                    }
                ]
            }),
        ),
        (
            "/components/schemas/WebhookUpdateResponse/properties/success",
            json!({"const": true}),
        ),
    ]
}

/// Headers the server always sends with the response that declares them.
const ALWAYS_SENT: [&str; 6] = [
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "Location",
    "X-Total-Count",
];

fn mark_required_headers(response: &mut Value) {
    if let Some(Value::Object(headers)) = response.get_mut("headers") {
        for (name, header) in headers.iter_mut() {
            if ALWAYS_SENT.contains(&name.as_str()) {
                header["required"] = Value::Bool(true);
            }
        }
    }
}

// ---- building blocks of the operations (`routes/<area>.rs`, `mod doc`) ----------------------

/// An operation with its id, tag and summary.
pub fn op(operation_id: &str, tag: &str, summary: &str) -> OperationBuilder {
    OperationBuilder::new()
        .operation_id(Some(operation_id))
        .tag(tag)
        .summary(Some(summary))
}

/// The `apiKey` security requirement.
pub fn api_key() -> SecurityRequirement {
    SecurityRequirement::new("apiKey", Vec::<String>::new())
}

/// A JSON request body of the named schema.
pub fn json_body(schema_name: &str, required: bool) -> RequestBody {
    RequestBodyBuilder::new()
        .required(Some(if required {
            Required::True
        } else {
            Required::False
        }))
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(schema(schema_name)))
                .build(),
        )
        .build()
}

/// The bulk import's body: a JSON array of shorten bodies (1–1000), or CSV text.
pub fn bulk_body() -> RequestBody {
    RequestBodyBuilder::new()
        .required(Some(Required::True))
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(
                    // Items are not constrained to `ShortenRequest`: a row that is not one
                    // fails alone (200, with its error in `results`), as the contract says.
                    ArrayBuilder::new()
                        .items(ObjectBuilder::new().schema_type(utoipa::openapi::schema::SchemaType::AnyValue).description(Some(
                            "A shorten body (see `ShortenRequest`); a row that is not a valid one fails alone.",
                        )))
                        .min_items(Some(1))
                        .max_items(Some(1000))
                        .build(),
                ))
                .build(),
        )
        .content(
            "text/csv",
            ContentBuilder::new().schema(Some(text())).build(),
        )
        .build()
}

/// A response with its description; content and headers are added with the builder.
pub fn respond(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description)
}

/// An error response: the `Error` schema with an example message.
pub fn error(description: &str, example: &str) -> ResponseBuilder {
    respond(description).content(
        "application/json",
        content(schema("Error"), Some(json!({ "error": example }))),
    )
}

/// The headers of a refusal by a rate limit.
pub const RATE_LIMITED: [&str; 4] = [
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
];

/// The headers of an answer that counted against a rate limit.
pub const RATE_LIMIT: [&str; 3] = ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"];

/// Adds response headers of the API by name (see [`header`]).
pub trait WithHeaders {
    fn headers(self, names: &[&str]) -> Self;
}

impl WithHeaders for ResponseBuilder {
    fn headers(self, names: &[&str]) -> Self {
        names
            .iter()
            .fold(self, |builder, name| builder.header(*name, header(name)))
    }
}

/// The answers whole kinds of routes share, added where an operation is declared.
pub trait Answers {
    /// A route that needs an API key: the `apiKey` requirement and its 401, 403, the per-key
    /// 429 and 503. An operation that answers 429 or 503 its own way declares that response
    /// after this call, which replaces the shared one.
    fn keyed(self) -> Self;
    /// A route that reads a request body: 408 when it does not arrive in time, 413 when it is
    /// too large.
    fn reads_body(self) -> Self;
}

impl Answers for OperationBuilder {
    fn keyed(self) -> Self {
        self.security(api_key())
            .response("401", shared("Unauthorized"))
            .response("403", shared("Forbidden"))
            .response("429", shared("KeyRateLimited"))
            .response("503", shared("ServiceUnavailable"))
    }

    fn reads_body(self) -> Self {
        self.response("408", shared("RequestTimeout"))
            .response("413", shared("PayloadTooLarge"))
    }
}

/// One of the shared responses of `components/responses`.
pub fn shared(name: &str) -> RefOr<Response> {
    RefOr::Ref(Ref::from_response_name(name))
}

/// Content of a response: its schema and an example.
pub fn content(schema: impl Into<RefOr<Schema>>, example: Option<Value>) -> Content {
    ContentBuilder::new()
        .schema(Some(schema))
        .example(example)
        .build()
}

/// A reference to the named schema.
pub fn schema(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

/// An array of the named schema.
pub fn array_of(name: &str) -> Schema {
    ArrayBuilder::new().items(schema(name)).build().into()
}

/// Any string.
pub fn text() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .build()
        .into()
}

/// Any object.
pub fn any_object() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .build()
        .into()
}

/// Exactly this string.
pub fn text_const(value: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .extensions(Some([("const", json!(value))].into_iter().collect()))
        .build()
        .into()
}

fn integer(minimum: i64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(minimum))
}

/// A response header of the API, by name.
pub fn header(name: &str) -> Header {
    let (description, schema): (&str, Schema) = match name {
        "Retry-After" => (
            "Whole seconds until the client may retry (at least 1).",
            integer(1).into(),
        ),
        "RateLimit-Limit" => (
            "Requests allowed in the window of the limit that applies.",
            integer(0).into(),
        ),
        "RateLimit-Remaining" => ("Requests left in the current window.", integer(0).into()),
        "RateLimit-Reset" => (
            "Seconds until the window resets (on a refusal: the same as `Retry-After`).",
            integer(0).into(),
        ),
        "Location" => (
            "Redirect target.",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::Custom("uri-reference".to_string())))
                .into(),
        ),
        "X-Total-Count" => (
            "Total number of the caller's links (of those the filters keep), ignoring `limit`/`offset`.",
            integer(0).into(),
        ),
        "X-Request-Id" => (
            "Request id (echoed from the request when sane, else generated); also in the log line.",
            text(),
        ),
        // Not a header of the API: a test checks that every header has a description.
        _ => ("", text()),
    };
    HeaderBuilder::new()
        .schema(schema)
        .description(Some(description))
        .build()
}

/// A header whose value is always `value`.
pub fn header_const(description: &str, value: &str) -> Header {
    HeaderBuilder::new()
        .schema(text_const(value))
        .description(Some(description))
        .build()
}

fn path_param(name: &str, description: &str, schema: impl Into<RefOr<Schema>>) -> ParameterBuilder {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(schema))
}

fn uuid() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::Custom("uuid".to_string())))
        .into()
}

/// `{code}`: a short code.
pub fn code_param() -> Parameter {
    path_param(
        "code",
        "Short code of a link: 3–64 characters of `[A-Za-z0-9_-]`. Anything else cannot exist and answers 404.",
        ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[A-Za-z0-9_-]{3,64}$")),
    )
    .example(Some(json!("aB3_x9Qz")))
    .build()
}

/// `{id}` of a link.
pub fn link_id_param() -> Parameter {
    path_param("id", "Link id (a UUID; anything else answers 404).", uuid()).build()
}

/// `{id}` of a campaign.
pub fn campaign_id_param() -> Parameter {
    path_param(
        "id",
        "Campaign id (a UUID; anything else answers 404).",
        uuid(),
    )
    .build()
}

fn optional(name: &str, place: ParameterIn, description: &str, example: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(place)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .examples([json!(example)]),
        ))
        .build()
}

/// `?xhr=1`: the JSON form of the redirect.
pub fn xhr_param() -> Parameter {
    optional(
        "xhr",
        ParameterIn::Query,
        "`1` or `true`: answer 200 `{\"redirect\": originalUrl}` instead of a 302. Any other value is ignored.",
        "1",
    )
}

/// `X-Requested-With: XMLHttpRequest`: the JSON form of the redirect.
pub fn x_requested_with_param() -> Parameter {
    optional(
        "X-Requested-With",
        ParameterIn::Header,
        "`XMLHttpRequest` (any case): answer 200 `{\"redirect\": originalUrl}` instead of a 302. Any other value is ignored.",
        "XMLHttpRequest",
    )
}

/// An optional integer query parameter with its bounds and default.
pub fn query_int(
    name: &str,
    description: &str,
    minimum: i64,
    maximum: i64,
    default: i64,
) -> Parameter {
    optional_query(
        name,
        description,
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(minimum))
            .maximum(Some(maximum))
            .default(Some(json!(default))),
    )
}

/// An optional string query parameter, with a pattern and a length limit.
pub fn query_text(
    name: &str,
    description: &str,
    pattern: Option<&str>,
    max_length: usize,
) -> Parameter {
    optional_query(
        name,
        description,
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(pattern)
            .max_length(Some(max_length)),
    )
}

fn optional_query(name: &str, description: &str, schema: ObjectBuilder) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_added_keyword_lands_on_a_schema_utoipa_built() {
        let built = serde_json::to_value(openapi()).expect("the document serialises");
        for (pointer, _) in keywords() {
            assert!(
                built.pointer(pointer).is_some_and(Value::is_object),
                "{pointer} names no schema of the built document"
            );
        }
    }

    #[test]
    fn every_response_header_has_a_description() {
        let doc = document();
        let mut headers = Vec::new();
        for item in doc["paths"]
            .as_object()
            .into_iter()
            .flat_map(|p| p.values())
        {
            for operation in item.as_object().into_iter().flat_map(|i| i.values()) {
                for response in operation["responses"]
                    .as_object()
                    .into_iter()
                    .flat_map(|r| r.values())
                {
                    headers.extend(
                        response["headers"]
                            .as_object()
                            .into_iter()
                            .flat_map(|h| h.iter()),
                    );
                }
            }
        }
        assert!(!headers.is_empty());
        for (name, header) in headers {
            assert!(
                header["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{name} has no description"
            );
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_with_an_operation_per_declared_method() {
        let doc = document();
        assert!(doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")));
        for route in ROUTES {
            for operation in route.operations {
                let method = operation.method.as_str().to_lowercase();
                assert!(
                    doc["paths"][route.path][&method]["operationId"].is_string(),
                    "{method} {}",
                    route.path
                );
            }
        }
    }
}
