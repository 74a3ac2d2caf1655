//! `/admin/v1/import/sites` and `/admin/v1/export/sites`: bulk onboarding, as `wpgate
//! site import | export` do it. The paths are not under `/sites/`, where `import` and
//! `export` would be site ids. An import body's `env:` and `file:` secret references are
//! refused: a remote caller must not read the gateway's environment or files.

use super::context::Caller;
use super::extract::ApiQuery;
use super::openapi::ErrorEnvelope;
use super::respond::{json_reply, ApiError};
use super::state::AdminState;
use crate::error::ErrorCode;
use crate::fleet::onboard::{rows, Format, ImportError, ImportOptions, ImportReport, SecretRefs};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

/// The largest import body (about 80,000 sites of JSON lines).
pub const IMPORT_BODY_LIMIT: usize = 16 * 1024 * 1024;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Only say what would be created, updated or left unchanged; write nothing.
    #[serde(default)]
    dry_run: bool,
    /// `jsonl` or `csv` (default: CSV for `Content-Type: text/csv`, else by the body: a
    /// first character `{` is JSON lines).
    #[param(inline)]
    format: Option<FormatParam>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `jsonl` (default) or `csv`.
    #[param(inline)]
    format: Option<FormatParam>,
}

/// A file format, as the admin API names it.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FormatParam {
    Jsonl,
    Csv,
}

fn format_param(f: Option<FormatParam>) -> Result<Option<Format>, ApiError> {
    Ok(f.map(|f| match f {
        FormatParam::Jsonl => Format::JsonLines,
        FormatParam::Csv => Format::Csv,
    }))
}

/// Create and update sites from an onboarding file: JSON lines (one object per line) or
/// CSV with a header row; fields `id`, `name`, `upstream`, `auth` (`app-password`,
/// `bearer`, `header`, `none`), `username`, `header_name`, `secret`. The whole body is
/// checked first (every problem named with its line: 400, nothing written), then what
/// differs from the stored sites is written in one transaction, one audit entry per
/// site. A stored site keeps its credential when its row has no `secret`; a new site
/// that needs one is refused. `secret` must be the value: `env:` and `file:` references
/// are refused here (the CLI reads them).
#[utoipa::path(
    post,
    path = "/admin/v1/import/sites",
    tag = "sites",
    params(ImportQuery),
    request_body(
        description = "The onboarding file",
        content(
            (String = "application/jsonl"),
            (String = "text/csv"),
        )
    ),
    responses(
        (status = 200, description = "What was (dry_run: would be) created, updated, left unchanged", body = ImportReport),
        (status = 400, description = "The file is refused, nothing written: the message lists each problem as `line N: field: problem`", body = ErrorEnvelope),
        (status = 409, description = "A site of the file was created meanwhile: nothing written", body = ErrorEnvelope),
        (status = 412, description = "A site of the file changed meanwhile: nothing written", body = ErrorEnvelope),
    )
)]
pub async fn import_sites(
    State(state): State<AdminState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ImportQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let format = format_param(q.format)?;
    let bytes = axum::body::to_bytes(body, IMPORT_BODY_LIMIT)
        .await
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::with(
                    ErrorCode::AdminBodyTooLarge,
                    format!("an import body may be at most {IMPORT_BODY_LIMIT} bytes"),
                )
            } else {
                ApiError::invalid(format!("cannot read the body: {e}"))
            }
        })?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::invalid("body: the file must be UTF-8 text"))?;
    let csv_typed = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/csv"));
    let format = match format {
        Some(f) => f,
        None if csv_typed => Format::Csv,
        None => Format::detect(text),
    };
    let options = ImportOptions {
        format,
        refs: SecretRefs::Refuse,
        dry_run: q.dry_run,
    };
    let report: ImportReport = state
        .fleet
        .import_sites(text, options, &caller.actor)
        .await
        .map_err(|e| match e {
            e @ ImportError::Rows(_) => ApiError::invalid(e.to_string()),
            ImportError::Fleet(e) => e.into(),
        })?;
    Ok(json_reply(StatusCode::OK, &report))
}

/// Every site as an onboarding file (never a secret; import it again to restore names,
/// upstreams and credential kinds, the stored secrets being kept).
#[utoipa::path(
    get,
    path = "/admin/v1/export/sites",
    tag = "sites",
    params(ExportQuery),
    responses(
        (status = 200, description = "The onboarding file, ordered by id", content(
            (String = "application/jsonl"),
            (String = "text/csv"),
        )),
    )
)]
pub async fn export_sites(
    State(state): State<AdminState>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let format = format_param(q.format)?.unwrap_or(Format::JsonLines);
    let sites = state.fleet.export_sites().await?;
    let text = rows::write(&sites, format).map_err(|e| {
        tracing::error!(target: "wpgate::admin", error = %e, "export could not be written");
        ApiError::new(ErrorCode::Internal)
    })?;
    let mut resp = (StatusCode::OK, text).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    Ok(resp)
}
