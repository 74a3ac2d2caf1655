//! The fleet: sites and their API keys as the gateway uses them. Lookups go through the
//! caches; writes seal secrets, write their audit record in the same transaction, and
//! invalidate the cache entry at once. The proxy, the CLI and (later) the admin API all
//! go through here, so there is one way to change a site.

use crate::auth::api_key::{self, KeyHasher};
use crate::auth::policy::{AuthPolicy, InvalidPolicy, SiteAuth};
use crate::cache::LookupCache;
use crate::config::Config;
use crate::credential::{credential_header, InvalidCredential};
use crate::crypto::{CryptoError, Keyring, KeyringError, KeyringSource, Place};
use crate::secret::Secret;
use crate::site::{CredentialKind, InvalidSiteId, InvalidUpstream, SiteId, UpstreamTarget};
use crate::store::{
    self, ApiKeyRecord, AuditEntry, SiteRecord, Store, StoreError, StoredCredential,
    JWT_SECRET_FIELD, UPSTREAM_CREDENTIAL_FIELD,
};
use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
    #[error("{0}")]
    Invalid(String),
    /// A new credential failed its check against the site (the old one is kept).
    #[error("{0}")]
    Unconfirmed(String),
}

/// A site ready for the request path: upstream parsed and resolved, credential opened
/// and rendered as the header to inject.
pub struct ResolvedSite {
    pub id: String,
    pub enabled: bool,
    /// The upstream base URL as configured (for calls wpgate makes itself).
    pub upstream_url: String,
    pub upstream: UpstreamTarget,
    /// `None` when the host name did not resolve at load time.
    pub addr: Option<SocketAddr>,
    pub inject: Option<(HeaderName, HeaderValue)>,
    pub auth: SiteAuth,
    /// For the health check: the credential kind and its user or header name.
    pub credential_kind: CredentialKind,
    pub credential_username: Option<String>,
    pub required_namespaces: Vec<String>,
    pub health_fail_fast: bool,
    /// This site's request counters, resolved once (see `metrics::SiteCounters`).
    pub counters: crate::metrics::SiteCounters,
}

impl std::fmt::Debug for ResolvedSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedSite")
            .field("id", &self.id)
            .field("enabled", &self.enabled)
            .field("upstream", &self.upstream)
            .field("addr", &self.addr)
            .field("inject", &self.inject.as_ref().map(|(n, _)| n))
            .finish()
    }
}

/// A new or replacement upstream credential, as an operator gives it.
#[derive(Debug, Clone)]
pub struct CredentialInput {
    pub kind: CredentialKind,
    /// WordPress user (app_password) or header name (header).
    pub username: Option<String>,
    pub secret: Option<Secret>,
}

/// Who makes a change, as the audit log records it: `cli:<user>` or `admin:<token>`,
/// and the request id of the admin API call that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub request_id: Option<String>,
}

impl Actor {
    /// An actor outside any request (the CLI).
    pub fn new(name: impl Into<String>) -> Self {
        Actor {
            name: name.into(),
            request_id: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewSite {
    pub id: String,
    pub name: Option<String>,
    pub upstream_url: String,
    pub credential: CredentialInput,
}

pub struct Fleet {
    store: Arc<dyn Store>,
    keyring: ArcSwap<Keyring>,
    hasher: KeyHasher,
    sites: LookupCache<ResolvedSite>,
    keys: LookupCache<ApiKeyRecord>,
}

impl Fleet {
    /// Opens the store and keyring named by `config` (generating the keyring on first
    /// start), and loads or creates the API-key pepper.
    pub async fn open(config: &Config) -> Result<(Fleet, KeyringSource), FleetError> {
        create_private_dir(&config.data_dir)?;
        let env_keyring = std::env::var("WPGATE_KEYRING").ok();
        let (keyring, source) =
            Keyring::load_or_create(&config.keyring_file, env_keyring.as_deref())?;
        let store = store::open(&config.store).await?;
        let fleet = Fleet::with_parts(store, keyring, config).await?;
        Ok((fleet, source))
    }

    pub async fn with_parts(
        store: Arc<dyn Store>,
        keyring: Keyring,
        config: &Config,
    ) -> Result<Fleet, FleetError> {
        check_keyring_covers(store.as_ref(), &keyring).await?;
        let pepper = load_or_create_pepper(store.as_ref(), &keyring).await?;
        let c = &config.cache;
        Ok(Fleet {
            store,
            keyring: ArcSwap::from_pointee(keyring),
            hasher: KeyHasher::new(&pepper),
            sites: LookupCache::new("sites", c.capacity, c.ttl, c.negative_ttl, c.max_stale),
            keys: LookupCache::new("api_keys", c.capacity, c.ttl, c.negative_ttl, c.max_stale),
        })
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring.load_full()
    }

    /// Swaps in a new keyring (checked with `check_keyring_covers` first). Cached
    /// sites keep their opened credentials; new loads open with the new keyring.
    pub fn set_keyring(&self, keyring: Keyring) {
        self.keyring.store(Arc::new(keyring));
    }

    // ---- the request path ----

    /// The site for `id`, from the cache or the store (single-flight).
    pub async fn resolve_site(
        &self,
        id: &str,
    ) -> Result<Option<Arc<ResolvedSite>>, Arc<FleetError>> {
        self.resolve_site_at(id, std::time::Instant::now()).await
    }

    /// `resolve_site` with cache freshness judged at `now` (the request's start).
    pub async fn resolve_site_at(
        &self,
        id: &str,
        now: std::time::Instant,
    ) -> Result<Option<Arc<ResolvedSite>>, Arc<FleetError>> {
        self.sites
            .get_or_load_at(id, now, || async {
                let found = self
                    .store
                    .get_site(id)
                    .await
                    .inspect_err(|_| store_error("get_site"))?;
                match found {
                    None => Ok(None),
                    Some(record) => resolve(&record, &self.keyring.load()).await.map(Some),
                }
            })
            .await
    }

    /// Forgets what a change made by another process touched.
    pub async fn apply_change(&self, change: &store::Change) {
        match change.kind {
            store::ChangeKind::Site => self.sites.invalidate(&change.id).await,
            store::ChangeKind::ApiKey => self.keys.invalidate(&change.id).await,
            store::ChangeKind::AdminToken | store::ChangeKind::Setting => {}
        }
    }

    /// Forgets every cached site and key.
    pub fn forget_all(&self) {
        self.sites.invalidate_all();
        self.keys.invalidate_all();
    }

    /// The site for `id` if it is cached; never reads the store.
    pub fn cached_site(&self, id: &str) -> Option<Arc<ResolvedSite>> {
        self.sites.peek(id)
    }

    /// The API key record for `key_id`, from the cache or the store.
    pub async fn find_key(
        &self,
        key_id: &str,
    ) -> Result<Option<Arc<ApiKeyRecord>>, Arc<StoreError>> {
        self.find_key_at(key_id, std::time::Instant::now()).await
    }

    /// `find_key` with cache freshness judged at `now` (the request's start).
    pub async fn find_key_at(
        &self,
        key_id: &str,
        now: std::time::Instant,
    ) -> Result<Option<Arc<ApiKeyRecord>>, Arc<StoreError>> {
        self.keys
            .get_or_load_at(key_id, now, || async {
                self.store
                    .get_api_key(key_id)
                    .await
                    .inspect_err(|_| store_error("get_api_key"))
            })
            .await
    }

    // ---- operator operations ----

    pub async fn add_site(&self, new: NewSite, actor: &Actor) -> Result<SiteRecord, FleetError> {
        let id: SiteId = new.id.parse()?;
        UpstreamTarget::parse(&new.upstream_url)?;
        let credential = self.seal_credential(&id, &new.credential)?;
        let now = crate::time::now_unix();
        let record = SiteRecord {
            id: id.to_string(),
            name: new.name.unwrap_or_else(|| id.to_string()),
            upstream_url: new.upstream_url,
            enabled: true,
            credential,
            auth_policy: None,
            jwt_secret_sealed: None,
            required_namespaces: Vec::new(),
            health_fail_fast: false,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let audit = audit(
            actor,
            "site.create",
            &id,
            Some(format!(
                "upstream={} credential={}",
                record.upstream_url,
                record.credential.kind.as_str()
            )),
        );
        self.store.create_site(&record, &audit).await?;
        self.sites.invalidate(id.as_str()).await;
        Ok(record)
    }

    pub async fn site(&self, id: &str) -> Result<SiteRecord, FleetError> {
        self.store
            .get_site(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("site {id}")).into())
    }

    pub async fn set_enabled(
        &self,
        id: &str,
        enabled: bool,
        actor: &Actor,
    ) -> Result<SiteRecord, FleetError> {
        let mut record = self.site(id).await?;
        record.enabled = enabled;
        let action = if enabled {
            "site.enable"
        } else {
            "site.disable"
        };
        self.update(record, action, None, actor).await
    }

    pub async fn set_credential(
        &self,
        id: &str,
        credential: &CredentialInput,
        actor: &Actor,
    ) -> Result<SiteRecord, FleetError> {
        let mut record = self.site(id).await?;
        let site_id: SiteId = record.id.parse()?;
        record.credential = self.seal_credential(&site_id, credential)?;
        let detail = Some(format!("credential={}", credential.kind.as_str()));
        self.update(record, "site.set_credential", detail, actor)
            .await
    }

    /// Rotation without a gap: checks the new credential against the site first (its
    /// index answers, and `users/me` accepts the credential) and stores it only when the
    /// check passes. Until then the old credential keeps serving; on failure it stays,
    /// and the error says what the site answered.
    pub async fn set_credential_confirmed(
        &self,
        id: &str,
        credential: &CredentialInput,
        client: &reqwest::Client,
        timeout: Duration,
        actor: &Actor,
    ) -> Result<(SiteRecord, crate::health::HealthReport), FleetError> {
        let mut record = self.site(id).await?;
        let site_id: SiteId = record.id.parse()?;
        record.credential = self.seal_credential(&site_id, credential)?;
        let candidate = resolve(&record, &self.keyring.load()).await?;
        let target = crate::health_targets::probe_target(&candidate);
        let report = crate::health::probe(client, &target, timeout).await;
        use crate::health::HealthState;
        if !matches!(report.state, HealthState::Healthy | HealthState::Degraded) {
            return Err(FleetError::Unconfirmed(format!(
                "the new credential was not confirmed ({}): {}; the old credential is kept",
                report.state.as_str(),
                report.message
            )));
        }
        let detail = Some(format!(
            "credential={} confirmed=users/me",
            credential.kind.as_str()
        ));
        let updated = self
            .update(record, "site.set_credential", detail, actor)
            .await?;
        Ok((updated, report))
    }

    /// Replaces a site's client authentication policy. `hmac_secret` replaces the JWT
    /// HMAC secret; without it a secret already stored is kept if the policy needs one.
    pub async fn set_auth_policy(
        &self,
        id: &str,
        policy: &AuthPolicy,
        hmac_secret: Option<Secret>,
        actor: &Actor,
    ) -> Result<SiteRecord, FleetError> {
        let mut record = self.site(id).await?;
        let place = Place::site(&record.id, JWT_SECRET_FIELD);
        let keyring = self.keyring.load();
        let sealed = match (&hmac_secret, policy.needs_hmac_secret()) {
            (Some(secret), true) => Some(keyring.seal(&place, secret.expose())?),
            (Some(_), false) => {
                return Err(FleetError::Invalid(
                    "an HMAC secret was given but the policy allows no HS* algorithm".into(),
                ))
            }
            (None, true) => record.jwt_secret_sealed.clone(),
            (None, false) => None,
        };
        // Validate now, with the secret the site will use.
        let secret = match &sealed {
            Some(s) => Some(keyring.open(&place, s)?),
            None => None,
        };
        policy.build(secret)?;
        record.auth_policy = Some(policy.to_json());
        record.jwt_secret_sealed = sealed;
        let detail = Some(format!(
            "methods={}",
            policy
                .methods
                .iter()
                .map(|m| format!("{m:?}"))
                .collect::<Vec<_>>()
                .join(",")
        ));
        self.update(record, "site.set_auth", detail, actor).await
    }

    /// Sets a site's health settings.
    pub async fn set_health(
        &self,
        id: &str,
        required_namespaces: Vec<String>,
        fail_fast: bool,
        actor: &Actor,
    ) -> Result<SiteRecord, FleetError> {
        for ns in &required_namespaces {
            let ok = !ns.is_empty()
                && ns.len() <= 128
                && ns
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'));
            if !ok {
                return Err(FleetError::Invalid(format!(
                    "{ns:?} is not a REST namespace (e.g. myplugin/v1)"
                )));
            }
        }
        let mut record = self.site(id).await?;
        record.required_namespaces = required_namespaces;
        record.health_fail_fast = fail_fast;
        let detail = Some(format!(
            "required_namespaces={} fail_fast={fail_fast}",
            record.required_namespaces.join(",")
        ));
        self.update(record, "site.set_health", detail, actor).await
    }

    /// Writes `record` (optimistic concurrency on its version) and forgets the cached copy.
    pub async fn update(
        &self,
        record: SiteRecord,
        action: &str,
        detail: Option<String>,
        actor: &Actor,
    ) -> Result<SiteRecord, FleetError> {
        UpstreamTarget::parse(&record.upstream_url)?;
        let site_id: SiteId = record.id.parse()?;
        let updated = self
            .store
            .update_site(&record, &audit(actor, action, &site_id, detail))
            .await?;
        self.sites.invalidate(&record.id).await;
        Ok(updated)
    }

    pub async fn remove_site(&self, id: &str, actor: &Actor) -> Result<(), FleetError> {
        let site_id: SiteId = id.parse()?;
        let keys = self.store.list_api_keys(id).await?;
        self.store
            .delete_site(id, &audit(actor, "site.delete", &site_id, None))
            .await?;
        self.sites.invalidate(id).await;
        for k in keys {
            self.keys.invalidate(&k.key_id).await;
        }
        Ok(())
    }

    /// Issues a key for `site_id`. The returned secret is the whole key: show it once.
    pub async fn issue_key(
        &self,
        site_id: &str,
        label: Option<String>,
        expires_in: Option<Duration>,
        actor: &Actor,
    ) -> Result<(ApiKeyRecord, Secret), FleetError> {
        let site = self.site(site_id).await?;
        let (key_id, key) = api_key::generate();
        let text = key.expose_str().unwrap_or_default();
        let parsed = api_key::parse(text)
            .ok_or_else(|| FleetError::Invalid("generated key does not parse".into()))?;
        let now = crate::time::now_unix();
        let record = ApiKeyRecord {
            key_id: key_id.clone(),
            site_id: site.id.clone(),
            label,
            secret_hash: self.hasher.hash(parsed.secret.as_bytes()).to_vec(),
            created_at: now,
            expires_at: expires_in.map(crate::time::unix_after),
            revoked_at: None,
            grace_until: None,
        };
        let entry = AuditEntry {
            actor: actor.name.clone(),
            action: "key.issue".into(),
            target: format!("key:{key_id}"),
            site_id: Some(site.id.clone()),
            request_id: actor.request_id.clone(),
            detail: Some(format!("site={}", site.id)),
        };
        self.store.insert_api_key(&record, &entry).await?;
        self.keys.invalidate(&key_id).await;
        Ok((record, key))
    }

    /// Revokes a key; with `grace` it keeps working that much longer.
    pub async fn revoke_key(
        &self,
        key_id: &str,
        grace: Option<Duration>,
        actor: &Actor,
    ) -> Result<ApiKeyRecord, FleetError> {
        let now = crate::time::now_unix();
        // No grace: refused from this second on. A grace: accepted for at least that long.
        let grace_until = match grace.filter(|g| !g.is_zero()) {
            None => now,
            Some(g) => crate::time::unix_after(g),
        };
        // Found first: a key that does not exist is an error, and the entry names its site.
        let key = self
            .store
            .get_api_key(key_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("key {key_id}")))?;
        let entry = AuditEntry {
            actor: actor.name.clone(),
            action: "key.revoke".into(),
            target: format!("key:{key_id}"),
            site_id: Some(key.site_id.clone()),
            request_id: actor.request_id.clone(),
            detail: grace.map(|g| format!("grace={}", humantime::format_duration(g))),
        };
        let record = self
            .store
            .revoke_api_key(key_id, now, grace_until, &entry)
            .await?;
        self.keys.invalidate(key_id).await;
        Ok(record)
    }

    fn seal_credential(
        &self,
        site: &SiteId,
        input: &CredentialInput,
    ) -> Result<StoredCredential, FleetError> {
        // Render the header once now: a credential that cannot be sent is refused here,
        // not discovered on the first request.
        if input.kind.needs_secret() {
            let secret = input.secret.as_ref().ok_or_else(|| {
                FleetError::Invalid(format!(
                    "credential kind {} needs a secret (--secret-stdin)",
                    input.kind.as_str()
                ))
            })?;
            credential_header(input.kind, input.username.as_deref(), secret)?;
        } else if input.secret.is_some() || input.username.is_some() {
            return Err(FleetError::Invalid(
                "credential kind none takes no secret or user name".into(),
            ));
        }
        let sealed_secret = match &input.secret {
            Some(secret) => Some(self.keyring.load().seal(
                &Place::site(site.as_str(), UPSTREAM_CREDENTIAL_FIELD),
                secret.expose(),
            )?),
            None => None,
        };
        Ok(StoredCredential {
            kind: input.kind,
            username: input.username.clone(),
            sealed_secret,
        })
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

fn store_error(op: &str) {
    if let Some(m) = crate::metrics::get() {
        m.store_errors.with_label_values(&[op]).inc();
    }
}

fn audit(actor: &Actor, action: &str, site: &SiteId, detail: Option<String>) -> AuditEntry {
    AuditEntry {
        actor: actor.name.clone(),
        action: action.to_string(),
        target: format!("site:{site}"),
        site_id: Some(site.to_string()),
        request_id: actor.request_id.clone(),
        detail,
    }
}

/// Builds the request-path view of a site record.
async fn resolve(record: &SiteRecord, keyring: &Keyring) -> Result<ResolvedSite, FleetError> {
    let upstream = UpstreamTarget::parse(&record.upstream_url)?;
    let inject = match (&record.credential.kind, &record.credential.sealed_secret) {
        (CredentialKind::None, _) => None,
        (kind, Some(sealed)) => {
            let secret =
                keyring.open(&Place::site(&record.id, UPSTREAM_CREDENTIAL_FIELD), sealed)?;
            Some(credential_header(
                *kind,
                record.credential.username.as_deref(),
                &secret,
            )?)
        }
        (kind, None) => {
            return Err(FleetError::Invalid(format!(
                "site {} has credential kind {} but no secret",
                record.id,
                kind.as_str()
            )))
        }
    };
    let policy = AuthPolicy::from_json(record.auth_policy.as_deref())?;
    let jwt_secret = match &record.jwt_secret_sealed {
        Some(sealed) => Some(keyring.open(&Place::site(&record.id, JWT_SECRET_FIELD), sealed)?),
        None => None,
    };
    let auth = policy.build(jwt_secret)?;
    let addr = match tokio::net::lookup_host((upstream.host.as_str(), upstream.port)).await {
        Ok(mut addrs) => addrs.next(),
        Err(e) => {
            tracing::warn!(site = %record.id, host = %upstream.host, error = %e, "upstream host does not resolve");
            None
        }
    };
    Ok(ResolvedSite {
        id: record.id.clone(),
        enabled: record.enabled,
        upstream_url: record.upstream_url.trim_end_matches('/').to_string(),
        upstream,
        addr,
        inject,
        auth,
        credential_kind: record.credential.kind,
        credential_username: record.credential.username.clone(),
        required_namespaces: record.required_namespaces.clone(),
        health_fail_fast: record.health_fail_fast,
        counters: crate::metrics::SiteCounters::default(),
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
