//! The fleet: sites and their API keys as the gateway uses them. Lookups go through the
//! caches (`lookup`); writes seal secrets, write their audit record in the same
//! transaction, and invalidate the cache entry at once (`writes`). The proxy, the CLI and
//! the admin API all go through here, so there is one way to change a site. `follow`
//! keeps the caches (and the fleet's allowed browser origins, `origins`) in step with
//! other processes' writes; `rotation` re-seals stored secrets with the keyring's primary;
//! `onboard` imports and exports many sites at once.

pub mod binding;
pub mod follow;
pub mod key_use;
mod lookup;
pub mod onboard;
pub mod origins;
pub mod rotation;
pub mod upkeep;
mod writes;

pub use lookup::{resolve, ResolvedSite};
pub use origins::FleetOrigins;
pub use writes::{
    Actor, AddedSite, CredentialInput, NewSite, RotatedKey, SiteChanges, SiteWarning,
    DEFAULT_ROTATION_GRACE,
};

use crate::auth::api_key::{self, KeyHasher};
use crate::auth::policy::InvalidPolicy;
use crate::cache::LookupCache;
use crate::config::Config;
use crate::credential::{credential_header, InvalidCredential};
use crate::crypto::{CryptoError, Keyring, KeyringError, KeyringSource, Place};
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::site::{InvalidAllowPath, InvalidOrigin, InvalidSiteId, InvalidText, InvalidUpstream};
use crate::store::{self, ApiKeyRecord, Store, StoreError};
use arc_swap::ArcSwap;
use std::sync::Arc;

/// The name of the sealed API-key pepper in the settings table.
const PEPPER_SETTING: &str = "api_key_pepper";

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error("a sealed value could not be opened")]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    SiteId(#[from] InvalidSiteId),
    #[error(transparent)]
    Upstream(#[from] InvalidUpstream),
    #[error(transparent)]
    Credential(#[from] InvalidCredential),
    #[error(transparent)]
    Policy(#[from] InvalidPolicy),
    #[error(transparent)]
    Routes(#[from] InvalidAllowPath),
    #[error(transparent)]
    Cors(#[from] InvalidOrigin),
    /// A text field (a name, a label, a secret) the operator gave is refused; the message
    /// names the field.
    #[error(transparent)]
    Text(#[from] InvalidText),
    #[error("{0}")]
    Invalid(String),
    /// The request is well-formed but what it names is in a state that refuses it (a
    /// key already revoked or expired cannot be rotated).
    #[error("{0}")]
    Conflict(String),
    /// A new credential failed its check against the site (the old one is kept).
    #[error("{0}")]
    Unconfirmed(String),
    /// A change would move a site's upstream to another origin without a new
    /// credential: the stored one is bound to the old origin.
    #[error(
        "site {site}: moving its upstream from {from} to {to} needs a new credential in the \
         same change (the stored one is bound to {from} and is never sent elsewhere)"
    )]
    CredentialRequired {
        site: String,
        from: String,
        to: String,
    },
    /// A site's stored upstream credential does not open for the site and the origin of
    /// its upstream: the site cannot be used until its credential is set again.
    #[error(
        "site {site}: its upstream credential cannot be used for {origin}: {reason}; \
         set it again (`wpgate site set-credential {site}`)"
    )]
    CredentialUnusable {
        site: String,
        origin: String,
        reason: String,
    },
}

/// Checks a site as it would be with a new credential, before the credential is stored
/// (the health check implements it). The error says why the credential is refused.
pub trait CredentialCheck: Sync {
    /// What a passed check found.
    type Checked: Send;
    fn check(
        &self,
        candidate: &ResolvedSite,
    ) -> impl std::future::Future<Output = Result<Self::Checked, String>> + Send;
}

pub struct Fleet {
    store: Arc<dyn Store>,
    keyring: ArcSwap<Keyring>,
    hasher: KeyHasher,
    sites: LookupCache<ResolvedSite>,
    keys: LookupCache<ApiKeyRecord>,
    /// The browser origins some site allows (empty until `reload_origins`).
    origins: FleetOrigins,
    /// Keys used since the last flush (`key_use`).
    key_use: key_use::KeyUse,
    metrics: Arc<Metrics>,
}

impl Fleet {
    /// Opens the store and keyring named by `config` (generating the keyring on first
    /// start), and loads or creates the API-key pepper.
    pub async fn open(
        config: &Config,
        metrics: Arc<Metrics>,
    ) -> Result<(Fleet, KeyringSource), FleetError> {
        create_private_dir(&config.boot.data_dir)?;
        let env_keyring = std::env::var("WPGATE_KEYRING").ok();
        let (keyring, source) =
            Keyring::load_or_create(&config.boot.keyring_file, env_keyring.as_deref())?;
        let store = store::open(&config.boot.store).await?;
        let fleet = Fleet::with_parts(store, keyring, config, metrics).await?;
        Ok((fleet, source))
    }

    pub async fn with_parts(
        store: Arc<dyn Store>,
        keyring: Keyring,
        config: &Config,
        metrics: Arc<Metrics>,
    ) -> Result<Fleet, FleetError> {
        check_keyring_covers(store.as_ref(), &keyring).await?;
        binding::bind_credentials(store.as_ref(), &keyring).await?;
        let pepper = load_or_create_pepper(store.as_ref(), &keyring).await?;
        let c = &config.boot.cache;
        Ok(Fleet {
            store,
            keyring: ArcSwap::from_pointee(keyring),
            hasher: KeyHasher::new(&pepper),
            sites: LookupCache::new(
                "sites",
                c.capacity,
                c.ttl,
                c.negative_ttl,
                c.max_stale,
                &metrics,
            ),
            keys: LookupCache::new(
                "api_keys",
                c.capacity,
                c.ttl,
                c.negative_ttl,
                c.max_stale,
                &metrics,
            ),
            origins: FleetOrigins::default(),
            key_use: key_use::KeyUse::new(),
            metrics,
        })
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The store, for a task that outlives a borrow (the health prober).
    pub fn shared_store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    /// The metrics this fleet (and what serves it) records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// Writes when the keys used since the last call were used (now), in one batch;
    /// returns how many keys. On failure they stay marked for the next call.
    pub async fn flush_key_use(&self) -> Result<usize, StoreError> {
        self.key_use
            .flush(self.store.as_ref(), crate::time::now_unix())
            .await
    }

    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring.load_full()
    }

    /// Swaps in a new keyring (checked with `check_keyring_covers` first). Cached
    /// sites keep their opened credentials; new loads open with the new keyring.
    pub fn set_keyring(&self, keyring: Keyring) {
        self.keyring.store(Arc::new(keyring));
    }
}

/// Creates the data directory readable by its owner only (it holds the store and,
/// by default, the keyring). An existing directory is left as it is.
fn create_private_dir(dir: &std::path::Path) -> Result<(), FleetError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            FleetError::Invalid(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })
}

/// How many stored records each key seals, refusing a keyring that lacks a key still in
/// use (naming the key and the count): no keyring change can make data unreadable.
pub async fn check_keyring_covers(
    store: &dyn Store,
    keyring: &Keyring,
) -> Result<Vec<(String, i64)>, FleetError> {
    let counts = store.sealed_key_counts().await?;
    if let Some((key_id, count)) = counts.iter().find(|(k, _)| !keyring.contains(k)) {
        return Err(KeyringError::MissingInUse {
            key_id: key_id.clone(),
            count: *count,
        }
        .into());
    }
    Ok(counts)
}

async fn load_or_create_pepper(store: &dyn Store, keyring: &Keyring) -> Result<Secret, FleetError> {
    let place = Place::global(PEPPER_SETTING);
    let sealed = match store.get_setting(PEPPER_SETTING).await? {
        Some(sealed) => sealed,
        None => {
            let fresh = keyring.seal(&place, api_key::new_pepper().expose())?;
            // If another process created one first, everyone uses that one.
            store
                .insert_setting_if_absent(PEPPER_SETTING, &fresh)
                .await?
        }
    };
    Ok(keyring.open(&place, &sealed)?)
}

/// The authenticator finds API keys in the fleet's key cache.
impl crate::auth::KeyLookup for Fleet {
    fn key_hasher(&self) -> &KeyHasher {
        self.hasher()
    }

    fn key_at(
        &self,
        key_id: &str,
        at: std::time::Instant,
    ) -> impl std::future::Future<Output = Result<Option<Arc<ApiKeyRecord>>, Arc<StoreError>>> + Send
    {
        self.find_key_at(key_id, at)
    }

    fn key_used(&self, record: &ApiKeyRecord) {
        self.key_use.mark_once(&record.key_id, &record.marked);
    }
}
