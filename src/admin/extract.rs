//! Reading a request the admin API's way: every rejection is an `ApiError` naming the
//! field (400 `admin.invalid_request`), and a site id is a `SiteId` from the moment it
//! is read, whether it comes in the path, the query or the body.

use super::respond::ApiError;
use crate::error::ErrorCode;
use crate::site::SiteId;
use crate::store::SiteRecord;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use utoipa::IntoParams;

/// Page size when `limit` is not given, and the largest accepted.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// `raw` as a site id; the error names `field`.
pub fn site_id(raw: &str, field: &str) -> Result<SiteId, ApiError> {
    raw.parse::<SiteId>()
        .map_err(|e| ApiError::invalid(format!("{field}: {e}")))
}

/// A list's page size: 1-1000, 100 when not given.
pub fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(format!("limit: must be 1-{MAX_LIMIT}")));
    }
    Ok(limit)
}

/// For an optional body field: absent is `None`; `null` is refused like any value of
/// the wrong type (the description says the field is a string, not null).
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The `{id}` of a site route; it documents itself in the OpenAPI description.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SitePath {
    /// Site id
    #[param(schema_with = super::schema::site_id, required = true)]
    pub id: SiteId,
}

/// The `{key_id}` of a key route, as the OpenAPI description shows it.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KeyIdParam {
    /// Key id (the 12 characters after `wpg_`)
    #[param(schema_with = super::schema::key_id, required = true)]
    #[allow(dead_code)]
    key_id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for SitePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = path_param(parts, state).await?;
        let id = site_id(&raw, "id")?;
        Ok(SitePath { id })
    }
}

/// The `{key_id}` of a key route: 12 characters of `[a-z0-9]`.
pub struct KeyIdPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for KeyIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = path_param(parts, state).await?;
        if !crate::auth::api_key::is_key_id(&raw) {
            // No key has such an id (12 characters of [a-z0-9]): there is nothing there.
            return Err(ApiError::with(
                ErrorCode::AdminNotFound,
                "no such key: a key id is 12 characters of [a-z0-9], the part after wpg_",
            ));
        }
        Ok(KeyIdPath(raw))
    }
}

/// The one parameter of a route's path.
async fn path_param<S: Send + Sync>(parts: &mut Parts, state: &S) -> Result<String, ApiError> {
    Path::<String>::from_request_parts(parts, state)
        .await
        .map(|p| p.0)
        .map_err(|e| ApiError::invalid(format!("path: {}", e.body_text())))
}

/// A JSON body (an empty body reads as `{}`); errors are 400 `admin.invalid_request`
/// naming the field, or 413 `admin.body_too_large`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::AdminBodyTooLarge)
            } else {
                ApiError::invalid(format!("cannot read the body: {}", e.body_text()))
            }
        })?;
        // No body, or `null`: no fields (a body every field of which is optional).
        let text: &[u8] =
            if bytes.iter().all(u8::is_ascii_whitespace) || bytes.trim_ascii() == b"null" {
                b"{}"
            } else {
                &bytes
            };
        let de = &mut serde_json::Deserializer::from_slice(text);
        serde_path_to_error::deserialize(de)
            .map(ApiJson)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if path == "." || path.is_empty() {
                    ApiError::invalid(format!("body: {inner}"))
                } else {
                    ApiError::invalid(format!("{path}: {inner}"))
                }
            })
    }
}

/// Query parameters; errors are 400 `admin.invalid_request`.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::invalid(format!("query: {}", e.body_text())))
    }
}

/// The site version a change was made against (`If-Match`): the write happens only if
/// the site is still at that version (optimistic concurrency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfMatch(pub i64);

impl IfMatch {
    /// The version named by `If-Match` (`"3"`, `W/"3"` or `3`); required.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let mut values = headers.get_all(header::IF_MATCH).iter();
        let raw = match (values.next(), values.next()) {
            (None, _) => return Err(ApiError::with(
                ErrorCode::AdminPreconditionRequired,
                "If-Match is required: send the ETag of the site as you read it, e.g. If-Match: \"3\"",
            )),
            (Some(v), None) => v.to_str().unwrap_or(""),
            (Some(_), Some(_)) => return Err(ApiError::invalid("If-Match: send one ETag")),
        };
        // Exactly `IF_MATCH_PATTERN`: `"3"`, `W/"3"` or `3`.
        let tag = raw.trim();
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        let tag = tag
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(tag);
        let digits = (1..=18).contains(&tag.len()) && tag.bytes().all(|b| b.is_ascii_digit());
        digits
            .then(|| tag.parse::<i64>().ok())
            .flatten()
            .map(IfMatch)
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "If-Match: {raw:?} is not an ETag of this API (e.g. \"3\")"
                ))
            })
    }

    /// Refuses a change to `record` when it moved past the version the caller read.
    /// (The store checks again in the statement that writes.)
    pub fn check(self, record: &SiteRecord) -> Result<(), ApiError> {
        if record.version == self.0 {
            return Ok(());
        }
        Err(ApiError::with(
            ErrorCode::AdminVersionConflict,
            format!(
                "site {} is at version {}, not {}: read it again and retry",
                record.id, record.version, self.0
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_versions() {
        let mut h = HeaderMap::new();
        assert_eq!(
            IfMatch::from_headers(&h).unwrap_err().code(),
            ErrorCode::AdminPreconditionRequired
        );
        for (v, want) in [("\"3\"", 3), ("W/\"4\"", 4), ("5", 5)] {
            h.insert(header::IF_MATCH, v.parse().unwrap());
            assert_eq!(IfMatch::from_headers(&h).unwrap(), IfMatch(want));
        }
        h.insert(header::IF_MATCH, "*".parse().unwrap());
        assert_eq!(
            IfMatch::from_headers(&h).unwrap_err().code(),
            ErrorCode::AdminInvalidRequest
        );
    }

    #[test]
    fn site_ids_and_limits() {
        assert_eq!(site_id("shop", "id").unwrap().as_str(), "shop");
        let e = site_id("a b", "cursor").unwrap_err();
        assert_eq!(e.code(), ErrorCode::AdminInvalidRequest);
        assert_eq!(page_limit(None).unwrap(), 100);
        assert_eq!(page_limit(Some(1000)).unwrap(), 1000);
        assert!(page_limit(Some(0)).is_err() && page_limit(Some(1001)).is_err());
    }
}
