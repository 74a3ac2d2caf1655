//! Binding upstream credentials to their origin.
//!
//! A site's upstream credential is sealed for the site and the origin of its upstream
//! (format `v2`, see `crypto`), so it opens for no other host. Credentials sealed by
//! earlier versions (format `v1`) are bound to their site only. Whenever the store is
//! opened with the keyring (`Fleet::open`: `wpgate serve` and every CLI command), those
//! still in `v1` are re-sealed in `v2`, bound to the origin of their site's upstream as
//! it is then, a batch per transaction, each with its audit entry
//! (`site.bind_credential`). The request path never opens a `v1` credential: one that
//! cannot be re-sealed (it does not open: copied from another site, or altered) is
//! reported in the log at every start, and its site is unusable until its credential
//! is set again.
//!
//! Several processes may do this at once (replicas starting together): a re-seal
//! replaces a value only where the site still holds it with the upstream URL it was
//! read with, so one process wins and the others change nothing.

use super::{Actor, FleetError};
use crate::crypto::Keyring;
use crate::site::UpstreamTarget;
use crate::store::{upstream_credential_place, Reseal, SealedSlot, SealedValue, Store};

/// Credentials re-sealed per transaction.
const BATCH: u32 = 100;

/// Who the audit log names for a re-seal at start-up.
pub const ACTOR: &str = "wpgate:start-up";

/// What a run of [`bind_credentials`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BindReport {
    /// Credentials this run re-sealed bound to their origin.
    pub bound: u64,
    /// Sites whose `v1` credential could not be re-sealed (it does not open).
    pub unusable: Vec<String>,
}

/// Re-seals every upstream credential still in format `v1`, bound to the origin of its
/// site's upstream. Idempotent; a value that cannot be re-sealed is logged and left.
pub async fn bind_credentials(
    store: &dyn Store,
    keyring: &Keyring,
) -> Result<BindReport, FleetError> {
    let actor = Actor::new(ACTOR);
    let mut report = BindReport::default();
    let mut after: Option<String> = None;
    loop {
        let values = store.unbound_credentials(after.as_deref(), BATCH).await?;
        let full = values.len() >= BATCH as usize;
        let Some(last) = values.last() else { break };
        after = Some(last.slot.position().1.to_string());
        let mut batch = Vec::with_capacity(values.len());
        for old in values {
            let SealedSlot::SiteCredential(site) = &old.slot else {
                continue;
            };
            match rebind(keyring, site, &old) {
                Ok((new_sealed, origin)) => {
                    let audit = actor.audit(
                        "site.bind_credential",
                        format!("site:{site}"),
                        Some(site.clone()),
                        Some(format!("origin={origin}")),
                    );
                    batch.push((Reseal { old, new_sealed }, audit));
                }
                Err(reason) => {
                    tracing::warn!(
                        site = %site,
                        reason = %reason,
                        "the site's upstream credential was sealed before credentials were \
                         bound to their origin and cannot be re-sealed: the site is unusable \
                         until its credential is set again (wpgate site set-credential)"
                    );
                    report.unusable.push(site.clone());
                }
            }
        }
        if !batch.is_empty() {
            report.bound += store.bind_credentials(&batch).await?;
        }
        if !full {
            break;
        }
    }
    if report.bound > 0 {
        tracing::info!(
            bound = report.bound,
            "upstream credentials re-sealed, bound to the origin of their site's upstream"
        );
    }
    Ok(report)
}

/// The value opened in its `v1` place and sealed again for its site's origin, with that
/// origin; or why it cannot be (never the secret).
fn rebind(keyring: &Keyring, site: &str, old: &SealedValue) -> Result<(String, String), String> {
    let upstream = UpstreamTarget::parse(old.upstream_url.as_deref().unwrap_or_default())
        .map_err(|e| e.to_string())?;
    let place = old.place().map_err(|e| e.to_string())?;
    let secret = keyring
        .open(&place, &old.sealed)
        .map_err(|e| e.to_string())?;
    let sealed = keyring
        .seal(&upstream_credential_place(site, &upstream), secret.expose())
        .map_err(|e| e.to_string())?;
    Ok((sealed, upstream.origin))
}
