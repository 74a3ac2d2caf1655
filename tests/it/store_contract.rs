//! One contract for every store backend: each behaviour below runs against SQLite (a
//! temporary file) and against PostgreSQL (a fresh database per test, see
//! `harness/postgres.rs`; an unreachable server fails these tests, it never skips them).
//! Then what only PostgreSQL has: outages end in errors, not hangs; concurrent opens.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::postgres::TestDb;
use crate::harness::records::{self, site};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use wpgate::config::StoreUrl;
use wpgate::site::CredentialKind;
use wpgate::store::postgres::{
    PostgresStore, CALL_TIMEOUT, CONNECT_TIMEOUT, LISTENER_APPLICATION_NAME,
};
use wpgate::store::{
    self, AdminScope, AdminTokenRecord, ApiKeyRecord, AuditEntry, AuditRecord, Change, ChangeEvent,
    ChangeKind, ImportBatch, Reseal, SealedSlot, SealedValue, SiteRecord, Store, StoreError,
    StoredCredential,
};
use wpgate::time::now_unix;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn other(self) -> Backend {
        match self {
            Backend::Sqlite => Backend::Postgres,
            Backend::Postgres => Backend::Sqlite,
        }
    }
}

/// A fresh, empty store of one backend. Fields drop in order: the store before its
/// database.
struct Fresh {
    url: StoreUrl,
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    db: Option<TestDb>,
}

impl Fresh {
    async fn new(backend: Backend) -> Fresh {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = StoreUrl::Sqlite(dir.path().join("store.db"));
                let store = store::open(&url).await.unwrap();
                Fresh {
                    url,
                    store,
                    _dir: Some(dir),
                    db: None,
                }
            }
            Backend::Postgres => {
                let db = TestDb::create();
                let url = db.store_url();
                let store = store::open(&url).await.unwrap();
                Fresh {
                    url,
                    store,
                    _dir: None,
                    db: Some(db),
                }
            }
        }
    }

    /// Another store instance (its own pool) on the same data: another process or replica.
    async fn another(&self) -> Arc<dyn Store> {
        store::open(&self.url).await.unwrap()
    }
}

fn audit(action: &str, target: &str) -> AuditEntry {
    AuditEntry {
        actor: "test".into(),
        action: action.into(),
        target: target.into(),
        site_id: target.strip_prefix("site:").map(str::to_string),
        request_id: None,
        detail: None,
    }
}

/// A site with every optional field set.
fn full_site(id: &str) -> SiteRecord {
    SiteRecord {
        name: format!("Site {id} ✓"),
        upstream_url: format!("https://{id}.example.com/blog"),
        credential: records::app_password(format!("v1.k1.bm9uY2U.{id}-cred")),
        auth_policy: Some(r#"{"methods":["api_key","jwt"],"jwt":{"verify":"wordpress"}}"#.into()),
        jwt_secret_sealed: Some(format!("v1.k2.bm9uY2U.{id}-jwt")),
        required_namespaces: vec!["myplugin/v1".into(), "wc/v3".into()],
        health_fail_fast: true,
        allowed_paths: vec!["/xmlrpc.php".into(), "/wp-content/uploads/".into()],
        allowed_origins: vec![
            "https://app.example.com".into(),
            "http://localhost:3000".into(),
        ],
        created_at: 1_700_000_001,
        updated_at: 1_700_000_002,
        version: 7,
        ..site(id)
    }
}

fn key(key_id: &str, site_id: &str, created_at: i64) -> ApiKeyRecord {
    ApiKeyRecord {
        key_id: key_id.into(),
        site_id: site_id.into(),
        label: Some(format!("label of {key_id}")),
        secret_hash: vec![0, 1, 0xfe, 0xff, 7, 0, 42],
        created_at,
        expires_at: Some(created_at + 86_400),
        revoked_at: None,
        grace_until: None,
        last_used_at: None,
        verified: Default::default(),
        marked: Default::default(),
    }
}

fn token(id: &str) -> AdminTokenRecord {
    AdminTokenRecord {
        id: id.into(),
        label: Some("ops".into()),
        scope: AdminScope::Write,
        secret_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        created_at: 10,
        revoked_at: None,
        last_used_at: None,
    }
}

/// Every change after `seq`, as `(kind, id)`.
async fn changes_after(s: &dyn Store, seq: i64) -> Vec<(ChangeKind, String)> {
    let c = s.changes_since(seq, 10_000).await.unwrap();
    assert!(c.complete);
    c.changes.into_iter().map(|c| (c.kind, c.id)).collect()
}

/// `sealed_key_counts` (kept by triggers) must equal a count over what the store holds.
async fn assert_counts_match_contents(s: &dyn Store) {
    let mut want: std::collections::BTreeMap<String, i64> = Default::default();
    let kid = |v: &str| v.split('.').nth(1).unwrap_or_default().to_string();
    for site in s.list_sites(None, 1_000_000).await.unwrap() {
        for v in [site.credential.sealed_secret, site.jwt_secret_sealed]
            .into_iter()
            .flatten()
        {
            *want.entry(kid(&v)).or_default() += 1;
        }
    }
    for (_, v) in s.export_settings().await.unwrap() {
        if v.starts_with("v1.") {
            *want.entry(kid(&v)).or_default() += 1;
        }
    }
    assert_eq!(
        s.sealed_key_counts().await.unwrap(),
        want.into_iter().collect::<Vec<_>>()
    );
}

/// Checks that the writes since `*seq` recorded exactly `want`, and moves `*seq` on.
async fn expect(s: &dyn Store, seq: &mut i64, label: &str, want: &[(ChangeKind, &str)]) {
    let got = changes_after(s, *seq).await;
    let want: Vec<(ChangeKind, String)> = want.iter().map(|(k, id)| (*k, id.to_string())).collect();
    assert_eq!(got, want, "changes recorded by {label}");
    *seq += got.len() as i64;
}

/// One test per behaviour and backend: `sqlite::<name>` and `postgres::<name>`.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await;
                }
            )*
        }
    };
}

contract!(
    sites_crud_and_versions,
    keys_revoke_and_grace,
    keys_last_used_rotation_and_purge,
    sites_with_upstream,
    audit_log,
    admin_tokens,
    settings_race_agrees_on_one_value,
    change_log_records_every_write,
    change_log_prune_and_completeness,
    change_log_seq_order_is_commit_order,
    sealed_values_and_reseal,
    unbound_credentials_and_binding,
    listener,
    export_import_round_trip,
    health_leases_and_results,
    health_claims_never_overlap,
    sites_found_by_text_and_health_state,
);

mod health;
use health::{
    health_claims_never_overlap, health_leases_and_results, sites_found_by_text_and_health_state,
};

async fn sites_crud_and_versions(b: Backend) {
    let f = Fresh::new(b).await;
    let s = f.store.as_ref();
    let shop = full_site("shop");
    create(s, &shop).await.unwrap();
    // Every field comes back as written.
    assert_eq!(s.get_site("shop").await.unwrap(), Some(shop.clone()));
    assert!(s.get_site("nope").await.unwrap().is_none());
    assert!(matches!(
        create(s, &site("shop")).await,
        Err(StoreError::AlreadyExists(what)) if what == "site shop"
    ));

    // The sites that allow some browser origin, with their origins in order.
    assert_eq!(
        s.site_origins().await.unwrap(),
        vec![("shop".to_string(), shop.allowed_origins.clone())]
    );

    let before = now_unix();
    let mut next = shop.clone();
    next.enabled = false;
    next.name = "Renamed".into();
    next.required_namespaces = Vec::new();
    next.allowed_paths = vec!["/feed/".into()];
    next.allowed_origins = vec!["https://admin.example.com".into()];
    next.jwt_secret_sealed = None;
    let updated = s
        .update_site(&next, &audit("site.update", "site:shop"))
        .await
        .unwrap();
    assert_eq!(updated.version, shop.version + 1);
    assert!(updated.updated_at >= before);
    assert_eq!(s.get_site("shop").await.unwrap(), Some(updated.clone()));
    // A stale version is refused and changes nothing.
    match s
        .update_site(&next, &audit("site.update", "site:shop"))
        .await
    {
        Err(StoreError::VersionConflict { what, expected }) => {
            assert_eq!((what.as_str(), expected), ("site shop", shop.version));
        }
        other => panic!("expected a version conflict, got {other:?}"),
    }
    assert_eq!(s.get_site("shop").await.unwrap(), Some(updated));
    assert!(matches!(
        s.update_site(&site("ghost"), &audit("site.update", "site:ghost"))
            .await,
        Err(StoreError::NotFound(what)) if what == "site ghost"
    ));

    // Paging lists ids in byte order on every backend, whatever the database's locale.
    let ids = ["b", "a_b", "A", "a-b", "ab", "Z9", "a"];
    for id in ids {
        create(s, &site(id)).await.unwrap();
    }
    let mut expected: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    expected.push("shop".into());
    expected.sort();
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s.list_sites(after.as_deref(), 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        listed.extend(page.into_iter().map(|s| s.id));
    }
    assert_eq!(listed, expected);
    // Sites without origins are not listed; one that drops its origins leaves the list.
    let mut with = site("a");
    with.allowed_origins = vec!["https://a.example".into()];
    let a = s.get_site("a").await.unwrap().unwrap();
    s.update_site(
        &SiteRecord {
            allowed_origins: with.allowed_origins.clone(),
            ..a
        },
        &audit("site.set_cors", "site:a"),
    )
    .await
    .unwrap();
    assert_eq!(
        s.site_origins().await.unwrap(),
        vec![
            ("a".to_string(), vec!["https://a.example".to_string()]),
            (
                "shop".to_string(),
                vec!["https://admin.example.com".to_string()]
            ),
        ]
    );
    let shop_now = s.get_site("shop").await.unwrap().unwrap();
    s.update_site(
        &SiteRecord {
            allowed_origins: Vec::new(),
            ..shop_now
        },
        &audit("site.set_cors", "site:shop"),
    )
    .await
    .unwrap();
    assert_eq!(
        s.get_site("shop").await.unwrap().unwrap().allowed_origins,
        Vec::<String>::new()
    );
    assert_eq!(
        s.site_origins().await.unwrap(),
        vec![("a".to_string(), vec!["https://a.example".to_string()])]
    );

    s.delete_site("b", &audit("site.delete", "site:b"))
        .await
        .unwrap();
    assert!(s.get_site("b").await.unwrap().is_none());
    assert!(matches!(
        s.delete_site("b", &audit("site.delete", "site:b")).await,
        Err(StoreError::NotFound(what)) if what == "site b"
    ));
}

async fn keys_revoke_and_grace(b: Backend) {
    let f = Fresh::new(b).await;
    let s = f.store.as_ref();
    for id in ["shop", "blog"] {
        create(s, &site(id)).await.unwrap();
    }
    let abc = key("abc", "shop", 10);
    let def = ApiKeyRecord {
        label: None,
        expires_at: None,
        ..key("def", "shop", 5)
    };
    let ghi = key("ghi", "blog", 1);
    for k in [&abc, &def, &ghi] {
        s.insert_api_key(k, &audit("key.issue", &format!("key:{}", k.key_id)))
            .await
            .unwrap();
    }
    assert_eq!(s.get_api_key("abc").await.unwrap(), Some(abc.clone()));
    assert_eq!(s.get_api_key("def").await.unwrap(), Some(def.clone()));
    assert!(s.get_api_key("zzz").await.unwrap().is_none());
    // A site's keys, oldest first.
    assert_eq!(
        s.list_api_keys("shop").await.unwrap(),
        vec![def.clone(), abc.clone()]
    );
    assert!(s.list_api_keys("nope").await.unwrap().is_empty());
    assert!(matches!(
        s.insert_api_key(&abc, &audit("key.issue", "key:abc")).await,
        Err(StoreError::AlreadyExists(what)) if what == "key abc"
    ));
    assert!(matches!(
        s.insert_api_key(&key("orphan", "nope", 1), &audit("key.issue", "key:orphan"))
            .await,
        Err(StoreError::NotFound(what)) if what == "site nope"
    ));

    let r = s
        .revoke_api_key("abc", 100, 200, &audit("key.revoke", "key:abc"))
        .await
        .unwrap();
    assert_eq!((r.revoked_at, r.grace_until), (Some(100), Some(200)));
    assert_eq!(s.get_api_key("abc").await.unwrap(), Some(r));
    // A second revoke can shorten the grace, not extend it, and keeps the first time.
    let r = s
        .revoke_api_key("abc", 150, 500, &audit("key.revoke", "key:abc"))
        .await
        .unwrap();
    assert_eq!((r.revoked_at, r.grace_until), (Some(100), Some(200)));
    let r = s
        .revoke_api_key("abc", 150, 150, &audit("key.revoke", "key:abc"))
        .await
        .unwrap();
    assert_eq!((r.revoked_at, r.grace_until), (Some(100), Some(150)));
    assert!(matches!(
        s.revoke_api_key("zzz", 1, 1, &audit("key.revoke", "key:zzz")).await,
        Err(StoreError::NotFound(what)) if what == "key zzz"
    ));

    // Deleting a site deletes its keys, only its keys.
    s.delete_site("shop", &audit("site.delete", "site:shop"))
        .await
        .unwrap();
    assert!(s.get_api_key("abc").await.unwrap().is_none());
    assert!(s.get_api_key("def").await.unwrap().is_none());
    assert_eq!(s.get_api_key("ghi").await.unwrap(), Some(ghi));
}

async fn keys_last_used_rotation_and_purge(b: Backend) {
    let f = Fresh::new(b).await;
    let s = f.store.as_ref();
    let other = f.another().await;
    create(s, &site("shop")).await.unwrap();
    let old = ApiKeyRecord {
        expires_at: None,
        ..key("old", "shop", 10)
    };
    s.insert_api_key(&old, &audit("key.issue", "key:old"))
        .await
        .unwrap();
    let mut seq = s.latest_change().await.unwrap();

    // last_used_at: batched, never moves back whichever replica writes last, records
    // no change (caches keep their entries), unknown ids are skipped.
    assert_eq!(
        s.get_api_key("old").await.unwrap().unwrap().last_used_at,
        None
    );
    let updated = s
        .record_key_use(&["old".into(), "ghost".into()], 2_000)
        .await
        .unwrap();
    assert_eq!(updated, 1);
    other.record_key_use(&["old".into()], 1_500).await.unwrap();
    assert_eq!(
        s.get_api_key("old").await.unwrap().unwrap().last_used_at,
        Some(2_000)
    );
    other.record_key_use(&["old".into()], 2_060).await.unwrap();
    assert_eq!(
        s.get_api_key("old").await.unwrap().unwrap().last_used_at,
        Some(2_060)
    );
    expect(s, &mut seq, "record_key_use", &[]).await;
    // Many keys in one call (past one statement's batch).
    let many: Vec<String> = (0..1500).map(|i| format!("k{i:04}")).collect();
    for id in many.iter().take(3) {
        s.insert_api_key(&key(id, "shop", 1), &audit("key.issue", "key:k"))
            .await
            .unwrap();
    }
    seq = s.latest_change().await.unwrap();
    assert_eq!(s.record_key_use(&many, 3_000).await.unwrap(), 3);
    assert_eq!(
        s.get_api_key("k0002").await.unwrap().unwrap().last_used_at,
        Some(3_000)
    );
    expect(s, &mut seq, "record_key_use", &[]).await;
    assert_eq!(s.record_key_use(&[], 1).await.unwrap(), 0);

    // A rotation: the new key and the revocation in one transaction, one audit record,
    // both keys in the change log.
    let new = ApiKeyRecord {
        label: Some("rotated".into()),
        ..key("new", "shop", 100)
    };
    let audits_before = s.export_audit(0, 10_000).await.unwrap().len();
    let revoked = s
        .rotate_api_key("old", 100, 200, &new, &audit("key.rotate", "key:old"))
        .await
        .unwrap();
    assert_eq!(
        (
            revoked.key_id.as_str(),
            revoked.revoked_at,
            revoked.grace_until
        ),
        ("old", Some(100), Some(200))
    );
    assert_eq!(revoked.last_used_at, Some(2_060));
    assert_eq!(s.get_api_key("new").await.unwrap(), Some(new.clone()));
    assert_eq!(s.get_api_key("old").await.unwrap(), Some(revoked));
    let audits = s.export_audit(0, 10_000).await.unwrap();
    assert_eq!(audits.len(), audits_before + 1);
    assert_eq!(audits.last().unwrap().entry.action, "key.rotate");
    expect(
        s,
        &mut seq,
        "rotate_api_key",
        &[(ChangeKind::ApiKey, "old"), (ChangeKind::ApiKey, "new")],
    )
    .await;
    // A missing old key or site writes nothing (the new key is not left behind).
    let orphan = key("orphan", "shop", 1);
    assert!(matches!(
        s.rotate_api_key("ghost", 1, 1, &orphan, &audit("key.rotate", "key:ghost")).await,
        Err(StoreError::NotFound(what)) if what == "key ghost"
    ));
    assert!(s.get_api_key("orphan").await.unwrap().is_none());
    assert!(matches!(
        s.rotate_api_key("new", 1, 1, &key("lost", "nope", 1), &audit("key.rotate", "key:new"))
            .await,
        Err(StoreError::NotFound(what)) if what == "site nope"
    ));
    assert_eq!(s.get_api_key("new").await.unwrap(), Some(new.clone()));
    expect(s, &mut seq, "failed rotations", &[]).await;
    assert_eq!(s.export_audit(0, 10_000).await.unwrap().len(), audits.len());

    // Purge: revoked with the grace over, or expired, before the cut-off; each key with
    // its own audit record; the rest stays.
    let expired = ApiKeyRecord {
        expires_at: Some(250),
        ..key("expired", "shop", 1)
    };
    let expiring = ApiKeyRecord {
        expires_at: Some(10_000),
        ..key("expiring", "shop", 1)
    };
    let graced = key("graced", "shop", 1);
    for k in [&expired, &expiring, &graced] {
        s.insert_api_key(k, &audit("key.issue", "key:k"))
            .await
            .unwrap();
    }
    s.revoke_api_key("graced", 100, 5_000, &audit("key.revoke", "key:graced"))
        .await
        .unwrap();
    seq = s.latest_change().await.unwrap();
    let purge_audit = |k: &ApiKeyRecord| AuditEntry {
        site_id: Some(k.site_id.clone()),
        ..audit("key.purge", &format!("key:{}", k.key_id))
    };
    // Before 300: "old" (grace until 200) and "expired" (250); two calls of one.
    let first = s.purge_api_keys(300, 1, &purge_audit).await.unwrap();
    let second = other.purge_api_keys(300, 1, &purge_audit).await.unwrap();
    let mut purged: Vec<String> = first
        .iter()
        .chain(&second)
        .map(|k| k.key_id.clone())
        .collect();
    purged.sort();
    assert_eq!(purged, ["expired", "old"]);
    assert!(s
        .purge_api_keys(300, 10, &purge_audit)
        .await
        .unwrap()
        .is_empty());
    for gone in ["old", "expired"] {
        assert!(s.get_api_key(gone).await.unwrap().is_none(), "{gone}");
    }
    for kept in ["new", "expiring", "graced", "k0000"] {
        assert!(s.get_api_key(kept).await.unwrap().is_some(), "{kept}");
    }
    let entries = s.list_audit(Some("shop"), 2).await.unwrap();
    let mut targets: Vec<&str> = entries.iter().map(|e| e.entry.target.as_str()).collect();
    targets.sort();
    assert_eq!(targets, ["key:expired", "key:old"]);
    assert!(entries.iter().all(|e| e.entry.action == "key.purge"));
    let changed = changes_after(s, seq).await;
    assert!(
        changed.iter().all(|(k, _)| *k == ChangeKind::ApiKey),
        "{changed:?}"
    );
    let mut changed: Vec<String> = changed.into_iter().map(|(_, id)| id).collect();
    changed.sort();
    assert_eq!(changed, ["expired", "old"]);
    // Later cut-offs reach the graced and the expiring key.
    let later = s.purge_api_keys(20_000, 10, &purge_audit).await.unwrap();
    let mut later: Vec<String> = later.into_iter().map(|k| k.key_id).collect();
    later.sort();
    assert_eq!(later, ["expiring", "graced"]);
}

async fn sites_with_upstream(b: Backend) {
    let f = Fresh::new(b).await;
    let s = f.store.as_ref();
    for (id, url) in [
        ("a", "https://shop.example.com"),
        ("b", "https://shop.example.com/"),
        ("c", "https://shop.example.com/blog"),
        ("d", "https://other.example.com"),
    ] {
        create(
            s,
            &SiteRecord {
                upstream_url: url.into(),
                ..site(id)
            },
        )
        .await
        .unwrap();
    }
    let found = s
        .sites_with_upstream(
            &["https://shop.example.com", "https://shop.example.com/"],
            10,
        )
        .await
        .unwrap();
    assert_eq!(found, ["a", "b"]);
    let found = s
        .sites_with_upstream(
            &["https://shop.example.com", "https://shop.example.com/"],
            1,
        )
        .await
        .unwrap();
    assert_eq!(found, ["a"]);
    assert!(s
        .sites_with_upstream(&["https://nope.example.com"], 10)
        .await
        .unwrap()
        .is_empty());
    assert!(s.sites_with_upstream(&[], 10).await.unwrap().is_empty());
}

async fn audit_log(b: Backend) {
    let f = Fresh::new(b).await;
    let s = f.store.as_ref();
    let before = now_unix();
    let mut shop_created = audit("site.create", "site:shop");
    shop_created.request_id = Some("req-1".into());
    shop_created.detail = Some("upstream=https://shop.example.com".into());
    s.create_site(&site("shop"), &shop_created).await.unwrap();
    create(s, &site("blog")).await.unwrap();
    let mut issue = audit("key.issue", "key:abc");
    issue.site_id = Some("shop".into());
    s.insert_api_key(&key("abc", "shop", 1), &issue)
        .await
        .unwrap();
    // A refused write leaves no audit entry.
    let _ = create(s, &site("shop")).await.unwrap_err();

    let all = s.list_audit(None, 100).await.unwrap();
    let actions: Vec<_> = all
        .iter()
        .map(|r| (r.entry.action.as_str(), r.entry.target.as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("key.issue", "key:abc"),
            ("site.create", "site:blog"),
            ("site.create", "site:shop"),
        ]
    );
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert!(all.iter().all(|r| r.at >= before && r.at <= now_unix()));
    assert_eq!(all[2].entry, shop_created);
    let shop = s.list_audit(Some("shop"), 10).await.unwrap();
    let targets: Vec<_> = shop.iter().map(|r| r.entry.target.as_str()).collect();
    assert_eq!(targets, vec!["key:abc", "site:shop"]);
    assert_eq!(s.list_audit(None, 2).await.unwrap().len(), 2);
    assert!(s.list_audit(Some("nope"), 10).await.unwrap().is_empty());

    // An event that changes nothing: its audit record alone, no change-log entry.
    let seq = s.latest_change().await.unwrap();
    let mut refused = audit("admin.auth_failed", "admin_token:abcdefghijkl");
    refused.actor = "client:192.0.2.1".into();
    refused.detail = Some("reason=unknown_token".into());
    s.append_audit(&refused).await.unwrap();
    let newest = s.list_audit(None, 1).await.unwrap();
    assert_eq!(newest[0].entry, refused);
    assert!(newest[0].id > all[0].id);
    assert_eq!(s.latest_change().await.unwrap(), seq);
}

async fn admin_tokens(b: Backend) {
    let f = Fresh::new(b).await;
    let s = f.store.as_ref();
    let t = token("tok1");
    s.create_admin_token(&t, &audit("admin_token.create", "admin_token:tok1"))
        .await
        .unwrap();
    assert!(matches!(
        s.create_admin_token(&t, &audit("admin_token.create", "admin_token:tok1"))
            .await,
        Err(StoreError::AlreadyExists(_))
    ));
    let read = AdminTokenRecord {
        id: "tok0".into(),
        scope: AdminScope::Read,
        label: None,
        created_at: 5,
        ..token("tok0")
    };
    s.create_admin_token(&read, &audit("admin_token.create", "admin_token:tok0"))
        .await
        .unwrap();
    assert_eq!(s.get_admin_token("tok1").await.unwrap(), Some(t.clone()));
    assert!(s.get_admin_token("nope").await.unwrap().is_none());
    s.touch_admin_token("tok1", 20).await.unwrap();
    s.touch_admin_token("nope", 20).await.unwrap();
    let r = s
        .revoke_admin_token("tok1", 30, &audit("admin_token.revoke", "admin_token:tok1"))
        .await
        .unwrap();
    assert_eq!((r.revoked_at, r.last_used_at), (Some(30), Some(20)));
    // Revoking again keeps the earlier time.
    let r = s
        .revoke_admin_token("tok1", 40, &audit("admin_token.revoke", "admin_token:tok1"))
        .await
        .unwrap();
    assert_eq!(r.revoked_at, Some(30));
    let r = s
        .revoke_admin_token("tok1", 25, &audit("admin_token.revoke", "admin_token:tok1"))
        .await
        .unwrap();
    assert_eq!(r.revoked_at, Some(25));
    assert!(matches!(
        s.revoke_admin_token("nope", 40, &audit("admin_token.revoke", "admin_token:nope"))
            .await,
        Err(StoreError::NotFound(what)) if what == "admin token nope"
    ));
    // Oldest first, revoked ones included.
    let all = s.list_admin_tokens().await.unwrap();
    let ids: Vec<_> = all.iter().map(|t| (t.id.as_str(), t.scope)).collect();
    assert_eq!(
        ids,
        vec![("tok0", AdminScope::Read), ("tok1", AdminScope::Write)]
    );
    let log = s.list_audit(None, 10).await.unwrap();
    assert_eq!(
        log.len(),
        5,
        "two creates, three revokes; touches are not audited"
    );
}

async fn settings_race_agrees_on_one_value(b: Backend) {
    let f = Fresh::new(b).await;
    let mut stores = vec![f.store.clone()];
    for _ in 0..3 {
        stores.push(f.another().await);
    }
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let s = stores[i % stores.len()].clone();
            tokio::spawn(async move {
                s.insert_setting_if_absent("pepper", &format!("value-{i}"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut agreed = Vec::new();
    for t in tasks {
        agreed.push(t.await.unwrap());
    }
    assert!(agreed.iter().all(|v| *v == agreed[0]), "{agreed:?}");
    for s in &stores {
        assert_eq!(
            s.get_setting("pepper").await.unwrap(),
            Some(agreed[0].clone())
        );
    }
    assert!(f.store.get_setting("other").await.unwrap().is_none());
    assert_eq!(
        changes_after(f.store.as_ref(), 0).await,
        vec![(ChangeKind::Setting, "pepper".to_string())],
        "only the insert that won records a change"
    );
}

async fn change_log_records_every_write(b: Backend) {
    let f = Fresh::new(b).await;
    let s = f.store.as_ref();
    assert_eq!(s.latest_change().await.unwrap(), 0);
    let c = s.changes_since(0, 10).await.unwrap();
    assert!(c.changes.is_empty() && c.complete);

    let mut seq = 0;
    use ChangeKind::*;

    create(s, &site("shop")).await.unwrap();
    expect(s, &mut seq, "create_site", &[(Site, "shop")]).await;
    let rec = s.get_site("shop").await.unwrap().unwrap();
    s.update_site(&rec, &audit("site.update", "site:shop"))
        .await
        .unwrap();
    expect(s, &mut seq, "update_site", &[(Site, "shop")]).await;
    // Refused writes record nothing.
    let _ = s
        .update_site(&rec, &audit("site.update", "site:shop"))
        .await
        .unwrap_err();
    let _ = create(s, &site("shop")).await.unwrap_err();
    let _ = s
        .insert_api_key(&key("k0", "nope", 1), &audit("key.issue", "key:k0"))
        .await
        .unwrap_err();
    expect(s, &mut seq, "refused writes", &[]).await;

    for k in ["k2", "k1"] {
        s.insert_api_key(&key(k, "shop", 1), &audit("key.issue", &format!("key:{k}")))
            .await
            .unwrap();
    }
    expect(
        s,
        &mut seq,
        "insert_api_key",
        &[(ApiKey, "k2"), (ApiKey, "k1")],
    )
    .await;
    s.revoke_api_key("k1", 1, 1, &audit("key.revoke", "key:k1"))
        .await
        .unwrap();
    expect(s, &mut seq, "revoke_api_key", &[(ApiKey, "k1")]).await;
    s.create_admin_token(&token("t1"), &audit("admin_token.create", "admin_token:t1"))
        .await
        .unwrap();
    expect(s, &mut seq, "create_admin_token", &[(AdminToken, "t1")]).await;
    s.touch_admin_token("t1", 5).await.unwrap();
    expect(s, &mut seq, "touch_admin_token", &[]).await;
    s.revoke_admin_token("t1", 6, &audit("admin_token.revoke", "admin_token:t1"))
        .await
        .unwrap();
    expect(s, &mut seq, "revoke_admin_token", &[(AdminToken, "t1")]).await;
    // The second write finds the setting present and changes nothing.
    for value in ["v1.k1.n.c", "v1.k1.n.other"] {
        s.insert_setting_if_absent("pepper", value).await.unwrap();
    }
    expect(
        s,
        &mut seq,
        "insert_setting_if_absent",
        &[(Setting, "pepper")],
    )
    .await;
    let n = s
        .reseal(
            &[Reseal {
                old: SealedValue {
                    slot: SealedSlot::Setting("pepper".into()),
                    sealed: "v1.k1.n.c".into(),
                    upstream_url: None,
                },
                new_sealed: "v1.k2.n.c".into(),
            }],
            &audit("keyring.rewrap", "keyring"),
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    expect(s, &mut seq, "reseal", &[(Setting, "pepper")]).await;
    // Deleting a site records its keys (ordered by id) and then the site.
    s.delete_site("shop", &audit("site.delete", "site:shop"))
        .await
        .unwrap();
    expect(
        s,
        &mut seq,
        "delete_site",
        &[(ApiKey, "k1"), (ApiKey, "k2"), (Site, "shop")],
    )
    .await;

    // Sequence numbers run 1, 2, 3, ... without gaps, and latest_change is the last.
    let all = s.changes_since(0, 1000).await.unwrap();
    let seqs: Vec<i64> = all.changes.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (1..=seq).collect::<Vec<_>>());
    assert_eq!(s.latest_change().await.unwrap(), seq);
    // `limit` pages the log.
    let page = s.changes_since(2, 3).await.unwrap();
    assert_eq!(
        page.changes.iter().map(|c| c.seq).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    // Another instance reads the same log.
    assert_eq!(f.another().await.latest_change().await.unwrap(), seq);
}

async fn change_log_prune_and_completeness(b: Backend) {
    let f = Fresh::new(b).await;
    let s = f.store.as_ref();
    for i in 0..5 {
        s.create_site(&site(&format!("s{i}")), &audit("site.create", "site:x"))
            .await
            .unwrap();
    }
    // Nothing is old enough yet.
    assert_eq!(s.prune_changes(0).await.unwrap(), 0);
    assert!(s.changes_since(0, 100).await.unwrap().complete);
    // Pruning everything keeps the newest row.
    assert_eq!(s.prune_changes(i64::MAX).await.unwrap(), 4);
    assert_eq!(s.latest_change().await.unwrap(), 5);
    // A reader at seq 2 missed 3 and 4: it must forget everything.
    let c = s.changes_since(2, 100).await.unwrap();
    assert!(!c.complete);
    assert_eq!(c.changes.len(), 1);
    // A reader at seq 4 missed nothing.
    let c = s.changes_since(4, 100).await.unwrap();
    assert!(c.complete);
    assert_eq!(c.changes[0].seq, 5);
    let c = s.changes_since(5, 100).await.unwrap();
    assert!(c.complete && c.changes.is_empty());
    // Numbering goes on after the kept row.
    create(s, &site("s5")).await.unwrap();
    assert_eq!(s.latest_change().await.unwrap(), 6);
}

/// Writers on two instances race while a poller follows the log: every change it sees
/// is the next number after the last one it saw (a change committing after a later
/// number would be skipped by every poller), and in the end it has seen every write.
async fn change_log_seq_order_is_commit_order(b: Backend) {
    let f = Fresh::new(b).await;
    let writers = [f.store.clone(), f.another().await];
    let reader = f.another().await;
    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut last = 0;
            let mut seen = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let c = reader.changes_since(last, 1000).await.unwrap();
                assert!(c.complete);
                let empty = c.changes.is_empty();
                for change in c.changes {
                    assert_eq!(
                        change.seq,
                        last + 1,
                        "the poller saw change {} after {last}: a change log in which seq order is not commit order loses changes",
                        change.seq
                    );
                    last = change.seq;
                    seen.push(change.id);
                }
                if finished && empty {
                    return seen;
                }
            }
        })
    };
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let s = writers[t % 2].clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    let id = format!("w{t}-{i}");
                    create(s.as_ref(), &site(&id)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let mut seen = poller.await.unwrap();
    seen.sort();
    let mut all: Vec<String> = (0..8)
        .flat_map(|t| (0..20).map(move |i| format!("w{t}-{i}")))
        .collect();
    all.sort();
    assert_eq!(seen, all);
}

/// Credentials still in sealed format v1 are listed with their site's upstream URL and
/// replaced by `bind_credentials` only where the site still holds the value read with
/// the URL read, each with its own audit entry and no change-log row; the per-key counts
/// (triggers) count v2 credentials like v1 ones.
async fn unbound_credentials_and_binding(b: Backend) {
    let f = Fresh::new(b).await;
    let s = f.store.as_ref();
    let with_cred = |id: &str, url: &str, sealed: &str| {
        let mut r = site(id);
        r.upstream_url = url.into();
        r.credential = records::app_password(sealed.into());
        r
    };
    for rec in [
        with_cred("a", "http://a.example:8080/wp", "v1.k1.bm9uY2U.a"),
        with_cred("b", "https://b.example", "v2.k1.bm9uY2U.b"),
        with_cred("c", "http://c.example", "v1.k2.bm9uY2U.c"),
        with_cred("d", "http://d.example", "v1.k1.bm9uY2U.d"),
        site("e"),
    ] {
        create(s, &rec).await.unwrap();
    }
    s.insert_setting_if_absent("pepper", "v1.k1.bm9uY2U.pepper")
        .await
        .unwrap();
    assert_eq!(
        s.sealed_key_counts().await.unwrap(),
        vec![("k1".to_string(), 4), ("k2".to_string(), 1)]
    );
    let unbound = |id: &str, url: &str, v: &str| SealedValue {
        slot: SealedSlot::SiteCredential(id.into()),
        sealed: v.into(),
        upstream_url: Some(url.into()),
    };
    let all = s.unbound_credentials(None, 100).await.unwrap();
    assert_eq!(
        all,
        vec![
            unbound("a", "http://a.example:8080/wp", "v1.k1.bm9uY2U.a"),
            unbound("c", "http://c.example", "v1.k2.bm9uY2U.c"),
            unbound("d", "http://d.example", "v1.k1.bm9uY2U.d"),
        ]
    );
    assert_eq!(s.unbound_credentials(None, 1).await.unwrap(), all[..1]);
    assert_eq!(
        s.unbound_credentials(Some("a"), 100).await.unwrap(),
        all[1..]
    );
    // The rewrap sees the v2 credential with its URL too.
    let not_k2 = s.sealed_not_by("k2", None, 100).await.unwrap();
    assert!(
        not_k2.contains(&unbound("b", "https://b.example", "v2.k1.bm9uY2U.b")),
        "{not_k2:?}"
    );

    // c moves to another upstream after it was read; d gets a new credential: both are
    // left alone.
    let mut c = s.get_site("c").await.unwrap().unwrap();
    c.upstream_url = "http://elsewhere.example".into();
    s.update_site(&c, &audit("site.update", "site:c"))
        .await
        .unwrap();
    let mut d = s.get_site("d").await.unwrap().unwrap();
    d.credential.sealed_secret = Some("v2.k2.bm9uY2U.dnew".into());
    s.update_site(&d, &audit("site.set_credential", "site:d"))
        .await
        .unwrap();
    let seq = s.latest_change().await.unwrap();
    let batch: Vec<(Reseal, AuditEntry)> = all
        .iter()
        .map(|old| {
            let SealedSlot::SiteCredential(id) = &old.slot else {
                unreachable!()
            };
            (
                Reseal {
                    old: old.clone(),
                    new_sealed: old.sealed.replacen("v1.", "v2.", 1),
                },
                audit("site.bind_credential", &format!("site:{id}")),
            )
        })
        .collect();
    assert_eq!(s.bind_credentials(&batch).await.unwrap(), 1);
    let sealed = |id: &'static str| async move {
        s.get_site(id)
            .await
            .unwrap()
            .unwrap()
            .credential
            .sealed_secret
            .unwrap()
    };
    assert_eq!(sealed("a").await, "v2.k1.bm9uY2U.a");
    assert_eq!(sealed("c").await, "v1.k2.bm9uY2U.c");
    assert_eq!(sealed("d").await, "v2.k2.bm9uY2U.dnew");
    // No change-log row (caches stay right), one audit entry, for a.
    assert_eq!(changes_after(s, seq).await, vec![]);
    let newest = s.list_audit(None, 1).await.unwrap();
    assert_eq!(newest[0].entry.action, "site.bind_credential");
    assert_eq!(newest[0].entry.target, "site:a");
    assert_eq!(s.list_audit(Some("c"), 10).await.unwrap().len(), 2);
    // Binding again changes nothing; what is left unbound is c only.
    assert_eq!(s.bind_credentials(&batch).await.unwrap(), 0);
    assert_eq!(
        s.unbound_credentials(None, 100).await.unwrap(),
        vec![unbound("c", "http://elsewhere.example", "v1.k2.bm9uY2U.c")]
    );
    assert_eq!(
        s.sealed_key_counts().await.unwrap(),
        vec![("k1".to_string(), 3), ("k2".to_string(), 2)]
    );
    assert_counts_match_contents(s).await;
}

async fn sealed_values_and_reseal(b: Backend) {
    let f = Fresh::new(b).await;
    let s = f.store.as_ref();
    let mut s1 = site("s1");
    s1.credential = StoredCredential {
        kind: CredentialKind::Bearer,
        username: None,
        sealed_secret: Some("v1.k1.bm9uY2U.s1cred".into()),
    };
    s1.jwt_secret_sealed = Some("v1.k2.bm9uY2U.s1jwt".into());
    let mut s2 = site("s2");
    s2.credential = StoredCredential {
        kind: CredentialKind::Header,
        username: Some("X-Plugin-Auth".into()),
        sealed_secret: Some("v1.k1.bm9uY2U.s2cred".into()),
    };
    for rec in [&s1, &s2, &site("s3")] {
        create(s, rec).await.unwrap();
    }
    for (name, value) in [("pepper", "v1.k1.bm9uY2U.pepper"), ("plain", "not sealed")] {
        s.insert_setting_if_absent(name, value).await.unwrap();
    }

    assert_eq!(
        s.sealed_key_counts().await.unwrap(),
        vec![("k1".to_string(), 3), ("k2".to_string(), 1)]
    );
    let not_k2 = s.sealed_not_by("k2", None, 100).await.unwrap();
    let cred = |id: &str, v: &str| SealedValue {
        slot: SealedSlot::SiteCredential(id.into()),
        sealed: v.into(),
        upstream_url: Some("http://127.0.0.1:1".into()),
    };
    let pepper = SealedValue {
        slot: SealedSlot::Setting("pepper".into()),
        sealed: "v1.k1.bm9uY2U.pepper".into(),
        upstream_url: None,
    };
    assert_eq!(
        not_k2,
        vec![
            cred("s1", "v1.k1.bm9uY2U.s1cred"),
            cred("s2", "v1.k1.bm9uY2U.s2cred"),
            pepper.clone(),
        ]
    );
    assert_eq!(
        s.sealed_not_by("k2", None, 2).await.unwrap(),
        not_k2[..2].to_vec()
    );
    // The cursor: reading resumes after a slot, across slot kinds.
    assert_eq!(
        s.sealed_not_by("k2", Some(&not_k2[1].slot), 100)
            .await
            .unwrap(),
        not_k2[2..].to_vec()
    );
    assert_eq!(
        s.sealed_not_by("k2", Some(&not_k2[0].slot), 1)
            .await
            .unwrap(),
        not_k2[1..2].to_vec()
    );
    assert!(s
        .sealed_not_by("k2", Some(&not_k2[2].slot), 100)
        .await
        .unwrap()
        .is_empty());
    let not_k1 = s.sealed_not_by("k1", None, 100).await.unwrap();
    assert_eq!(
        not_k1,
        vec![SealedValue {
            slot: SealedSlot::SiteJwtSecret("s1".into()),
            sealed: "v1.k2.bm9uY2U.s1jwt".into(),
            upstream_url: None,
        }]
    );

    // s2's credential changes after the rewrap read it: that slot is left alone.
    let mut rec = s.get_site("s2").await.unwrap().unwrap();
    rec.credential.sealed_secret = Some("v1.k3.bm9uY2U.fresh".into());
    s.update_site(&rec, &audit("site.set_credential", "site:s2"))
        .await
        .unwrap();
    let seq = s.latest_change().await.unwrap();
    let batch: Vec<Reseal> = not_k2
        .iter()
        .map(|old| Reseal {
            old: old.clone(),
            new_sealed: old.sealed.replacen("v1.k1.", "v1.k2.", 1),
        })
        .collect();
    let replaced = s
        .reseal(&batch, &audit("keyring.rewrap", "keyring"))
        .await
        .unwrap();
    assert_eq!(replaced, 2);
    let s1_now = s.get_site("s1").await.unwrap().unwrap();
    assert_eq!(
        s1_now.credential.sealed_secret.as_deref(),
        Some("v1.k2.bm9uY2U.s1cred")
    );
    assert_eq!(
        s.get_site("s2")
            .await
            .unwrap()
            .unwrap()
            .credential
            .sealed_secret
            .as_deref(),
        Some("v1.k3.bm9uY2U.fresh")
    );
    assert_eq!(
        s.get_setting("pepper").await.unwrap().as_deref(),
        Some("v1.k2.bm9uY2U.pepper")
    );
    assert_eq!(
        s.get_setting("plain").await.unwrap().as_deref(),
        Some("not sealed")
    );
    assert_eq!(
        s.sealed_key_counts().await.unwrap(),
        vec![("k2".to_string(), 3), ("k3".to_string(), 1)]
    );
    assert_eq!(
        changes_after(s, seq).await,
        vec![
            (ChangeKind::Site, "s1".to_string()),
            (ChangeKind::Setting, "pepper".to_string())
        ]
    );
    assert_eq!(
        s.list_audit(None, 1).await.unwrap()[0].entry.action,
        "keyring.rewrap"
    );
    // Resealing again changes nothing (the old values are gone).
    assert_eq!(
        s.reseal(&batch, &audit("keyring.rewrap", "keyring"))
            .await
            .unwrap(),
        0
    );
    assert_counts_match_contents(s).await;

    // The counts follow every kind of write.
    let mut rec = s.get_site("s3").await.unwrap().unwrap();
    rec.credential = StoredCredential {
        kind: CredentialKind::Bearer,
        username: None,
        sealed_secret: Some("v1.k4.bm9uY2U.s3cred".into()),
    };
    rec.jwt_secret_sealed = Some("v1.k4.bm9uY2U.s3jwt".into());
    let rec = s
        .update_site(&rec, &audit("site.set_credential", "site:s3"))
        .await
        .unwrap();
    assert_counts_match_contents(s).await;
    // An update that leaves the sealed values alone changes no count.
    let mut same = rec.clone();
    same.name = "renamed".into();
    s.update_site(&same, &audit("site.update", "site:s3"))
        .await
        .unwrap();
    assert_counts_match_contents(s).await;
    s.delete_site("s1", &audit("site.delete", "site:s1"))
        .await
        .unwrap();
    s.delete_site("s3", &audit("site.delete", "site:s3"))
        .await
        .unwrap();
    assert_counts_match_contents(s).await;
    assert_eq!(
        s.sealed_key_counts().await.unwrap(),
        vec![("k2".to_string(), 1), ("k3".to_string(), 1)],
        "keys that seal nothing any more are not listed"
    );
    // Another instance reads the same counts.
    assert_eq!(
        f.another().await.sealed_key_counts().await.unwrap(),
        vec![("k2".to_string(), 1), ("k3".to_string(), 1)]
    );
}

/// Creates `rec`, audited as `site.create` of `site:<id>`.
async fn create(s: &dyn Store, rec: &SiteRecord) -> Result<(), StoreError> {
    s.create_site(rec, &audit("site.create", &format!("site:{}", rec.id)))
        .await
}

/// Waits for the next event, failing after 15 s.
async fn next_event(rx: &mut UnboundedReceiver<ChangeEvent>, waiting_for: &str) -> ChangeEvent {
    match tokio::time::timeout(Duration::from_secs(15), rx.recv()).await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("the listener stopped while waiting for {waiting_for}"),
        Err(_) => panic!("no listener event within 15s while waiting for {waiting_for}"),
    }
}

/// Waits for the next event, which must be `want`.
async fn expect_event(
    rx: &mut UnboundedReceiver<ChangeEvent>,
    want: ChangeEvent,
    waiting_for: &str,
) {
    assert_eq!(next_event(rx, waiting_for).await, want);
}

async fn listener(b: Backend) {
    let f = Fresh::new(b).await;
    let reader = f.another().await;
    let (tx, mut rx) = unbounded_channel();
    if b == Backend::Sqlite {
        // SQLite has nothing to push: its readers poll the change log.
        assert!(!reader.spawn_listener(tx));
        return;
    }
    let db = f.db.as_ref().unwrap();
    assert!(reader.spawn_listener(tx));
    expect_event(&mut rx, ChangeEvent::Connected, "Connected").await;

    // A write through another instance reaches this one, with its change-log number.
    create(f.store.as_ref(), &site("shop")).await.unwrap();
    let seq = f.store.latest_change().await.unwrap();
    let shop = ChangeEvent::Changed(Change {
        seq,
        kind: ChangeKind::Site,
        id: "shop".into(),
    });
    expect_event(&mut rx, shop, "the site change").await;
    // A transaction that touches several records announces each, in order, at commit.
    for k in ["k1", "k2"] {
        f.store
            .insert_api_key(&key(k, "shop", 1), &audit("key.issue", &format!("key:{k}")))
            .await
            .unwrap();
    }
    f.store
        .delete_site("shop", &audit("site.delete", "site:shop"))
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 5 {
        match next_event(&mut rx, "the key and delete changes").await {
            ChangeEvent::Changed(c) => got.push((c.seq, c.kind, c.id)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        got,
        vec![
            (seq + 1, ChangeKind::ApiKey, "k1".to_string()),
            (seq + 2, ChangeKind::ApiKey, "k2".to_string()),
            (seq + 3, ChangeKind::ApiKey, "k1".to_string()),
            (seq + 4, ChangeKind::ApiKey, "k2".to_string()),
            (seq + 5, ChangeKind::Site, "shop".to_string()),
        ]
    );

    // The listener's connection is killed: it says so, reconnects and says so again.
    assert_eq!(db.terminate_backends(LISTENER_APPLICATION_NAME).await, 1);
    expect_event(&mut rx, ChangeEvent::Disconnected, "Disconnected").await;
    expect_event(&mut rx, ChangeEvent::Connected, "Connected again").await;
    create(f.store.as_ref(), &site("blog")).await.unwrap();
    assert!(matches!(
        next_event(&mut rx, "a change after the reconnect").await,
        ChangeEvent::Changed(Change { kind: ChangeKind::Site, id, .. }) if id == "blog"
    ));

    // Dropping the receiver ends the listener and closes its connection.
    drop(rx);
    crate::harness::poll_until(
        "the listener's connection to close",
        Duration::from_secs(10),
        || async {
            match db.backends(LISTENER_APPLICATION_NAME).await {
                0 => Ok(()),
                n => Err(format!("{n} listener connections")),
            }
        },
    )
    .await;
}

/// Everything a store holds, in a comparable form.
async fn dump(
    s: &dyn Store,
) -> (
    Vec<SiteRecord>,
    Vec<ApiKeyRecord>,
    Vec<AdminTokenRecord>,
    Vec<(String, String)>,
    Vec<AuditRecord>,
) {
    (
        s.list_sites(None, 100_000).await.unwrap(),
        s.export_api_keys(None, 100_000).await.unwrap(),
        s.list_admin_tokens().await.unwrap(),
        s.export_settings().await.unwrap(),
        s.export_audit(0, 100_000).await.unwrap(),
    )
}

/// A store copied to the other backend and back holds exactly what it held.
fn copy_options(batch: u32, from: &str, to: &str) -> store::copy::CopyOptions {
    store::copy::CopyOptions {
        batch,
        from: from.into(),
        to: to.into(),
    }
}

async fn export_import_round_trip(b: Backend) {
    let src = Fresh::new(b).await;
    let s = src.store.as_ref();
    for i in 0..7 {
        let id = format!("site-{i}");
        let rec = if i % 2 == 0 {
            full_site(&id)
        } else {
            site(&id)
        };
        create(s, &rec).await.unwrap();
        for k in 0..3 {
            let key_id = format!("key{i}x{k}");
            s.insert_api_key(&key(&key_id, &id, k), &audit("key.issue", "key:x"))
                .await
                .unwrap();
        }
    }
    s.revoke_api_key("key1x1", 50, 60, &audit("key.revoke", "key:key1x1"))
        .await
        .unwrap();
    // last_used_at goes with its key.
    s.record_key_use(&["key2x0".into(), "key5x2".into()], 1_700_000_123)
        .await
        .unwrap();
    let rec = s.get_site("site-3").await.unwrap().unwrap();
    s.update_site(&rec, &audit("site.update", "site:site-3"))
        .await
        .unwrap();
    s.create_admin_token(
        &token("tok1"),
        &audit("admin_token.create", "admin_token:tok1"),
    )
    .await
    .unwrap();
    s.touch_admin_token("tok1", 99).await.unwrap();
    s.insert_setting_if_absent("pepper", "v1.k1.bm9uY2U.pepper")
        .await
        .unwrap();
    s.insert_setting_if_absent("other", "plain").await.unwrap();
    let original = dump(s).await;
    let counts = s.record_counts().await.unwrap();
    assert_eq!(
        (
            counts.sites,
            counts.api_keys,
            counts.admin_tokens,
            counts.settings
        ),
        (7, 21, 1, 2)
    );
    assert_eq!(counts.audit, original.4.len() as u64);

    let there = Fresh::new(b.other()).await;
    let report = store::copy::copy(s, there.store.as_ref(), &copy_options(2, "src", "there"))
        .await
        .unwrap();
    assert_eq!(report.copied, counts);
    assert!(report.batches >= 10, "{report:?}");
    assert_eq!(dump(there.store.as_ref()).await, original);
    // The copied origins are found the way a gateway reads them (index included).
    let origins = s.site_origins().await.unwrap();
    assert_eq!(origins.len(), 4, "{origins:?}");
    assert_eq!(there.store.site_origins().await.unwrap(), origins);
    // Imports keep the sealed counts too.
    assert_counts_match_contents(there.store.as_ref()).await;
    assert_eq!(
        there.store.sealed_key_counts().await.unwrap(),
        s.sealed_key_counts().await.unwrap()
    );
    let back = Fresh::new(b).await;
    store::copy::copy(
        there.store.as_ref(),
        back.store.as_ref(),
        &copy_options(1000, "there", "back"),
    )
    .await
    .unwrap();
    assert_eq!(dump(back.store.as_ref()).await, original);
    // A copy records no changes: it makes no history.
    assert_eq!(back.store.latest_change().await.unwrap(), 0);

    // A non-empty target is refused, and left as it was.
    let err = store::copy::copy(s, back.store.as_ref(), &copy_options(10, "src", "back"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(dump(back.store.as_ref()).await, original);
    // Importing a record that is there already, or a key without its site, writes nothing.
    let b2 = back.store.as_ref();
    let clash = ImportBatch {
        settings: vec![("new".into(), "x".into())],
        sites: vec![site("site-0")],
        ..ImportBatch::default()
    };
    assert!(matches!(
        b2.import(&clash).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(b2.get_setting("new").await.unwrap().is_none());
    let orphan = ImportBatch {
        api_keys: vec![key("lost", "nope", 1)],
        ..ImportBatch::default()
    };
    assert!(matches!(
        b2.import(&orphan).await,
        Err(StoreError::NotFound(_))
    ));
    // New audit entries are numbered after the copied ones.
    let last = original.4.last().unwrap().id;
    create(b2, &site("later")).await.unwrap();
    assert_eq!(b2.list_audit(None, 1).await.unwrap()[0].id, last + 1);
}

// ---------------------------------------------------------------------------------
// PostgreSQL only
// ---------------------------------------------------------------------------------

/// A TCP relay to PostgreSQL that can be frozen: connections stay open but nothing
/// gets through, as in a network partition.
struct Relay {
    port: u16,
    frozen: Arc<AtomicBool>,
}

impl Relay {
    async fn start(to: std::net::SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let f = frozen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(to).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(Relay::pipe(cr, sw, f.clone()));
                tokio::spawn(Relay::pipe(sr, cw, f.clone()));
            }
        });
        Relay { port, frozen }
    }

    async fn pipe(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        frozen: Arc<AtomicBool>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            while frozen.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }
}

/// `(host:port, database)` of a test database's URL.
fn pg_addr(db: &TestDb) -> (std::net::SocketAddr, String) {
    let url = url::Url::parse(&db.url).unwrap();
    let host = url.host_str().unwrap();
    let port = url.port().unwrap_or(5432);
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .unwrap()
        .next()
        .unwrap();
    (addr, url.path().trim_start_matches('/').to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_gives_errors_not_hangs() {
    let db = TestDb::create();
    let (addr, name) = pg_addr(&db);
    let relay = Relay::start(addr).await;
    // trust authentication ignores the password; it must not show anywhere.
    let url = format!(
        "postgres://postgres:pw-s3cret@127.0.0.1:{}/{name}",
        relay.port
    );
    let s = PostgresStore::open(&url).await.unwrap();
    create(&s, &site("shop")).await.unwrap();
    assert!(s.get_site("shop").await.unwrap().is_some());

    relay.frozen.store(true, Ordering::SeqCst);
    for what in ["read", "write"] {
        let started = Instant::now();
        let res = match what {
            "read" => s.get_site("shop").await.map(|_| ()),
            _ => create(&s, &site("blog")).await,
        };
        let took = started.elapsed();
        match res {
            Err(StoreError::Unavailable(msg)) => assert!(!msg.contains("pw-s3cret"), "{msg}"),
            other => panic!("a {what} during the outage gave {other:?}"),
        }
        assert!(
            took <= CALL_TIMEOUT + Duration::from_secs(1),
            "a {what} during the outage took {took:?}"
        );
        eprintln!("{what} during a partition failed after {took:?}");
    }
    relay.frozen.store(false, Ordering::SeqCst);
    // Once the network is back the store answers again, without a restart.
    crate::harness::poll_until(
        "the store to answer again",
        Duration::from_secs(20),
        || async {
            s.get_site("shop")
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.ok_or_else(|| "site gone".to_string()))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_at_open_fails_fast_without_the_password() {
    // Nothing listens: refused at once.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let err = PostgresStore::open(&format!("postgres://gw:pw-s3cret@127.0.0.1:{closed}/x"))
        .await
        .err()
        .expect("open must fail");
    assert!(started.elapsed() < Duration::from_secs(3));
    let text = err.to_string();
    assert!(matches!(err, StoreError::Unavailable(_)), "{text}");
    assert!(!text.contains("pw-s3cret"), "{text}");
    assert!(text.contains("redacted"), "{text}");

    // Something accepts but never answers (a hung server): open gives up on its own.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let started = Instant::now();
    let err = PostgresStore::open(&format!("postgres://gw:pw-s3cret@127.0.0.1:{port}/x"))
        .await
        .err()
        .expect("open must fail");
    let took = started.elapsed();
    assert!(took <= CONNECT_TIMEOUT + Duration::from_secs(2), "{took:?}");
    assert!(!err.to_string().contains("pw-s3cret"), "{err}");
    holder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_opens_migrate_once() {
    let db = TestDb::create();
    let url = db.store_url();
    let opens: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { store::open(&url).await.map(|_| ()) })
        })
        .collect();
    for o in opens {
        o.await.unwrap().unwrap();
    }
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(applied, vec![1, 2, 3, 4, 5, 6]);
}
