//! The gateway's own checks: the keyring loads (never created here), the store answers,
//! its schema is this binary's, and every sealed record in it opens with the keyring.

use super::{Check, CheckName, SealedFailure, SealedRecords, Source};
use crate::crypto::{sealed_key_id, CryptoError, Keyring, KeyringError};
use crate::site::SiteId;
use crate::store::{SchemaStatus, SealedSlot, SealedValue, SiteRecord, Store, StoreError};
use std::path::Path;
use std::sync::Arc;

/// How many sealed values (and sites) one store call reads.
const PAGE: u32 = 500;
/// How many failing records a message names (the report lists them all).
const NAMED: usize = 10;

/// The keyring as the gateway would load it, without ever creating one: from
/// `env_text` (`WPGATE_KEYRING`) if given, else from `path`.
pub fn load_keyring(path: &Path, env_text: Option<&str>) -> Source<Arc<Keyring>> {
    let described = |k: Keyring, origin: String| {
        let text = format!(
            "{origin} ({} keys, primary {})",
            k.key_ids().count(),
            k.primary_id()
        );
        Source::Ready(Arc::new(k), text)
    };
    if let Some(text) = env_text {
        return match Keyring::parse(text, "from WPGATE_KEYRING") {
            Ok(k) => described(k, "WPGATE_KEYRING".into()),
            Err(e) => Source::Failed {
                message: e.to_string(),
                fix: Some(
                    "set WPGATE_KEYRING to the keyring the gateway runs with (its TOML text)"
                        .into(),
                ),
            },
        };
    }
    match Keyring::load_file(path) {
        Ok(k) => described(k, path.display().to_string()),
        Err(KeyringError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Source::Failed {
                message: format!(
                    "keyring file {} does not exist (a gateway creates it on its first start; \
                     wpgate doctor never does)",
                    path.display()
                ),
                fix: Some(
                    "restore the keyring from its backup (or pass it in WPGATE_KEYRING); for a \
                     new gateway, start it once with `wpgate serve`"
                        .into(),
                ),
            }
        }
        Err(e @ KeyringError::Permissions { .. }) => Source::Failed {
            message: e.to_string(),
            fix: Some(format!("`chmod 600 {}`", path.display())),
        },
        Err(e) => Source::Failed {
            message: e.to_string(),
            fix: Some("restore the keyring file from its backup".into()),
        },
    }
}

/// The store and schema checks; returns the store when it answers.
pub(super) async fn check_store<'a>(
    source: &'a Source<Arc<dyn Store>>,
    checks: &mut Vec<Check>,
) -> Option<&'a dyn Store> {
    let store = match source {
        Source::Ready(store, text) => match store.ping().await {
            Ok(()) => {
                checks.push(Check::pass(CheckName::Store, format!("{text} answers")));
                store.as_ref()
            }
            Err(e) => {
                checks.push(Check::fail(
                    CheckName::Store,
                    format!("{text} does not answer: {e}"),
                    Some(STORE_FIX.into()),
                ));
                checks.push(skipped_schema());
                return None;
            }
        },
        Source::Failed { message, fix } => {
            checks.push(Check::fail(
                CheckName::Store,
                message.clone(),
                fix.clone().or(Some(STORE_FIX.into())),
            ));
            checks.push(skipped_schema());
            return None;
        }
        Source::NotChecked(why) => {
            checks.push(Check::skip(CheckName::Store, why.clone()));
            checks.push(Check::skip(CheckName::Schema, why.clone()));
            return None;
        }
    };
    checks.push(match store.schema().await {
        Ok(status) => schema_check(&status),
        Err(e) => Check::fail(
            CheckName::Schema,
            format!("the applied migrations cannot be read: {e}"),
            None,
        ),
    });
    Some(store)
}

const STORE_FIX: &str = "check `store.url` in the configuration (or `--data-dir` for the \
    default SQLite file), that the database runs and is reachable from here, and that this \
    user may read it";

fn skipped_schema() -> Check {
    Check::skip(CheckName::Schema, "not checked: the store does not answer")
}

fn versions(v: &[i64]) -> String {
    v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
}

fn schema_check(s: &SchemaStatus) -> Check {
    if s.is_current() {
        return Check::pass(
            CheckName::Schema,
            format!(
                "{} migrations applied, exactly this binary's (latest {})",
                s.applied.len(),
                s.applied.last().copied().unwrap_or(0)
            ),
        );
    }
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    let (missing, unknown) = (s.missing(), s.unknown());
    if !missing.is_empty() {
        problems.push(format!(
            "the store lacks migration(s) {} of this binary (an older wpgate last opened it)",
            versions(&missing)
        ));
        fixes.push(
            "start this binary's gateway (`wpgate serve` migrates the store at start; so does \
             any store command such as `wpgate site list`); wpgate doctor never migrates",
        );
    }
    if !unknown.is_empty() {
        problems.push(format!(
            "the store has migration(s) {} this binary does not know (a newer wpgate \
             migrated it)",
            versions(&unknown)
        ));
        fixes.push("run the wpgate version that migrated the store (upgrade this one)");
    }
    if !s.changed.is_empty() {
        problems.push(format!(
            "migration(s) {} differ from this binary's (checksums)",
            versions(&s.changed)
        ));
        fixes.push("run the same wpgate build everywhere the store is used");
    }
    if !s.failed.is_empty() {
        problems.push(format!(
            "migration(s) {} are recorded as failed",
            versions(&s.failed)
        ));
        fixes.push(
            "read the log of the gateway start that failed, repair the database, then start \
             the gateway again",
        );
    }
    Check::fail(
        CheckName::Schema,
        problems.join("; "),
        Some(fixes.join("; ")),
    )
}

/// The keyring check: loaded, and every sealed record in the store opens with it.
pub(super) async fn check_keyring(
    source: &Source<Arc<Keyring>>,
    store: Option<&dyn Store>,
) -> (Check, SealedRecords) {
    let (keyring, text) = match source {
        Source::Ready(k, text) => (k, text),
        Source::Failed { message, fix } => {
            return (
                Check::fail(CheckName::Keyring, message.clone(), fix.clone()),
                SealedRecords::default(),
            )
        }
        Source::NotChecked(why) => {
            return (
                Check::skip(CheckName::Keyring, why.clone()),
                SealedRecords::default(),
            )
        }
    };
    let Some(store) = store else {
        return (
            Check::skip(
                CheckName::Keyring,
                format!(
                    "{text} loads; its sealed records were not checked: the store does not answer"
                ),
            ),
            SealedRecords::default(),
        );
    };
    let records = match open_every_sealed(store, keyring).await {
        Ok(records) => records,
        Err(e) => {
            return (
                Check::fail(
                    CheckName::Keyring,
                    format!("{text} loads, but the sealed records cannot be read: {e}"),
                    None,
                ),
                SealedRecords::default(),
            )
        }
    };
    (sealed_check(text, keyring, &records), records)
}

/// Opens every sealed value in the store (site credentials, JWT secrets, the API-key
/// pepper), page by page; never keeps what they open to.
async fn open_every_sealed(
    store: &dyn Store,
    keyring: &Keyring,
) -> Result<SealedRecords, StoreError> {
    let mut out = SealedRecords::default();
    let mut after: Option<SealedSlot> = None;
    loop {
        // No key has the empty id: every sealed value.
        let page = store.sealed_not_by("", after.as_ref(), PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(out);
        };
        after = Some(last.slot.clone());
        for value in &page {
            out.checked += 1;
            if let Err(reason) = open(keyring, value) {
                let (kind, id) = match &value.slot {
                    SealedSlot::SiteCredential(id) => ("site_credential", id),
                    SealedSlot::SiteJwtSecret(id) => ("site_jwt_secret", id),
                    SealedSlot::Setting(name) => ("setting", name),
                };
                out.failed.push(SealedFailure {
                    kind: kind.into(),
                    id: id.clone(),
                    key_id: sealed_key_id(&value.sealed).map(str::to_string),
                    reason,
                });
            }
        }
    }
}

/// Opens one value at its place; why not, in words (never the value).
fn open(keyring: &Keyring, value: &SealedValue) -> Result<(), String> {
    let place = value
        .place()
        .map_err(|e| format!("its site's upstream URL does not parse ({e})"))?;
    keyring
        .open(&place, &value.sealed)
        .map(drop)
        .map_err(|e| match e {
            CryptoError::UnknownKey(key) => {
                format!("sealed with key {key}, which the keyring lacks")
            }
            CryptoError::OpenFailed => format!(
                "does not open with key {}: sealed for another site or origin, altered, or that \
             key's secret is not the one it was sealed with",
                sealed_key_id(&value.sealed).unwrap_or("?")
            ),
            other => other.to_string(),
        })
}

fn describe(f: &SealedFailure) -> String {
    let what = match f.kind.as_str() {
        "site_credential" => format!("site {} upstream credential", f.id),
        "site_jwt_secret" => format!("site {} JWT secret", f.id),
        _ => format!("setting {}", f.id),
    };
    format!("{what} ({})", f.reason)
}

fn sealed_check(text: &str, keyring: &Keyring, records: &SealedRecords) -> Check {
    if records.failed.is_empty() {
        return Check::pass(
            CheckName::Keyring,
            format!(
                "{text}: all {} sealed records open (site credentials, JWT secrets, the \
                 API-key pepper)",
                records.checked
            ),
        );
    }
    let mut named: Vec<String> = records.failed.iter().take(NAMED).map(describe).collect();
    if records.failed.len() > NAMED {
        named.push(format!("and {} more", records.failed.len() - NAMED));
    }
    let mut missing: Vec<&str> = records
        .failed
        .iter()
        .filter_map(|f| f.key_id.as_deref())
        .filter(|k| !keyring.contains(k))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    let mut fixes = Vec::new();
    if !missing.is_empty() {
        fixes.push(format!(
            "put key(s) {} back into the keyring from its backup (a keyring change through \
             wpgate never drops a key still in use); if a key is lost, set each listed secret \
             again",
            missing.join(", ")
        ));
    }
    let sites: Vec<&str> = records
        .failed
        .iter()
        .filter(|f| f.kind != "setting")
        .map(|f| f.id.as_str())
        .collect();
    if !sites.is_empty() {
        fixes.push(
            "for a site credential: `wpgate site set-credential <site> ... --secret-stdin` (each \
             site's `record` check names the exact command); for a JWT secret: `wpgate site \
             set-auth <site> ... --jwt-secret-stdin`"
                .into(),
        );
    }
    if records.failed.iter().any(|f| f.kind == "setting") {
        fixes.push(
            "the API-key pepper does not open: no API key can be checked until its key is back \
             in the keyring"
                .into(),
        );
    }
    Check::fail(
        CheckName::Keyring,
        format!(
            "{text}: {} of {} sealed records do not open: {}",
            records.failed.len(),
            records.checked,
            named.join("; ")
        ),
        Some(fixes.join("; ")),
    )
}

/// The records of site `only`, or of every site, by id.
pub(super) async fn site_records(
    store: &dyn Store,
    only: Option<&SiteId>,
) -> Result<Vec<SiteRecord>, StoreError> {
    if let Some(id) = only {
        return Ok(store.get_site(id.as_str()).await?.into_iter().collect());
    }
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list_sites(after.as_deref(), PAGE).await?;
        let full = page.len() == PAGE as usize;
        after = page.last().map(|s| s.id.clone());
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_messages_name_versions_and_fixes() {
        let mut s = SchemaStatus {
            applied: vec![1, 2, 3],
            expected: vec![1, 2, 3],
            ..SchemaStatus::default()
        };
        let c = schema_check(&s);
        assert_eq!(c.status, super::super::Status::Pass, "{c:?}");
        assert!(c.message.contains("3 migrations applied"), "{c:?}");

        s.applied = vec![1, 2];
        let c = schema_check(&s);
        assert_eq!(c.status, super::super::Status::Fail);
        assert!(c.message.contains("lacks migration(s) 3"), "{c:?}");
        assert!(c.fix.as_deref().unwrap().contains("wpgate serve"), "{c:?}");

        s.applied = vec![1, 2, 3, 4];
        let c = schema_check(&s);
        assert!(
            c.message
                .contains("migration(s) 4 this binary does not know"),
            "{c:?}"
        );
    }

    #[test]
    fn a_missing_keyring_file_is_never_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.toml");
        match load_keyring(&path, None) {
            Source::Failed { message, .. } => assert!(message.contains("does not exist")),
            _ => panic!("a missing keyring must fail"),
        }
        assert!(!path.exists());
    }
}
