//! `axum`'s extractors with [`ApiError`] rejections, so that a body, query or path that
//! does not parse is answered in the API's JSON error shape like every other error.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Path, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiError;

/// A JSON body (`Content-Type: application/json`), as [`axum::Json`] reads it.
pub struct JsonBody<T>(pub T);

/// A query string, as [`axum::extract::Query`] reads it.
pub struct QueryParams<T>(pub T);

/// Path parameters, as [`axum::extract::Path`] reads them.
pub struct PathParams<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match <Json<T> as FromRequest<S>>::from_request(request, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(e) => Err(ApiError::rejected(e.status(), e.body_text())),
        }
    }
}

/// No body (no `Content-Type`) is `None`; a body must be JSON.
impl<T, S> OptionalFromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Option<Self>, ApiError> {
        match <Json<T> as OptionalFromRequest<S>>::from_request(request, state).await {
            Ok(value) => Ok(value.map(|Json(v)| JsonBody(v))),
            Err(e) => Err(ApiError::rejected(e.status(), e.body_text())),
        }
    }
}

impl<T, S> FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(QueryParams(value)),
            Err(e) => Err(ApiError::rejected(e.status(), e.body_text())),
        }
    }
}

impl<T, S> FromRequestParts<S> for PathParams<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParams(value)),
            Err(e) => Err(ApiError::rejected(e.status(), e.body_text())),
        }
    }
}
