//! Path and query parameters of the HTTP API, described in `/openapi.json`
//! (`IntoParams`), and the extractors that read them: unlike axum's own,
//! a malformed query or path is answered with a problem document
//! (`INVALID_REQUEST`), as every other error is.

use super::ApiError;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::IntoParams;

/// A query string parsed into `T`; a malformed one is a 400 problem.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(ApiError::invalid(e.body_text())),
        }
    }
}

/// Path parameters parsed into `T`; malformed ones are a 400 problem.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ApiPath(v)),
            Err(e) => Err(ApiError::invalid(e.body_text())),
        }
    }
}

/// `{topic}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TopicPath {
    /// The topic's name.
    #[param(pattern = r"^[a-zA-Z0-9._-]{1,249}$")]
    pub topic: String,
}

/// `{topic}` and `{sub}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SubscriptionPath {
    /// The topic's name.
    #[param(pattern = r"^[a-zA-Z0-9._-]{1,249}$")]
    pub topic: String,
    /// The subscription's name.
    #[param(
        min_length = 1,
        max_length = 249,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]+$"
    )]
    pub sub: String,
}

/// `{group}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct GroupPath {
    /// The consumer group's name.
    #[param(
        min_length = 1,
        max_length = 249,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]+$"
    )]
    pub group: String,
}

/// `{id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RequestPath {
    /// The request's ID, as `POST /v1/requests` answered it.
    pub id: String,
}

/// `GET /v1/topics?pattern=…`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only topics matching this pattern (`*` one segment, `>` the rest),
    /// e.g. `orders.*`.
    pub pattern: Option<String>,
}

/// Where and how to read: `GET /v1/topics/{topic}/messages`, `GET /v1/events`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FetchQuery {
    /// The partition to read (default 0; ignored by `/v1/events`).
    pub partition: Option<u32>,
    /// The first offset to read (default 0).
    pub offset: Option<i64>,
    /// Most bytes of stored batches to read (1 to 8 MiB, default 1 MiB;
    /// at least one message is read).
    pub max_bytes: Option<usize>,
    /// How long to wait for messages when there are none (long poll,
    /// default 0, at most 300000).
    #[param(maximum = 300000)]
    pub wait_ms: Option<u64>,
}

/// `GET /v1/groups/{group}/offsets?topic=…`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OffsetsQuery {
    /// The topic whose committed offsets to show.
    #[param(pattern = r"^[a-zA-Z0-9._-]{1,249}$")]
    pub topic: String,
}

/// `GET /v1/requests/{id}?wait_ms=…`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Hold the answer until the request finishes, up to this long
    /// (default 0, at most 300000).
    #[param(maximum = 300000)]
    pub wait_ms: Option<u64>,
}

// The schema's bound above is this limit, written out for the macro.
const _: () = assert!(spool_types::limits::HTTP_WAIT_MS_MAX == 300_000);
