//! Operator changes: sites, their upstream credentials and client authentication, and
//! API keys. Each write seals its secrets, records who did it in the same transaction,
//! and drops the cached copy at once.

use super::lookup::resolve;
use super::{credential_header, CredentialCheck, Fleet, FleetError};
use crate::auth::api_key;
use crate::auth::policy::AuthPolicy;
use crate::crypto::Place;
use crate::secret::Secret;
use crate::site::{
    check_secret, check_text, CorsAllow, CredentialKind, RouteAllow, SiteId, UpstreamTarget,
};
use crate::store::{
    upstream_credential_place, ApiKeyRecord, AuditEntry, SiteRecord, StoreError, StoredCredential,
    JWT_SECRET_FIELD,
};
use std::time::Duration;

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

    /// The audit entry recording that this actor did `action` to `target`
    /// (`site:<id>`, `key:<id>`, ...), about `site_id` if it concerns one site.
    pub fn audit(
        &self,
        action: &str,
        target: String,
        site_id: Option<String>,
        detail: Option<String>,
    ) -> AuditEntry {
        AuditEntry {
            actor: self.name.clone(),
            action: action.to_string(),
            target,
            site_id,
            request_id: self.request_id.clone(),
            detail,
        }
    }

    /// The audit entry of a change to `site`.
    pub(super) fn site_audit(
        &self,
        action: &str,
        site: &str,
        detail: Option<String>,
    ) -> AuditEntry {
        self.audit(
            action,
            format!("site:{site}"),
            Some(site.to_string()),
            detail,
        )
    }
}

/// Something about a change that goes through but that the operator should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteWarning {
    /// Other sites already use this upstream URL (as written, ignoring a trailing
    /// slash): their requests all reach one WordPress.
    SharedUpstream {
        upstream: String,
        sites: Vec<String>,
    },
}

impl std::fmt::Display for SiteWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SiteWarning::SharedUpstream { upstream, sites } => write!(
                f,
                "upstream {upstream} is already used by site{} {}",
                if sites.len() == 1 { "" } else { "s" },
                sites.join(", ")
            ),
        }
    }
}

/// A site just added, and what the operator should know about it.
#[derive(Debug, Clone)]
pub struct AddedSite {
    pub record: SiteRecord,
    pub warnings: Vec<SiteWarning>,
}

/// How long a rotated key keeps working when the caller names no grace.
pub const DEFAULT_ROTATION_GRACE: Duration = Duration::from_secs(24 * 3600);

/// A rotation: the successor (its whole key shown once) and the old key as revoked.
pub struct RotatedKey {
    pub new: ApiKeyRecord,
    /// The whole new key: show it once.
    pub key: Secret,
    pub old: ApiKeyRecord,
}

/// How many other sites a shared-upstream warning names at most.
const SHARED_UPSTREAM_NAMED: u32 = 5;

#[derive(Debug, Clone)]
pub struct NewSite {
    pub id: SiteId,
    pub name: Option<String>,
    pub upstream_url: String,
    pub credential: CredentialInput,
}

/// What [`Fleet::change_site`] changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct SiteChanges {
    pub name: Option<String>,
    pub upstream_url: Option<String>,
    pub enabled: Option<bool>,
    /// A new upstream credential, sealed for the origin of the (new) upstream. Required
    /// when `upstream_url` moves the site to another origin and it has a credential.
    pub credential: Option<CredentialInput>,
}

impl SiteChanges {
    /// The fields it changes (for the audit log); empty when it changes nothing.
    pub fn fields(&self) -> Vec<&'static str> {
        [
            ("name", self.name.is_some()),
            ("upstream", self.upstream_url.is_some()),
            ("enabled", self.enabled.is_some()),
            ("credential", self.credential.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, given)| given.then_some(field))
        .collect()
    }
}

/// A site's sealed credential is bound to the origin of its upstream: a change that
/// moves the upstream to another origin (scheme, host or port) must bring a new
/// credential. A new path prefix on the same origin keeps it; a site without a secret
/// has nothing to move.
fn check_credential_follows_origin(
    current: &SiteRecord,
    next: &SiteRecord,
    next_upstream: &UpstreamTarget,
) -> Result<(), FleetError> {
    let Some(sealed) = &next.credential.sealed_secret else {
        return Ok(());
    };
    if current.credential.sealed_secret.as_ref() != Some(sealed) {
        return Ok(()); // a new credential, sealed for `next_upstream`
    }
    let from = UpstreamTarget::parse(&current.upstream_url)
        .map(|u| u.origin)
        .unwrap_or_else(|_| current.upstream_url.clone());
    if from == next_upstream.origin {
        return Ok(());
    }
    Err(FleetError::CredentialRequired {
        site: current.id.clone(),
        from,
        to: next_upstream.origin.clone(),
    })
}

/// Checks `record`, the change of `current`, as every site write is checked before it is
/// written: a valid upstream, routes and origins, the same id and version as read, and a
/// credential that stays with its origin. Returns its id and browser origins.
pub(super) fn check_update(
    current: &SiteRecord,
    record: &SiteRecord,
) -> Result<(SiteId, CorsAllow), FleetError> {
    let upstream = UpstreamTarget::parse(&record.upstream_url)?;
    RouteAllow::parse(&record.allowed_paths)?;
    let cors = CorsAllow::parse(&record.allowed_origins)?;
    if record.id != current.id || record.version != current.version {
        return Err(FleetError::Invalid(
            "a site change must start from the site as read".into(),
        ));
    }
    check_credential_follows_origin(current, record, &upstream)?;
    // The record may come from anywhere: its id is checked before it is written.
    let site_id: SiteId = record.id.parse()?;
    Ok((site_id, cors))
}

impl Fleet {
    /// Adds a site. A site whose upstream URL another site already uses is added, with a
    /// warning.
    pub async fn add_site(&self, new: NewSite, actor: &Actor) -> Result<AddedSite, FleetError> {
        let (record, detail) = self.new_site_record(new)?;
        let audit = actor.site_audit("site.create", &record.id, Some(detail));
        let sharing = self.sites_sharing(&record.upstream_url).await?;
        self.store.create_site(&record, &audit).await?;
        self.sites.invalidate(&record.id).await;
        let mut warnings = Vec::new();
        if !sharing.is_empty() {
            warnings.push(SiteWarning::SharedUpstream {
                upstream: record.upstream_url.clone(),
                sites: sharing,
            });
        }
        Ok(AddedSite { record, warnings })
    }

    /// The record of a new site (its credential sealed) and its audit detail, checked as
    /// every new site is: name, upstream, credential.
    pub(super) fn new_site_record(&self, new: NewSite) -> Result<(SiteRecord, String), FleetError> {
        let id = new.id;
        if let Some(name) = &new.name {
            check_text("name", name)?;
        }
        let upstream = UpstreamTarget::parse(&new.upstream_url)?;
        let credential = self.seal_credential(&id, &upstream, &new.credential)?;
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
            allowed_paths: Vec::new(),
            allowed_origins: Vec::new(),
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let detail = format!(
            "upstream={} credential={}",
            record.upstream_url,
            record.credential.kind.as_str()
        );
        Ok((record, detail))
    }

    /// The sites (a few of them) whose upstream URL is `url`, with or without a trailing
    /// slash.
    async fn sites_sharing(&self, url: &str) -> Result<Vec<String>, FleetError> {
        let bare = url.trim_end_matches('/');
        let slashed = format!("{bare}/");
        Ok(self
            .store
            .sites_with_upstream(&[bare, &slashed], SHARED_UPSTREAM_NAMED)
            .await?)
    }

    /// The stored site `id`; a site that does not exist is `StoreError::NotFound`.
    pub async fn site(&self, id: &SiteId) -> Result<SiteRecord, FleetError> {
        self.store
            .get_site(id.as_str())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("site {id}")).into())
    }

    pub async fn set_enabled(
        &self,
        id: &SiteId,
        enabled: bool,
        actor: &Actor,
    ) -> Result<SiteRecord, FleetError> {
        let current = self.site(id).await?;
        let mut record = current.clone();
        record.enabled = enabled;
        let action = if enabled {
            "site.enable"
        } else {
            "site.disable"
        };
        self.update(&current, record, action, None, actor).await
    }

    /// Changes a site as the caller read it (`current`; the write fails with a version
    /// conflict if it has changed since). Moving the upstream to another origin needs a
    /// new credential in the same change ([`FleetError::CredentialRequired`]).
    pub async fn change_site(
        &self,
        current: SiteRecord,
        changes: SiteChanges,
        actor: &Actor,
    ) -> Result<SiteRecord, FleetError> {
        let (record, detail) = self.changed_site(&current, changes)?;
        self.update(&current, record, "site.update", Some(detail), actor)
            .await
    }

    /// `current` with `changes` made (a new credential sealed for the new upstream), and
    /// the audit detail; not yet checked as a whole (see [`check_update`]).
    pub(super) fn changed_site(
        &self,
        current: &SiteRecord,
        changes: SiteChanges,
    ) -> Result<(SiteRecord, String), FleetError> {
        let fields = changes.fields();
        if fields.is_empty() {
            return Err(FleetError::Invalid(
                "nothing to change: give a name, an upstream, enabled or a credential".into(),
            ));
        }
        let id: SiteId = current.id.parse()?;
        if let Some(name) = &changes.name {
            check_text("name", name)?;
        }
        let moves_upstream = changes.upstream_url.is_some();
        let mut record = current.clone();
        if let Some(name) = changes.name {
            record.name = name;
        }
        if let Some(url) = changes.upstream_url {
            record.upstream_url = url;
        }
        if let Some(enabled) = changes.enabled {
            record.enabled = enabled;
        }
        let mut detail = format!("fields={}", fields.join(","));
        if moves_upstream {
            detail.push_str(&format!(" upstream={}", record.upstream_url));
        }
        if let Some(credential) = &changes.credential {
            let upstream = UpstreamTarget::parse(&record.upstream_url)?;
            record.credential = self.seal_credential(&id, &upstream, credential)?;
            detail.push_str(&format!(" credential={}", credential.kind.as_str()));
        }
        Ok((record, detail))
    }

    pub async fn set_credential(
        &self,
        id: &SiteId,
        credential: &CredentialInput,
        actor: &Actor,
    ) -> Result<SiteRecord, FleetError> {
        let current = self.site(id).await?;
        let mut record = current.clone();
        let upstream = UpstreamTarget::parse(&record.upstream_url)?;
        record.credential = self.seal_credential(id, &upstream, credential)?;
        let detail = Some(format!("credential={}", credential.kind.as_str()));
        self.update(&current, record, "site.set_credential", detail, actor)
            .await
    }

    /// Rotation without a gap: checks the new credential against the site first (its
    /// index answers, and `users/me` accepts the credential) and stores it only when the
    /// check passes. Until then the old credential keeps serving; on failure it stays,
    /// and the error says what the site answered.
    pub async fn set_credential_confirmed<C: CredentialCheck>(
        &self,
        id: &SiteId,
        credential: &CredentialInput,
        check: &C,
        actor: &Actor,
    ) -> Result<(SiteRecord, C::Checked), FleetError> {
        let current = self.site(id).await?;
        let mut record = current.clone();
        let upstream = UpstreamTarget::parse(&record.upstream_url)?;
        record.credential = self.seal_credential(id, &upstream, credential)?;
        let candidate = resolve(&record, &self.keyring.load()).await?;
        let checked = check
            .check(&candidate)
            .await
            .map_err(FleetError::Unconfirmed)?;
        let detail = Some(format!(
            "credential={} confirmed=users/me",
            credential.kind.as_str()
        ));
        let updated = self
            .update(&current, record, "site.set_credential", detail, actor)
            .await?;
        Ok((updated, checked))
    }

    /// Replaces a site's client authentication policy. `hmac_secret` replaces the JWT
    /// HMAC secret; without it a secret already stored is kept if the policy needs one.
    pub async fn set_auth_policy(
        &self,
        id: &SiteId,
        policy: &AuthPolicy,
        hmac_secret: Option<Secret>,
        actor: &Actor,
    ) -> Result<SiteRecord, FleetError> {
        policy.check_new()?;
        let current = self.site(id).await?;
        let mut record = current.clone();
        let place = Place::site(id.as_str(), JWT_SECRET_FIELD);
        let keyring = self.keyring.load();
        if let Some(secret) = &hmac_secret {
            check_secret("jwt_secret", secret.expose())?;
        }
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
        self.update(&current, record, "site.set_auth", detail, actor)
            .await
    }

    /// Sets a site's health settings.
    pub async fn set_health(
        &self,
        id: &SiteId,
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
        let current = self.site(id).await?;
        let mut record = current.clone();
        record.required_namespaces = required_namespaces;
        record.health_fail_fast = fail_fast;
        let detail = Some(format!(
            "required_namespaces={} fail_fast={fail_fast}",
            record.required_namespaces.join(",")
        ));
        self.update(&current, record, "site.set_health", detail, actor)
            .await
    }

    /// Sets the path prefixes a site forwards besides the REST API (replaces them; empty:
    /// the REST API only).
    pub async fn set_routes(
        &self,
        id: &SiteId,
        routes: &RouteAllow,
        actor: &Actor,
    ) -> Result<SiteRecord, FleetError> {
        let current = self.site(id).await?;
        let mut record = current.clone();
        record.allowed_paths = routes.to_strings();
        let detail = Some(if routes.paths().is_empty() {
            "allow_paths=(rest api only)".to_string()
        } else {
            format!("allow_paths={}", record.allowed_paths.join(","))
        });
        self.update(&current, record, "site.set_routes", detail, actor)
            .await
    }

    /// Sets the browser origins allowed to call a site (replaces them; empty: none, and
    /// a request with an `Origin` header is refused).
    pub async fn set_cors(
        &self,
        id: &SiteId,
        cors: &CorsAllow,
        actor: &Actor,
    ) -> Result<SiteRecord, FleetError> {
        let current = self.site(id).await?;
        let mut record = current.clone();
        record.allowed_origins = cors.to_strings();
        let detail = Some(if cors.is_empty() {
            "allow_origins=(none)".to_string()
        } else {
            format!("allow_origins={}", record.allowed_origins.join(","))
        });
        self.update(&current, record, "site.set_cors", detail, actor)
            .await
    }

    /// Writes `record`, the change of `current` (optimistic concurrency on its version),
    /// and forgets the cached copy. Every change of a site goes through here, so every
    /// one keeps the credential bound to its origin.
    async fn update(
        &self,
        current: &SiteRecord,
        record: SiteRecord,
        action: &str,
        detail: Option<String>,
        actor: &Actor,
    ) -> Result<SiteRecord, FleetError> {
        let (site_id, cors) = check_update(current, &record)?;
        let updated = self
            .store
            .update_site(&record, &actor.site_audit(action, site_id.as_str(), detail))
            .await?;
        self.sites.invalidate(site_id.as_str()).await;
        self.origins.set_site(site_id.as_str(), cors);
        Ok(updated)
    }

    pub async fn remove_site(&self, id: &SiteId, actor: &Actor) -> Result<(), FleetError> {
        let keys = self.store.list_api_keys(id.as_str()).await?;
        self.store
            .delete_site(
                id.as_str(),
                &actor.site_audit("site.delete", id.as_str(), None),
            )
            .await?;
        self.sites.invalidate(id.as_str()).await;
        self.origins.set_site(id.as_str(), CorsAllow::none());
        for k in keys {
            self.keys.invalidate(&k.key_id).await;
        }
        Ok(())
    }

    /// Issues a key for `site_id`. The returned secret is the whole key: show it once.
    pub async fn issue_key(
        &self,
        site_id: &SiteId,
        label: Option<String>,
        expires_in: Option<Duration>,
        actor: &Actor,
    ) -> Result<(ApiKeyRecord, Secret), FleetError> {
        if let Some(label) = &label {
            check_text("label", label)?;
        }
        let site = self.site(site_id).await?;
        let (record, key) =
            self.new_key(&site.id, label, expires_in.map(crate::time::unix_after))?;
        let key_id = record.key_id.clone();
        let entry = actor.audit(
            "key.issue",
            format!("key:{key_id}"),
            Some(site.id.clone()),
            Some(format!("site={}", site.id)),
        );
        self.store.insert_api_key(&record, &entry).await?;
        self.keys.invalidate(&key_id).await;
        Ok((record, key))
    }

    /// A fresh key for `site_id` (not stored yet) and its whole text.
    fn new_key(
        &self,
        site_id: &str,
        label: Option<String>,
        expires_at: Option<i64>,
    ) -> Result<(ApiKeyRecord, Secret), FleetError> {
        let (key_id, key) = api_key::generate();
        let text = key.expose_str().unwrap_or_default();
        let parsed = api_key::parse(text)
            .ok_or_else(|| FleetError::Invalid("generated key does not parse".into()))?;
        let record = ApiKeyRecord {
            key_id,
            site_id: site_id.to_string(),
            label,
            secret_hash: self.hasher.hash(parsed.secret.as_bytes()).to_vec(),
            created_at: crate::time::now_unix(),
            expires_at,
            revoked_at: None,
            grace_until: None,
            last_used_at: None,
            verified: Default::default(),
            marked: Default::default(),
        };
        Ok((record, key))
    }

    /// Rotates a key in one audited step: issues its successor (same site and label; a
    /// key that expires gets the same lifetime from now) and revokes it, accepted for
    /// `grace` more (zero: refused at once). One transaction, one audit entry naming both
    /// keys. A key already revoked or expired is not rotated: issue a new one.
    pub async fn rotate_key(
        &self,
        key_id: &str,
        grace: Duration,
        actor: &Actor,
    ) -> Result<RotatedKey, FleetError> {
        let old = self
            .store
            .get_api_key(key_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("key {key_id}")))?;
        let now = crate::time::now_unix();
        if old.revoked_at.is_some() {
            return Err(FleetError::Conflict(format!(
                "key {key_id} is already revoked: issue a new key instead (`key issue`)"
            )));
        }
        if old.expires_at.is_some_and(|e| e <= now) {
            return Err(FleetError::Conflict(format!(
                "key {key_id} has expired: issue a new key instead (`key issue`)"
            )));
        }
        let lifetime = old.expires_at.map(|e| (e - old.created_at).max(0));
        let (new, key) = self.new_key(
            &old.site_id,
            old.label.clone(),
            lifetime.map(|l| now.saturating_add(l)),
        )?;
        let grace_until = if grace.is_zero() {
            now
        } else {
            crate::time::unix_after(grace)
        };
        let entry = actor.audit(
            "key.rotate",
            format!("key:{key_id}"),
            Some(old.site_id.clone()),
            Some(format!(
                "new_key={} grace={}",
                new.key_id,
                humantime::format_duration(grace)
            )),
        );
        let old = self
            .store
            .rotate_api_key(key_id, now, grace_until, &new, &entry)
            .await?;
        self.keys.invalidate(key_id).await;
        self.keys.invalidate(&new.key_id).await;
        Ok(RotatedKey { new, key, old })
    }

    /// Deletes the keys revoked (their grace over) or expired more than `retention` ago,
    /// in batches, each key with its own audit entry (`key.purge`, by `gateway:retention`,
    /// naming its site). Returns the ids purged.
    pub async fn purge_keys(&self, retention: Duration) -> Result<Vec<String>, FleetError> {
        const BATCH: u32 = 500;
        let before = crate::time::now_unix()
            .saturating_sub(i64::try_from(retention.as_secs()).unwrap_or(i64::MAX));
        let actor = Actor::new("gateway:retention");
        let audit = |k: &ApiKeyRecord| {
            let (why, at) = match (k.revoked_at, k.grace_until, k.expires_at) {
                (Some(revoked), grace, _) => ("revoked", grace.unwrap_or(revoked)),
                (None, _, Some(expired)) => ("expired", expired),
                (None, _, None) => ("purged", 0),
            };
            actor.audit(
                "key.purge",
                format!("key:{}", k.key_id),
                Some(k.site_id.clone()),
                Some(format!(
                    "{why} {} retention={}",
                    crate::time::rfc3339(at),
                    humantime::format_duration(retention)
                )),
            )
        };
        let mut purged = Vec::new();
        loop {
            let batch = self.store.purge_api_keys(before, BATCH, &audit).await?;
            for k in &batch {
                self.keys.invalidate(&k.key_id).await;
            }
            let done = batch.len() < BATCH as usize;
            purged.extend(batch.into_iter().map(|k| k.key_id));
            if done {
                return Ok(purged);
            }
        }
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
        let entry = actor.audit(
            "key.revoke",
            format!("key:{key_id}"),
            Some(key.site_id.clone()),
            grace.map(|g| format!("grace={}", humantime::format_duration(g))),
        );
        let record = self
            .store
            .revoke_api_key(key_id, now, grace_until, &entry)
            .await?;
        self.keys.invalidate(key_id).await;
        Ok(record)
    }

    /// Seals a credential for `site` and the origin of `upstream`: it opens for no other.
    fn seal_credential(
        &self,
        site: &SiteId,
        upstream: &UpstreamTarget,
        input: &CredentialInput,
    ) -> Result<StoredCredential, FleetError> {
        check_credential(input)?;
        let sealed_secret = match &input.secret {
            Some(secret) => Some(self.keyring.load().seal(
                &upstream_credential_place(site.as_str(), upstream),
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

/// Checks a credential as every write does, without sealing it: its user or header name
/// and its secret (hygiene), and that it renders to a header that can be sent (refused
/// here, not discovered on the first request).
pub(super) fn check_credential(input: &CredentialInput) -> Result<(), FleetError> {
    if let Some(name) = &input.username {
        let field = match input.kind {
            CredentialKind::Header => "credential.header_name",
            _ => "credential.username",
        };
        check_text(field, name)?;
    }
    if let Some(secret) = &input.secret {
        check_secret("credential.secret", secret.expose())?;
    }
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(upstream: &str, sealed: Option<&str>) -> SiteRecord {
        SiteRecord {
            id: "shop".into(),
            name: "shop".into(),
            upstream_url: upstream.into(),
            enabled: true,
            credential: StoredCredential {
                kind: if sealed.is_some() {
                    CredentialKind::Bearer
                } else {
                    CredentialKind::None
                },
                username: None,
                sealed_secret: sealed.map(str::to_string),
            },
            auth_policy: None,
            jwt_secret_sealed: None,
            required_namespaces: Vec::new(),
            allowed_paths: Vec::new(),
            allowed_origins: Vec::new(),
            health_fail_fast: false,
            created_at: 0,
            updated_at: 0,
            version: 1,
        }
    }

    fn check(current: &SiteRecord, next: &SiteRecord) -> Result<(), FleetError> {
        check_credential_follows_origin(
            current,
            next,
            &UpstreamTarget::parse(&next.upstream_url).unwrap(),
        )
    }

    #[test]
    fn a_credential_stays_with_its_origin() {
        let current = site("https://shop.example.com/wp", Some("v2.k.old"));
        // Same origin, new path, or written differently: the credential stays.
        for same in [
            "https://shop.example.com/",
            "https://SHOP.example.com:443/blog",
            "https://shop.example.com/wp",
        ] {
            check(&current, &site(same, Some("v2.k.old"))).unwrap();
        }
        // Another scheme, host or port without a new credential: refused, naming both.
        for other in [
            "http://shop.example.com/wp",
            "https://evil.example.com/wp",
            "https://shop.example.com:8443/wp",
        ] {
            match check(&current, &site(other, Some("v2.k.old"))) {
                Err(FleetError::CredentialRequired { site, from, to }) => {
                    assert_eq!(site, "shop");
                    assert_eq!(from, "https://shop.example.com:443");
                    assert_eq!(to, UpstreamTarget::parse(other).unwrap().origin);
                }
                r => panic!("{other}: {r:?}"),
            }
            // With a new credential (sealed for the new origin) it goes through.
            check(&current, &site(other, Some("v2.k.new"))).unwrap();
            // Dropping the credential (kind none) leaves nothing to move.
            check(&current, &site(other, None)).unwrap();
        }
        // A site without a secret moves freely.
        let bare = site("https://shop.example.com", None);
        check(&bare, &site("https://evil.example.com", None)).unwrap();
    }

    #[test]
    fn site_changes_name_their_fields() {
        assert!(SiteChanges::default().fields().is_empty());
        let c = SiteChanges {
            upstream_url: Some("https://x.example".into()),
            credential: Some(CredentialInput {
                kind: CredentialKind::None,
                username: None,
                secret: None,
            }),
            ..SiteChanges::default()
        };
        assert_eq!(c.fields(), ["upstream", "credential"]);
    }
}
