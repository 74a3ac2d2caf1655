//! Keyring rotation: re-sealing every stored secret with the primary key.
//!
//! `rewrap` works batch by batch; each batch is one transaction that replaces a value
//! only where the store still holds the exact text it read (a concurrent write by this
//! or another replica wins and is already sealed with a current key). Every record is
//! readable at every moment — before, during, after, or after a crash in between — as
//! long as the keyring holds both the old and the new key; running it again resumes.

use super::{check_keyring_covers, Actor, FleetError};
use crate::crypto::Keyring;
use crate::store::{Reseal, SealedSlot, Store};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RewrapProgress {
    /// Values re-sealed with the primary by this run.
    pub resealed: u64,
    /// Values left to re-seal when the run started.
    pub total: u64,
    pub batches: u64,
}

/// Re-seals every value not sealed with the keyring's primary, `batch` at a time;
/// `progress` is called after each committed batch.
pub async fn rewrap(
    store: &dyn Store,
    keyring: &Keyring,
    batch: u32,
    actor: &Actor,
    mut progress: impl FnMut(&RewrapProgress),
) -> Result<RewrapProgress, FleetError> {
    check_keyring_covers(store, keyring).await?;
    let primary = keyring.primary_id().to_string();
    let total: i64 = store
        .sealed_key_counts()
        .await?
        .iter()
        .filter(|(k, _)| *k != primary)
        .map(|(_, n)| n)
        .sum();
    let mut done = RewrapProgress {
        total: total.max(0) as u64,
        ..Default::default()
    };
    // Read in slot order with a cursor, so each value is read once (no rescans of the
    // values already done). A value whose re-seal lost to a concurrent write is left
    // to a final pass from the start, which ends the run when it finds nothing.
    let mut after: Option<SealedSlot> = None;
    let mut from_start = true;
    loop {
        let values = store
            .sealed_not_by(&primary, after.as_ref(), batch.max(1))
            .await?;
        let Some(last) = values.last() else {
            if from_start {
                return Ok(done);
            }
            after = None;
            from_start = true;
            continue;
        };
        from_start = false;
        after = Some(last.slot.clone());
        let mut reseals = Vec::with_capacity(values.len());
        for old in values {
            let place = old.place()?;
            let plain = keyring.open(&place, &old.sealed)?;
            let new_sealed = keyring.seal(&place, plain.expose())?;
            reseals.push(Reseal { old, new_sealed });
        }
        let audit = actor.audit(
            "keyring.rewrap",
            format!("keyring:{primary}"),
            None,
            Some(format!("batch of {}", reseals.len())),
        );
        let n = store.reseal(&reseals, &audit).await?;
        done.resealed += n;
        done.batches += 1;
        progress(&done);
    }
}
