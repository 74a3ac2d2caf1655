//! Bulk onboarding: many sites from one file (`rows`: JSON lines or CSV), and the same
//! format out. An import is checked whole before anything is written — every row with
//! the rules of `site add`, ids unique within the file — then compared with the store
//! (the credential too: the stored one is opened and compared in constant time, never
//! shown), and what changes is written in one transaction with one audit entry per
//! site. Running the same file again changes nothing. `legacy_env` reads a one-site
//! set-up's environment into a site.

pub mod legacy_env;
pub mod rows;

use super::writes::{check_update, CredentialInput, NewSite, SiteChanges};
use super::{Actor, Fleet, FleetError};
use crate::secret::Secret;
use crate::site::{CredentialKind, UpstreamTarget};
use crate::store::{upstream_credential_place, SiteRecord, SiteWrite, StoreError};
pub use rows::{Format, ImportSite, SecretRefs, SiteRow};
use serde::Serialize;
use std::collections::HashMap;

/// How many problems an import refusal lists (then how many more there are).
const PROBLEMS_SHOWN: usize = 50;
/// Sites read per store query when exporting.
const EXPORT_PAGE: u32 = 1000;

/// A problem with one line of an onboarding file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: u64,
    pub message: String,
}

impl LineError {
    pub fn new(line: u64, message: impl Into<String>) -> Self {
        LineError {
            line,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is refused (nothing was written): each problem with its line.
    #[error("{}", list(.0))]
    Rows(Vec<LineError>),
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

impl From<StoreError> for ImportError {
    fn from(e: StoreError) -> Self {
        ImportError::Fleet(e.into())
    }
}

fn list(problems: &[LineError]) -> String {
    let mut shown: Vec<String> = problems
        .iter()
        .take(PROBLEMS_SHOWN)
        .map(ToString::to_string)
        .collect();
    if problems.len() > PROBLEMS_SHOWN {
        shown.push(format!("... and {} more", problems.len() - PROBLEMS_SHOWN));
    }
    format!(
        "the file is refused, nothing was written:\n{}",
        shown.join("\n")
    )
}

/// One site of an import and what it does (or would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ImportedSite {
    pub id: String,
    /// Its line in the file.
    pub line: u64,
    /// For an update: the fields that change (`name`, `upstream`, `credential`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub fields: Vec<&'static str>,
}

/// What an import did, or with `dry_run` would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// Nothing was written.
    pub dry_run: bool,
    pub created: Vec<ImportedSite>,
    pub updated: Vec<ImportedSite>,
    pub unchanged: Vec<ImportedSite>,
}

/// An import checked and compared with the store: the writes it makes.
struct ImportPlan {
    report: ImportReport,
    writes: Vec<SiteWrite>,
}

/// What an import reads and how.
#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    pub format: Format,
    pub refs: SecretRefs,
    pub dry_run: bool,
}

impl Fleet {
    /// Imports an onboarding file: every row checked (all problems reported, each with
    /// its line; nothing written then), compared with the store, and the sites that
    /// change written in one transaction. With `dry_run`, only says what would change.
    pub async fn import_sites(
        &self,
        text: &str,
        options: ImportOptions,
        actor: &Actor,
    ) -> Result<ImportReport, ImportError> {
        let (rows, mut problems) = rows::parse(text, options.format);
        let mut sites = Vec::with_capacity(rows.len());
        let mut seen: HashMap<String, u64> = HashMap::with_capacity(rows.len());
        for (line, row) in rows {
            if let Some(id) = &row.id {
                if let Some(first) = seen.insert(id.clone(), line) {
                    problems.push(LineError::new(
                        line,
                        format!("id: {id:?} is already on line {first}"),
                    ));
                    seen.insert(id.clone(), first);
                }
            }
            match row.check(line, options.refs) {
                Ok(site) => sites.push(site),
                Err(found) => problems.extend(found.into_iter().map(|p| LineError::new(line, p))),
            }
        }
        if sites.is_empty() && problems.is_empty() {
            problems.push(LineError::new(1, "no site in the file"));
        }
        if !problems.is_empty() {
            problems.sort_by_key(|p| p.line);
            return Err(ImportError::Rows(problems));
        }
        let mut plan = self.plan_import(sites, actor).await?;
        if options.dry_run || plan.writes.is_empty() {
            plan.report.dry_run = options.dry_run;
            return Ok(plan.report);
        }
        self.store.write_sites(&plan.writes).await?;
        for write in &plan.writes {
            self.sites.invalidate(&write.site().id).await;
        }
        Ok(plan.report)
    }

    /// Compares each checked site with the stored one and prepares its write; a site
    /// that cannot be written as given is a problem of its line.
    async fn plan_import(
        &self,
        sites: Vec<ImportSite>,
        actor: &Actor,
    ) -> Result<ImportPlan, ImportError> {
        let mut plan = ImportPlan {
            report: ImportReport::default(),
            writes: Vec::new(),
        };
        let mut problems = Vec::new();
        for site in sites {
            let line = site.line;
            let id = site.id.to_string();
            let stored = self.store.get_site(&id).await?;
            let planned = match stored {
                None => self.plan_create(site, actor).map(|w| (w, Vec::new())),
                Some(current) => self.plan_update(site, current, actor),
            };
            let entry = |fields| ImportedSite {
                id: id.clone(),
                line,
                fields,
            };
            match planned {
                Err(problem) => problems.push(LineError::new(line, problem)),
                Ok((None, _)) => plan.report.unchanged.push(entry(Vec::new())),
                Ok((Some(write @ SiteWrite::Create { .. }), _)) => {
                    plan.report.created.push(entry(Vec::new()));
                    plan.writes.push(write);
                }
                Ok((Some(write @ SiteWrite::Update { .. }), fields)) => {
                    plan.report.updated.push(entry(fields));
                    plan.writes.push(write);
                }
            }
        }
        if problems.is_empty() {
            Ok(plan)
        } else {
            Err(ImportError::Rows(problems))
        }
    }

    fn plan_create(&self, site: ImportSite, actor: &Actor) -> Result<Option<SiteWrite>, String> {
        if site.kind.needs_secret() && site.secret.is_none() {
            return Err(format!(
                "secret: required for the new site {} (auth {})",
                site.id,
                rows::auth_name(site.kind)
            ));
        }
        let new = NewSite {
            id: site.id,
            name: site.name,
            upstream_url: site.upstream,
            credential: CredentialInput {
                kind: site.kind,
                username: site.username,
                secret: site.secret,
            },
        };
        let (record, detail) = self.new_site_record(new).map_err(|e| e.to_string())?;
        let audit = actor.site_audit(
            "site.create",
            &record.id,
            Some(format!("{detail} source=import")),
        );
        Ok(Some(SiteWrite::Create {
            site: record,
            audit,
        }))
    }

    /// The change a row makes to a stored site (`None`: none), and the fields it changes.
    fn plan_update(
        &self,
        site: ImportSite,
        current: SiteRecord,
        actor: &Actor,
    ) -> Result<(Option<SiteWrite>, Vec<&'static str>), String> {
        let stored = &current.credential;
        let stored_origin = UpstreamTarget::parse(&current.upstream_url).ok();
        let moves = stored_origin.as_ref().map(|t| t.origin.as_str()) != Some(site.origin.as_str());
        let same_shape = stored.kind == site.kind && stored.username == site.username;
        let credential_changes = match (&site.secret, site.kind.needs_secret()) {
            (_, false) => stored.kind != CredentialKind::None,
            (None, true) if !same_shape => {
                return Err(format!(
                    "secret: required: the stored credential is {} (a change of auth, user or \
                     header name needs its secret)",
                    shape(stored.kind, stored.username.as_deref())
                ))
            }
            (None, true) => {
                if moves && stored.sealed_secret.is_some() {
                    return Err(format!(
                        "secret: required: the upstream moves to {} and the stored credential \
                         is bound to its old origin",
                        site.origin
                    ));
                }
                false
            }
            (Some(given), true) => {
                !same_shape || !self.stored_secret_is(&current, stored_origin.as_ref(), given)
            }
        };
        let mut fields = Vec::new();
        let name = site.name.filter(|n| *n != current.name);
        if name.is_some() {
            fields.push("name");
        }
        let upstream = (site.upstream != current.upstream_url).then_some(site.upstream);
        if upstream.is_some() {
            fields.push("upstream");
        }
        if credential_changes {
            fields.push("credential");
        }
        if fields.is_empty() {
            return Ok((None, fields));
        }
        // The same secret moving to another origin is sealed again for it.
        let reseal = moves && site.secret.is_some();
        let changes = SiteChanges {
            name,
            upstream_url: upstream,
            enabled: None,
            credential: (credential_changes || reseal).then(|| CredentialInput {
                kind: site.kind,
                username: site.username,
                secret: site.secret,
            }),
        };
        let (record, detail) = self
            .changed_site(&current, changes)
            .map_err(|e| e.to_string())?;
        check_update(&current, &record).map_err(|e| e.to_string())?;
        let audit = actor.site_audit(
            "site.update",
            &record.id,
            Some(format!("{detail} source=import")),
        );
        Ok((
            Some(SiteWrite::Update {
                site: record,
                audit,
            }),
            fields,
        ))
    }

    /// Whether the site's stored upstream credential opens to `given` (compared in
    /// constant time). A credential that does not open is not the same.
    fn stored_secret_is(
        &self,
        current: &SiteRecord,
        upstream: Option<&UpstreamTarget>,
        given: &Secret,
    ) -> bool {
        let (Some(sealed), Some(upstream)) = (&current.credential.sealed_secret, upstream) else {
            return false;
        };
        let place = upstream_credential_place(&current.id, upstream);
        match self.keyring.load().open(&place, sealed) {
            Ok(stored) => stored.ct_eq(given.expose()),
            Err(_) => false,
        }
    }

    /// Every site as an onboarding file's rows (never a secret), by id.
    pub async fn export_sites(&self) -> Result<Vec<SiteRow>, FleetError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list_sites(after.as_deref(), EXPORT_PAGE).await?;
            let done = page.len() < EXPORT_PAGE as usize;
            after = page.last().map(|s| s.id.clone());
            out.extend(page.iter().map(SiteRow::of_site));
            if done {
                return Ok(out);
            }
        }
    }
}

/// A stored credential as the operator reads it (no secret).
fn shape(kind: CredentialKind, username: Option<&str>) -> String {
    match (kind, username) {
        (CredentialKind::AppPassword, Some(u)) => format!("app-password for user {u:?}"),
        (CredentialKind::Header, Some(h)) => format!("header {h:?}"),
        (kind, _) => rows::auth_name(kind).to_string(),
    }
}
