//! `/admin/v1/sites...`: list, create, show, update (If-Match), delete, enable,
//! disable, the write-only upstream credential, the paths forwarded, and the browser
//! origins allowed (CORS).

use super::context::Caller;
use super::extract::{page_limit, present, site_id, ApiJson, ApiQuery, IfMatch, SitePath};
use super::openapi::ErrorEnvelope;
use super::respond::{json_reply, ApiError};
use super::state::AdminState;
use super::views::SiteView;
use crate::fleet::{CredentialInput, NewSite, SiteChanges};
use crate::health::ReportOrigin;
use crate::secret::Secret;
use crate::site::{CorsAllow, CredentialKind, RouteAllow, SiteId, UpstreamTarget};
use crate::store::{SiteFilter, SiteRecord};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Deserializer, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListSitesQuery {
    /// Page size, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page: the last site id it held.
    #[param(schema_with = super::schema::site_id)]
    cursor: Option<String>,
    /// Only sites whose id or name contains this text (ASCII letters in either case).
    #[param(schema_with = super::schema::search)]
    q: Option<String>,
    /// Only sites whose last stored health check found this state.
    #[param(schema_with = super::schema::health_state)]
    state: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SiteList {
    pub sites: Vec<SiteView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The kind of upstream credential.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKindBody {
    /// HTTP Basic with a WordPress Application Password (needs `username`).
    AppPassword,
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// A plugin's own header (needs `header_name`).
    Header,
    /// No credential.
    None,
}

impl From<CredentialKindBody> for CredentialKind {
    fn from(k: CredentialKindBody) -> Self {
        match k {
            CredentialKindBody::AppPassword => CredentialKind::AppPassword,
            CredentialKindBody::Bearer => CredentialKind::Bearer,
            CredentialKindBody::Header => CredentialKind::Header,
            CredentialKindBody::None => CredentialKind::None,
        }
    }
}

/// A secret in a request body: never printed, never returned.
pub struct SecretText(Secret);

impl SecretText {
    pub fn into_secret(self) -> Secret {
        self.0
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = zeroize::Zeroizing::new(String::deserialize(d)?);
        Ok(SecretText(Secret::from_string(text.to_string())))
    }
}

/// An upstream credential. The secret is write-only: no endpoint returns it. Which
/// fields go with which `kind` is in its OpenAPI schema (`CredentialBody`, one of four).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialBody {
    kind: CredentialKindBody,
    /// WordPress user name (`app_password`).
    #[serde(default, deserialize_with = "present")]
    username: Option<String>,
    /// Header name (`header`), e.g. `X-Plugin-Auth`.
    #[serde(default, deserialize_with = "present")]
    header_name: Option<String>,
    /// The application password, token or header value (not for `none`).
    #[serde(default, deserialize_with = "present")]
    secret: Option<SecretText>,
}

impl utoipa::PartialSchema for CredentialBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use super::schema;
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
        let variant =
            |kind: &str, description: &str, fields: Vec<(&str, utoipa::openapi::Object)>| {
                let mut b = ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .description(Some(description))
                    .property(
                        "kind",
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .enum_values(Some([kind])),
                    )
                    .required("kind")
                    .additional_properties(Some(AdditionalProperties::<
                        utoipa::openapi::schema::Schema,
                    >::FreeForm(false)));
                for (name, field) in fields {
                    b = b.property(name, field).required(name);
                }
                b.build()
            };
        OneOfBuilder::new()
            .description(Some(
                "An upstream credential: `kind` says which fields go with it",
            ))
            .item(variant(
                "app_password",
                "HTTP Basic with a WordPress Application Password",
                vec![
                    ("username", schema::username()),
                    ("secret", schema::secret()),
                ],
            ))
            .item(variant(
                "bearer",
                "`Authorization: Bearer <secret>`",
                vec![("secret", schema::secret())],
            ))
            .item(variant(
                "header",
                "A plugin's own header: `<header_name>: <secret>`",
                vec![
                    ("header_name", schema::header_name()),
                    ("secret", schema::secret()),
                ],
            ))
            .item(variant("none", "No credential", vec![]))
            .into()
    }
}

impl ToSchema for CredentialBody {
    fn name() -> std::borrow::Cow<'static, str> {
        "CredentialBody".into()
    }
}

impl CredentialBody {
    fn into_input(self) -> Result<CredentialInput, ApiError> {
        let kind: CredentialKind = self.kind.into();
        let name = kind.as_str();
        let username = match kind {
            CredentialKind::AppPassword => {
                if self.header_name.is_some() {
                    return Err(ApiError::invalid(
                        "credential.header_name: goes with kind header, not app_password",
                    ));
                }
                Some(self.username.ok_or_else(|| {
                    ApiError::invalid("credential.username: required for kind app_password")
                })?)
            }
            CredentialKind::Header => {
                if self.username.is_some() {
                    return Err(ApiError::invalid(
                        "credential.username: goes with kind app_password, not header",
                    ));
                }
                Some(self.header_name.ok_or_else(|| {
                    ApiError::invalid("credential.header_name: required for kind header")
                })?)
            }
            CredentialKind::Bearer | CredentialKind::None => {
                if self.username.is_some() || self.header_name.is_some() {
                    return Err(ApiError::invalid(format!(
                        "credential.username, credential.header_name: not used with kind {name}"
                    )));
                }
                None
            }
        };
        let secret = self.secret.map(|s| s.0).filter(|s| !s.is_empty());
        match (kind.needs_secret(), &secret) {
            (true, None) => Err(ApiError::invalid(format!(
                "credential.secret: required for kind {name}"
            ))),
            (false, Some(_)) => Err(ApiError::invalid(
                "credential.secret: kind none takes no secret",
            )),
            _ => {
                // Whole here, before any store read: a bad credential is 400 whatever the
                // site's state (the fleet checks it again when it seals it).
                let field = match kind {
                    CredentialKind::Header => "credential.header_name",
                    _ => "credential.username",
                };
                if let Some(name) = &username {
                    crate::site::check_text(field, name)
                        .map_err(|e| ApiError::invalid(e.to_string()))?;
                }
                if let Some(secret) = &secret {
                    crate::site::check_secret("credential.secret", secret.expose())
                        .map_err(|e| ApiError::invalid(e.to_string()))?;
                    crate::credential::credential_header(kind, username.as_deref(), secret)
                        .map_err(|e| ApiError::invalid(format!("credential: {e}")))?;
                }
                Ok(CredentialInput {
                    kind,
                    username,
                    secret,
                })
            }
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSite {
    /// `[A-Za-z0-9_-]{1,64}`: what clients send as X-Website-ID.
    #[schema(schema_with = super::schema::site_id)]
    id: String,
    /// Display name (default: the id).
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::schema::text)]
    name: Option<String>,
    /// Base URL of the WordPress site, http or https, optionally with a path prefix.
    #[schema(schema_with = super::schema::upstream)]
    upstream: String,
    /// How wpgate authenticates to the site (default: none).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    credential: Option<CredentialBody>,
}

/// The fields to change; at least one. The upstream credential is bound to the origin
/// (scheme, host, port) of the upstream: moving `upstream` to another origin needs a new
/// `credential` in the same call (409 `site.credential_required` without one); a new
/// path on the same origin does not.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSite {
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::schema::text)]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::schema::upstream)]
    upstream: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    enabled: Option<bool>,
    /// A new upstream credential (write-only), sealed for the new upstream's origin.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    credential: Option<CredentialBody>,
}

/// An upstream URL as the admin API takes it: the pattern its description states
/// (`schema::UPSTREAM`), and what the proxy can use.
fn check_upstream(raw: &str) -> Result<(), ApiError> {
    UpstreamTarget::parse(raw).map_err(|e| ApiError::invalid(format!("upstream: {e}")))?;
    if !super::schema::matches(super::schema::UPSTREAM, raw) {
        return Err(ApiError::invalid(
            "upstream: http or https, a host name or IPv4 address, an optional port and \
             path prefix; no user, query or fragment (e.g. https://shop.example.com/blog)",
        ));
    }
    Ok(())
}

/// A site just registered, and what to know about it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedSite {
    #[serde(flatten)]
    pub site: SiteView,
    /// What did not stop the change but should be looked at (empty when nothing), e.g.
    /// `upstream https://shop.example.com is already used by site shop`.
    pub warnings: Vec<String>,
}

/// The site as JSON with `ETag: "<version>"`.
fn site_reply(status: StatusCode, record: &SiteRecord) -> Response {
    tagged(json_reply(status, &SiteView::from(record)), record.version)
}

/// `resp` with `ETag: "<version>"`.
fn tagged(mut resp: Response, version: i64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// List sites, ordered by id.
#[utoipa::path(
    get,
    path = "/admin/v1/sites",
    tag = "sites",
    params(ListSitesQuery),
    responses(
        (status = 200, body = SiteList),
    )
)]
pub async fn list_sites(
    State(state): State<AdminState>,
    ApiQuery(q): ApiQuery<ListSitesQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(q.limit)?;
    let cursor = q
        .cursor
        .as_deref()
        .map(|c| site_id(c, "cursor"))
        .transpose()?;
    let filter = site_filter(q.q, q.state)?;
    // One more than asked tells whether another page follows.
    let after = cursor.as_ref().map(SiteId::as_str);
    let store = state.fleet.store();
    let mut sites = if filter == SiteFilter::default() {
        store.list_sites(after, limit + 1).await?
    } else {
        store.find_sites(after, limit + 1, &filter).await?
    };
    let more = sites.len() > limit as usize;
    sites.truncate(limit as usize);
    let next_cursor = more.then(|| sites.last().map(|s| s.id.clone())).flatten();
    Ok(json_reply(
        StatusCode::OK,
        &SiteList {
            sites: sites.iter().map(SiteView::from).collect(),
            next_cursor,
        },
    ))
}

/// The list's filters, checked as the OpenAPI description states them.
fn site_filter(q: Option<String>, state: Option<String>) -> Result<SiteFilter, ApiError> {
    if let Some(text) = &q {
        let blank = text.trim().is_empty();
        if blank
            || text.chars().count() > super::schema::MAX_SEARCH_CHARS
            || text.chars().any(char::is_control)
        {
            return Err(ApiError::invalid(
                "q: must be 1-100 characters, not blank, no control characters",
            ));
        }
    }
    if let Some(s) = &state {
        if !crate::health::HealthState::ALL
            .iter()
            .any(|h| h.as_str() == s)
        {
            return Err(ApiError::invalid("state: not a health state"));
        }
    }
    Ok(SiteFilter { text: q, state })
}

/// Register a site.
#[utoipa::path(
    post,
    path = "/admin/v1/sites",
    tag = "sites",
    request_body = CreateSite,
    responses(
        (status = 201, body = CreatedSite, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 400, description = "Invalid field (the message names it)", body = ErrorEnvelope),
        (status = 409, description = "A site with this id exists", body = ErrorEnvelope),
    )
)]
pub async fn create_site(
    State(state): State<AdminState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateSite>,
) -> Result<Response, ApiError> {
    let id = site_id(&body.id, "id")?;
    check_upstream(&body.upstream)?;
    let credential = match body.credential {
        Some(c) => c.into_input()?,
        None => CredentialInput {
            kind: CredentialKind::None,
            username: None,
            secret: None,
        },
    };
    let added = state
        .fleet
        .add_site(
            NewSite {
                id,
                name: body.name,
                upstream_url: body.upstream,
                credential,
            },
            &caller.actor,
        )
        .await?;
    let created = CreatedSite {
        site: SiteView::from(&added.record),
        warnings: added.warnings.iter().map(ToString::to_string).collect(),
    };
    Ok(tagged(
        json_reply(StatusCode::CREATED, &created),
        added.record.version,
    ))
}

/// Show a site (never its secret).
#[utoipa::path(
    get,
    path = "/admin/v1/sites/{id}",
    tag = "sites",
    params(SitePath),
    responses(
        (status = 200, body = SiteView, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 404, body = ErrorEnvelope),
    )
)]
pub async fn get_site(
    State(state): State<AdminState>,
    SitePath { id }: SitePath,
) -> Result<Response, ApiError> {
    let record = state.fleet.site(&id).await?;
    Ok(site_reply(StatusCode::OK, &record))
}

/// Change a site's name, upstream, enabled flag or credential. Needs
/// `If-Match: "<version>"`. Moving the upstream to another origin needs a new credential
/// in the same call.
#[utoipa::path(
    patch,
    path = "/admin/v1/sites/{id}",
    tag = "sites",
    params(
        SitePath,
        ("If-Match" = String, Header, pattern = r#"^(W/)?("[0-9]{1,18}"|[0-9]{1,18})$"#,
            description = "The ETag of the site as read, e.g. \"3\""),
    ),
    request_body = UpdateSite,
    responses(
        (status = 200, body = SiteView, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 404, body = ErrorEnvelope),
        (status = 409, description = "site.credential_required: the upstream moves to another origin without a new credential", body = ErrorEnvelope),
        (status = 412, description = "The site changed since that version", body = ErrorEnvelope),
        (status = 428, description = "If-Match is missing", body = ErrorEnvelope),
    )
)]
pub async fn update_site(
    State(state): State<AdminState>,
    caller: Caller,
    SitePath { id }: SitePath,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateSite>,
) -> Result<Response, ApiError> {
    let expected = IfMatch::from_headers(&headers)?;
    // The body is checked whole before the version: a bad body is 400 whatever the site.
    if let Some(u) = &body.upstream {
        check_upstream(u)?;
    }
    if let Some(name) = &body.name {
        crate::site::check_text("name", name).map_err(|e| ApiError::invalid(e.to_string()))?;
    }
    let changes = SiteChanges {
        name: body.name,
        upstream_url: body.upstream,
        enabled: body.enabled,
        credential: body
            .credential
            .map(CredentialBody::into_input)
            .transpose()?,
    };
    if changes.fields().is_empty() {
        return Err(ApiError::invalid(
            "body: give at least one of name, upstream, enabled, credential",
        ));
    }
    let record = state.fleet.site(&id).await?;
    expected.check(&record)?;
    // The store re-checks the version in the same statement that writes.
    let updated = state
        .fleet
        .change_site(record, changes, &caller.actor)
        .await?;
    Ok(site_reply(StatusCode::OK, &updated))
}

/// Delete a site and its API keys.
#[utoipa::path(
    delete,
    path = "/admin/v1/sites/{id}",
    tag = "sites",
    params(SitePath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = ErrorEnvelope),
    )
)]
pub async fn delete_site(
    State(state): State<AdminState>,
    caller: Caller,
    SitePath { id }: SitePath,
) -> Result<Response, ApiError> {
    state.fleet.remove_site(&id, &caller.actor).await?;
    state.health.remove(id.as_str());
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_enabled(
    state: AdminState,
    caller: Caller,
    id: SiteId,
    enabled: bool,
) -> Result<Response, ApiError> {
    let record = state.fleet.set_enabled(&id, enabled, &caller.actor).await?;
    Ok(site_reply(StatusCode::OK, &record))
}

/// Let requests through to a site again.
#[utoipa::path(
    post,
    path = "/admin/v1/sites/{id}/enable",
    tag = "sites",
    params(SitePath),
    responses(
        (status = 200, body = SiteView),
        (status = 404, body = ErrorEnvelope),
    )
)]
pub async fn enable_site(
    State(state): State<AdminState>,
    caller: Caller,
    SitePath { id }: SitePath,
) -> Result<Response, ApiError> {
    set_enabled(state, caller, id, true).await
}

/// Refuse requests to a site (403 `site.disabled`).
#[utoipa::path(
    post,
    path = "/admin/v1/sites/{id}/disable",
    tag = "sites",
    params(SitePath),
    responses(
        (status = 200, body = SiteView),
        (status = 404, body = ErrorEnvelope),
    )
)]
pub async fn disable_site(
    State(state): State<AdminState>,
    caller: Caller,
    SitePath { id }: SitePath,
) -> Result<Response, ApiError> {
    set_enabled(state, caller, id, false).await
}

/// Replace a site's upstream credential. Write-only: the answer shows its kind and user
/// or header name, never the secret.
#[utoipa::path(
    put,
    path = "/admin/v1/sites/{id}/credential",
    tag = "sites",
    params(
        SitePath,
        ("confirm" = Option<bool>, Query, description = "Check the new credential against \
            the site first (users/me must accept it); store it only if the check passes, \
            otherwise keep the old one and answer 422 admin.credential_rejected"),
    ),
    request_body = CredentialBody,
    responses(
        (status = 200, body = SiteView),
        (status = 404, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope, description = "confirm: the site refused the new credential; the old one is kept"),
    )
)]
pub async fn set_credential(
    State(state): State<AdminState>,
    caller: Caller,
    SitePath { id }: SitePath,
    ApiQuery(query): ApiQuery<CredentialQuery>,
    ApiJson(body): ApiJson<CredentialBody>,
) -> Result<Response, ApiError> {
    let input = body.into_input()?;
    let record = if query.confirm {
        let client = state.check_client()?;
        let (record, report) = state
            .fleet
            .set_credential_confirmed(
                &id,
                &input,
                &crate::health::targets::CredentialProbe {
                    client,
                    timeout: state.health_timeout,
                },
                &caller.actor,
            )
            .await?;
        // The check of the new credential is the site's health now, on every replica.
        match state.health_ledger.record(id.as_str(), &report).await {
            Ok(Some(stored)) => {
                state.health.apply(&stored);
                crate::health::targets::metrics_hook(
                    Arc::clone(&state.health),
                    Arc::clone(state.fleet.metrics()),
                )(id.as_str(), &stored.report, ReportOrigin::Checked);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(target: "wpgate::admin", site = %id, error = %e, "the credential check's result was not stored")
            }
        }
        record
    } else {
        state
            .fleet
            .set_credential(&id, &input, &caller.actor)
            .await?
    };
    Ok(site_reply(StatusCode::OK, &record))
}

/// The path prefixes forwarded besides the REST API; replaces the site's list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutesBody {
    /// Path prefixes, each starting with `/`, decoded, without `.`/`..`/empty segments,
    /// `%`, `?`, `#`, backslashes or spaces, at most 256 bytes; at most 32. Matched on segment
    /// boundaries: `/xmlrpc.php` allows `/xmlrpc.php` and `/xmlrpc.php/...`. Empty: the
    /// REST API only.
    #[schema(schema_with = super::schema::allow_paths)]
    allow_paths: Vec<String>,
}

/// Set which paths are forwarded to a site besides the WordPress REST API (replaces the
/// list; an empty list is the default, the REST API only). Other paths get 403
/// `route.not_allowed`.
#[utoipa::path(
    put,
    path = "/admin/v1/sites/{id}/routes",
    tag = "sites",
    params(SitePath),
    request_body = RoutesBody,
    responses(
        (status = 200, body = SiteView),
        (status = 404, body = ErrorEnvelope),
    )
)]
pub async fn set_routes(
    State(state): State<AdminState>,
    caller: Caller,
    SitePath { id }: SitePath,
    ApiJson(body): ApiJson<RoutesBody>,
) -> Result<Response, ApiError> {
    let routes = RouteAllow::parse(&body.allow_paths)
        .map_err(|e| ApiError::invalid(format!("allow_paths: {e}")))?;
    let record = state.fleet.set_routes(&id, &routes, &caller.actor).await?;
    Ok(site_reply(StatusCode::OK, &record))
}

/// The browser origins allowed to call a site; replaces the site's list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CorsBody {
    /// Origins `scheme://host[:port]`, http or https, without path, query, fragment, user
    /// or wildcard, at most 256 bytes; at most 32. Stored normalised as browsers send the
    /// `Origin` header (lower case, default port left out). Empty: none.
    #[schema(schema_with = super::schema::allow_origins)]
    allow_origins: Vec<String>,
}

/// Set which browser origins may call a site (replaces the list; an empty list is the
/// default, none). Preflights are answered by the gateway for every origin some site
/// allows; a request whose `Origin` its site does not allow gets 403
/// `cors.origin_not_allowed`.
#[utoipa::path(
    put,
    path = "/admin/v1/sites/{id}/cors",
    tag = "sites",
    params(SitePath),
    request_body = CorsBody,
    responses(
        (status = 200, body = SiteView),
        (status = 404, body = ErrorEnvelope),
    )
)]
pub async fn set_cors(
    State(state): State<AdminState>,
    caller: Caller,
    SitePath { id }: SitePath,
    ApiJson(body): ApiJson<CorsBody>,
) -> Result<Response, ApiError> {
    let cors = CorsAllow::parse(&body.allow_origins)
        .map_err(|e| ApiError::invalid(format!("allow_origins: {e}")))?;
    if let Some(o) = body
        .allow_origins
        .iter()
        .find(|o| !super::schema::matches(super::schema::ORIGIN, o))
    {
        return Err(ApiError::invalid(format!(
            "allow_origins: {o:?} is not http(s)://host[:port] with a host name or IPv4 address"
        )));
    }
    let record = state.fleet.set_cors(&id, &cors, &caller.actor).await?;
    Ok(site_reply(StatusCode::OK, &record))
}

#[derive(Debug, Default, Deserialize)]
pub struct CredentialQuery {
    #[serde(default)]
    confirm: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> Result<CredentialInput, String> {
        let b: CredentialBody = serde_json::from_str(json).map_err(|e| e.to_string())?;
        b.into_input().map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn credential_bodies() {
        let ok = body(r#"{"kind":"app_password","username":"api","secret":"a b c"}"#).unwrap();
        assert_eq!(ok.kind, CredentialKind::AppPassword);
        assert_eq!(format!("{:?}", ok.secret), "Some([redacted])");
        assert!(body(r#"{"kind":"none"}"#).is_ok());
        assert!(body(r#"{"kind":"header","header_name":"X-A","secret":"s"}"#).is_ok());
        for (bad, field) in [
            (
                r#"{"kind":"app_password","secret":"s"}"#,
                "credential.username",
            ),
            (r#"{"kind":"bearer"}"#, "credential.secret"),
            (r#"{"kind":"bearer","secret":""}"#, "credential.secret"),
            (r#"{"kind":"none","secret":"s"}"#, "credential.secret"),
            (
                r#"{"kind":"header","secret":"s"}"#,
                "credential.header_name",
            ),
            (
                r#"{"kind":"bearer","username":"u","secret":"s"}"#,
                "credential.username",
            ),
            (
                r#"{"kind":"bearer","secret":"s","extra":1}"#,
                "unknown field",
            ),
            (r#"{"kind":"nope"}"#, "unknown variant"),
        ] {
            let e = body(bad).unwrap_err();
            assert!(e.contains(field), "{bad}: {e}");
        }
    }
}
