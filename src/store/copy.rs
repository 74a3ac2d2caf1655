//! Copies a whole store into an empty one (`wpgate store migrate`), e.g. from the
//! embedded SQLite file to PostgreSQL when a fleet outgrows one replica. Not the schema
//! migrations: those are `migrations/`, run when a store opens.
//!
//! Everything is copied as stored: sites (every column, versions and timestamps), API
//! keys, admin tokens, settings and the audit log with its ids. Sealed values are copied
//! byte for byte and never opened, so no keyring is needed here; the gateway on the new
//! store needs the same keyring as on the old one. The change log is not copied: it only
//! matters to the processes that served the old store.
//!
//! Records go over in batches, each batch one transaction on the target. The target
//! must be empty (a merge would have to pick between two API-key peppers and two
//! histories). Stop writes to the source while it runs (gateways may keep serving):
//! the copy is checked against the source's counts at the end.

use super::{ImportBatch, RecordCounts, Store, StoreError};
use std::time::Instant;

/// How to copy, and how to name the two stores in the report and errors (never with a
/// password: pass redacted URLs).
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Records per batch (one transaction each); at least 1.
    pub batch: u32,
    pub from: String,
    pub to: String,
}

/// What a copy copied.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CopyReport {
    pub from: String,
    pub to: String,
    pub copied: RecordCounts,
    pub batches: u64,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(
        "the target store {to} is not empty ({present}): `store migrate` copies into an \
         empty store only. A gateway started on it once creates the API-key pepper setting: \
         start from a freshly created database"
    )]
    TargetNotEmpty { to: String, present: RecordCounts },
    #[error(
        "the copy does not match the source: source now holds {source_now}, the target \
         {copied} (was the source written to meanwhile? stop writes, empty the target and \
         run again)"
    )]
    Mismatch {
        source_now: RecordCounts,
        copied: RecordCounts,
    },
    /// A store call failed; `step` says which part of the copy.
    #[error("{step}")]
    Step {
        step: &'static str,
        #[source]
        error: StoreError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Adds what a failed store call was doing.
trait Step<T> {
    fn step(self, step: &'static str) -> Result<T, CopyError>;
}

impl<T> Step<T> for Result<T, StoreError> {
    fn step(self, step: &'static str) -> Result<T, CopyError> {
        self.map_err(|error| CopyError::Step { step, error })
    }
}

/// Copies every record of `source` into the empty `target`, `options.batch` records per
/// transaction, and checks the copy against the source's counts.
pub async fn copy(
    source: &dyn Store,
    target: &dyn Store,
    options: &CopyOptions,
) -> Result<CopyReport, CopyError> {
    let started = Instant::now();
    let batch = options.batch.max(1);
    let size = usize::try_from(batch).unwrap_or(usize::MAX);
    let (from, to) = (options.from.as_str(), options.to.as_str());
    let present = target
        .record_counts()
        .await
        .step("cannot count the target's records")?;
    if !present.is_empty() {
        return Err(CopyError::TargetNotEmpty {
            to: to.to_string(),
            present,
        });
    }
    let expected = source
        .record_counts()
        .await
        .step("cannot count the source's records")?;
    tracing::info!(target: "wpgate::store", from, to, records = %expected, "copying the store");
    let mut batches = 0u64;
    let mut copy = |b: ImportBatch| {
        batches += 1;
        async move { target.import(&b).await }
    };

    // Settings and admin tokens are few: whole lists, cut into batches.
    let settings = source.export_settings().await?;
    for chunk in settings.chunks(size) {
        copy(ImportBatch {
            settings: chunk.to_vec(),
            ..ImportBatch::default()
        })
        .await
        .step("copying settings")?;
    }
    let tokens = source.list_admin_tokens().await?;
    for chunk in tokens.chunks(size) {
        copy(ImportBatch {
            admin_tokens: chunk.to_vec(),
            ..ImportBatch::default()
        })
        .await
        .step("copying admin tokens")?;
    }
    // Sites before their keys (the keys' foreign key).
    let mut after: Option<String> = None;
    loop {
        let page = source.list_sites(after.as_deref(), batch).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        copy(ImportBatch {
            sites: page,
            ..ImportBatch::default()
        })
        .await
        .step("copying sites")?;
    }
    let mut after: Option<String> = None;
    loop {
        let page = source.export_api_keys(after.as_deref(), batch).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.key_id.clone());
        copy(ImportBatch {
            api_keys: page,
            ..ImportBatch::default()
        })
        .await
        .step("copying API keys")?;
    }
    let mut after = 0;
    loop {
        let page = source.export_audit(after, batch).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        copy(ImportBatch {
            audit: page,
            ..ImportBatch::default()
        })
        .await
        .step("copying the audit log")?;
    }

    let copied = target.record_counts().await?;
    let source_now = source.record_counts().await?;
    if copied != source_now {
        return Err(CopyError::Mismatch { source_now, copied });
    }
    Ok(CopyReport {
        from: from.to_string(),
        to: to.to_string(),
        copied,
        batches,
        seconds: started.elapsed().as_secs_f64(),
    })
}
