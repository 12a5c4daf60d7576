//! The one place that maps failures to HTTP statuses and `{"error": "..."}` bodies.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::app::ResolveError;
use crate::redis::limiter::Decision;
use crate::store::StoreError;

pub use super::body::{full, Body};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("API Key missing")]
    KeyMissing,
    #[error("Invalid API Key")]
    KeyInvalid,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The redirect's plain-text 404.
    #[error("Link not found")]
    LinkNotFound,
    /// With the route's `Allow` header value.
    #[error("Method not allowed")]
    MethodNotAllowed(&'static HeaderValue),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    #[error("Request body too large (limit 1 MiB)")]
    PayloadTooLarge,
    /// The body did not arrive within `HTTP_BODY_TIMEOUT_MS`.
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{message}")]
    TooManyRequests { message: String, decision: Decision },
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    GatewayTimeout(String),
    /// Logged with detail where it is turned into a response; the client sees a generic line.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => {
                ApiError::Unavailable("Database unavailable, please retry shortly".to_string())
            }
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Other(e) => ApiError::Internal(e.to_string()),
            StoreError::Migration(m) => ApiError::Internal(m),
        }
    }
}

impl From<crate::passwords::PoolError> for ApiError {
    fn from(e: crate::passwords::PoolError) -> Self {
        match e {
            crate::passwords::PoolError::Busy(_) => ApiError::Unavailable(
                "Too many password checks in progress, please retry in a moment".to_string(),
            ),
            crate::passwords::PoolError::Failed(m) => ApiError::Internal(m),
        }
    }
}

impl From<ResolveError> for ApiError {
    fn from(e: ResolveError) -> Self {
        e.0.into()
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::KeyMissing => StatusCode::UNAUTHORIZED,
            ApiError::KeyInvalid | ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::LinkNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        if let ApiError::LinkNotFound = self {
            return text(status, "Link not found");
        }
        // An internal error's detail is logged where the request id is known (`http::handle`).
        let message = match &self {
            ApiError::Internal(_) => "Internal server error".to_string(),
            other => other.to_string(),
        };
        let mut resp = json(status, &serde_json::json!({ "error": message }));
        match self {
            ApiError::MethodNotAllowed(allow) => {
                resp.headers_mut().insert(header::ALLOW, allow.clone());
            }
            ApiError::TooManyRequests { decision, .. } => {
                rate_limit_headers(&mut resp, &decision, true)
            }
            ApiError::Unavailable(_) => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}

/// `RateLimit-*` headers (IETF draft, as express-rate-limit sends them), and `Retry-After`
/// when the request was refused: the whole seconds until one more request fits (the sliding
/// estimate decays as the window moves), so a client that waits as told gets through.
pub fn rate_limit_headers(resp: &mut Response<Body>, d: &Decision, refused: bool) {
    let h = resp.headers_mut();
    h.insert("ratelimit-limit", HeaderValue::from(d.limit));
    h.insert("ratelimit-remaining", HeaderValue::from(d.remaining));
    if refused {
        let wait = whole_seconds(d.retry_after);
        h.insert("ratelimit-reset", HeaderValue::from(wait));
        h.insert(header::RETRY_AFTER, HeaderValue::from(wait));
    } else {
        h.insert(
            "ratelimit-reset",
            HeaderValue::from(whole_seconds(d.reset_after)),
        );
    }
}

/// Seconds, rounded up, at least 1.
fn whole_seconds(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).max(1) as u64
}

pub fn too_many(message: &str, decision: Decision) -> ApiError {
    ApiError::TooManyRequests {
        message: message.to_string(),
        decision,
    }
}

pub fn json<T: serde::Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut resp = Response::new(full(bytes));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            resp
        }
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error"),
    }
}

pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

pub fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

pub fn retry_after(resp: &mut Response<Body>, after: Duration) {
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(whole_seconds(after)));
}
