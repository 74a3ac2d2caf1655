//! `/admin/v1/audit`: the audit log, newest first, a page at a time.

use super::extract::{page_limit, site_id, ApiQuery};
use super::respond::{json_reply, ApiError};
use super::state::AdminState;
use super::views::AuditEntryView;
use crate::site::SiteId;
use crate::store::{read_audit, AuditPage};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The latest `since` accepted: 9999-12-31T23:59:59Z.
const MAX_SINCE: i64 = 253_402_300_799;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only the entries about this site (its keys included).
    #[param(schema_with = super::schema::site_id)]
    site: Option<String>,
    /// Only entries from this time on (Unix seconds).
    #[param(minimum = 0, maximum = 253_402_300_799_i64)]
    since: Option<i64>,
    /// How many, newest first: 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub entries: Vec<AuditEntryView>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The audit log, newest first.
#[utoipa::path(
    get,
    path = "/admin/v1/audit",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, body = AuditList),
    )
)]
pub async fn list_audit(
    State(state): State<AdminState>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(q.limit)?;
    let site = q.site.as_deref().map(|s| site_id(s, "site")).transpose()?;
    if q.since.is_some_and(|s| !(0..=MAX_SINCE).contains(&s)) {
        return Err(ApiError::invalid(format!(
            "since: Unix seconds, 0-{MAX_SINCE}"
        )));
    }
    let before = q
        .cursor
        .as_deref()
        .map(|c| {
            let ok = (1..=18).contains(&c.len())
                && c.bytes().all(|b| b.is_ascii_digit())
                && !c.starts_with('0');
            ok.then(|| c.parse::<i64>().ok())
                .flatten()
                .ok_or_else(|| ApiError::invalid("cursor: the next_cursor of a previous page"))
        })
        .transpose()?;
    let (entries, next) = read_audit(
        state.fleet.store(),
        &AuditPage {
            site_id: site.as_ref().map(SiteId::as_str),
            since: q.since,
            before,
            limit,
        },
    )
    .await?;
    Ok(json_reply(
        StatusCode::OK,
        &AuditList {
            entries: entries.iter().map(AuditEntryView::from).collect(),
            next_cursor: next.map(|n| n.to_string()),
        },
    ))
}
