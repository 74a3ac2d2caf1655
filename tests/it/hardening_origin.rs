//! Hardening through the real gateway: a site's upstream credential stays with the
//! origin it was given for (moving the upstream needs a new credential; a sealed value
//! moved or re-pointed in the database does not open; credentials sealed the old way are
//! bound to their origin at start-up, on SQLite and PostgreSQL), and JWKS are fetched
//! over https or from loopback only, never following a redirect to http or another host.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};
use wpgate::crypto::{Keyring, Place};

use crate::harness::postgres::TestDb;
use crate::harness::{
    marker, poll_until, toml_str, wpgate_command, Answer, Gateway, GatewayConfig, JwksServer,
    ServerThread, SiteAuth, Upstream, CHANGE_DEADLINE,
};

/// The background prober on, checking every second: whatever it sends shows on the
/// recording upstreams.
const HEALTH_TOML: &str =
    "[health]\nenabled = true\ninterval = \"1s\"\nconcurrency = 4\ntimeout = \"2s\"\n";

fn app_password(password: &str) -> SiteAuth {
    SiteAuth::app_password("gateway", password)
}

/// How many requests `up` received carrying the header `auth` becomes.
fn requests_carrying(up: &Upstream, auth: &SiteAuth) -> usize {
    let (name, value) = auth.expected_upstream_header().unwrap();
    up.requests()
        .iter()
        .filter(|r| r.header_values(&name).contains(&value.as_str()))
        .count()
}

/// `PATCH /admin/v1/sites/<id>` with `If-Match: <version>`.
async fn patch(gw: &Gateway, token: &str, id: &str, version: i64, body: Value) -> Answer {
    gw.send(
        gw.admin_request(Method::PATCH, &format!("/admin/v1/sites/{id}"), token)
            .header("If-Match", format!("\"{version}\""))
            .json(&body),
    )
    .await
}

/// The site as the admin API shows it.
async fn show(gw: &Gateway, token: &str, id: &str) -> Value {
    let a = gw
        .admin_call(Method::GET, &format!("/admin/v1/sites/{id}"), token, None)
        .await;
    a.assert_ok();
    a.json().unwrap()
}

/// A proxied GET for `site` with a fresh marker in the query; returns the answer and
/// the marker.
async fn marked_get(gw: &Gateway, site: &str, key: &str, path: &str) -> (Answer, String) {
    let m = marker();
    (gw.get_as(site, key, &format!("{path}?{m}")).await, m)
}

/// Waits until `up` has received a health check (a request for the REST index).
async fn wait_for_probe(up: &Upstream, prefix: &str) {
    let index = format!("{prefix}/wp-json/");
    poll_until(
        "a health check of the upstream",
        CHANGE_DEADLINE,
        || async {
            if up.requests().iter().any(|r| r.path() == index) {
                Ok(())
            } else {
                Err(format!(
                    "{} requests, none for {index}",
                    up.requests().len()
                ))
            }
        },
    )
    .await
}

#[tokio::test]
async fn api_moving_the_upstream_to_another_origin_needs_a_new_credential() {
    let old = Upstream::start();
    let new = Upstream::start();
    let mut gw = Gateway::prepare(GatewayConfig {
        extra_toml: HEALTH_TOML.into(),
        ..GatewayConfig::default()
    });
    let old_auth = app_password("abcd EFGH 1234 ijkl MNOP 5678");
    gw.add_site("shop", &old.url(), &old_auth);
    let key = gw.issue_key("shop", &[]);
    gw.serve();
    let token = gw.admin_token("write", Some("ops"));

    // Another port, scheme or host (even one naming the same machine) without a new
    // credential: 409, and the site stays as it was.
    let old_port = old.port();
    for elsewhere in [
        new.url(),
        format!("https://127.0.0.1:{old_port}"),
        format!("http://localhost:{old_port}/wp"),
    ] {
        let a = patch(&gw, &token, "shop", 1, json!({ "upstream": elsewhere })).await;
        let err = a.assert_error(409, "site.credential_required");
        let message = err["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("http://127.0.0.1:{old_port}")),
            "{message}"
        );
    }
    let site = show(&gw, &token, "shop").await;
    assert_eq!(site["upstream"], old.url(), "{site}");
    assert_eq!(site["version"], 1, "{site}");
    let (a, m) = marked_get(&gw, "shop", &key.full, "/wp-json/wp/v2/posts").await;
    a.assert_ok();
    old.one_with(&m).assert_credential(&old_auth);

    // A new path on the same origin keeps the credential.
    let a = patch(
        &gw,
        &token,
        "shop",
        1,
        json!({ "upstream": format!("{}/blog", old.url()) }),
    )
    .await;
    a.assert_ok();
    let (a, m) = marked_get(&gw, "shop", &key.full, "/wp-json/wp/v2/posts").await;
    a.assert_ok();
    let seen = old.one_with(&m);
    assert!(seen.path().starts_with("/blog/wp-json/"), "{seen:?}");
    seen.assert_credential(&old_auth);
    // The prober keeps checking the old upstream; the new one has received nothing.
    wait_for_probe(&old, "/blog").await;
    assert!(new.requests().is_empty(), "{:#?}", new.requests());

    // With a new credential in the same call: the new upstream gets the new credential.
    let new_auth = SiteAuth::bearer("new-upstream-token-0123456789");
    let a = patch(
        &gw,
        &token,
        "shop",
        2,
        json!({
            "upstream": new.url(),
            "credential": {"kind": "bearer", "secret": "new-upstream-token-0123456789"},
        }),
    )
    .await;
    a.assert_ok();
    let site = a.json().unwrap();
    assert_eq!(site["version"], 3, "{site}");
    assert_eq!(site["credential"]["kind"], "bearer", "{site}");
    assert!(!a.body.contains("new-upstream-token"), "{}", a.body);
    let (a, m) = marked_get(&gw, "shop", &key.full, "/wp-json/wp/v2/posts").await;
    a.assert_ok();
    new.one_with(&m).assert_credential(&new_auth);
    assert!(old.requests_with(&m).is_empty());
    wait_for_probe(&new, "").await;
    // The old credential never reached the new upstream, nor the new one the old.
    assert_eq!(requests_carrying(&new, &old_auth), 0);
    assert_eq!(requests_carrying(&old, &new_auth), 0);

    // The audit log records the change (never the secret).
    let audit = gw
        .admin_call(Method::GET, "/admin/v1/audit?site=shop", &token, None)
        .await;
    audit.assert_ok();
    let entries = audit.json().unwrap()["entries"].clone();
    let update = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["action"] == "site.update"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("credential=bearer"))
        })
        .unwrap_or_else(|| panic!("no site.update with the credential: {entries}"));
    assert!(
        update["detail"].as_str().unwrap().contains(&new.url()),
        "{update}"
    );
    assert!(!audit.body.contains("new-upstream-token"), "{}", audit.body);
}

#[tokio::test]
async fn cli_moving_the_upstream_to_another_origin_needs_a_new_credential() {
    let old = Upstream::start();
    let new = Upstream::start();
    let mut gw = Gateway::prepare(GatewayConfig::default());
    let old_auth = app_password("abcd EFGH 1234 ijkl MNOP 5678");
    gw.add_site("shop", &old.url(), &old_auth);
    let key = gw.issue_key("shop", &[]);
    gw.serve();

    let refused = gw.cli(&["site", "update", "shop", "--upstream", &new.url()], None);
    refused.assert_failure();
    assert!(
        refused.stderr.contains("needs a new credential"),
        "{}",
        refused.stderr
    );
    let site = gw.cli_json(&["site", "show", "shop"]);
    let site = site.assert_success().json();
    assert_eq!(site["upstream"], old.url(), "{site}");
    assert_eq!(site["version"], 1, "{site}");
    let (a, m) = marked_get(&gw, "shop", &key.full, "/wp-json/").await;
    a.assert_ok();
    old.one_with(&m).assert_credential(&old_auth);

    // A new secret on stdin (kind and user kept) moves it.
    let new_password = "wxyz 9876 QRST 5432 uvwx 1098";
    let new_auth = app_password(new_password);
    let moved = gw.cli(
        &[
            "site",
            "update",
            "shop",
            "--upstream",
            &format!("{}/wp", new.url()),
            "--secret-stdin",
        ],
        Some(&format!("{new_password}\n")),
    );
    moved.assert_success();
    assert!(!moved.stdout.contains(new_password), "{}", moved.stdout);
    let m = poll_until(
        "the running gateway to send to the new upstream",
        CHANGE_DEADLINE,
        || async {
            let (a, m) = marked_get(&gw, "shop", &key.full, "/wp-json/").await;
            if a.status == 200 && new.requests_with(&m).len() == 1 {
                Ok(m)
            } else {
                Err(a.summary())
            }
        },
    )
    .await;
    let seen = new.one_with(&m);
    assert!(seen.path().starts_with("/wp/wp-json/"), "{seen:?}");
    seen.assert_credential(&new_auth);
    assert_eq!(requests_carrying(&new, &old_auth), 0);
    assert_eq!(requests_carrying(&old, &new_auth), 0);

    // Other changes need no credential; a command that changes nothing is refused.
    gw.cli(&["site", "update", "shop", "--name", "The shop"], None)
        .assert_success();
    let nothing = gw.cli(&["site", "update", "shop"], None);
    nothing.assert_failure();
    assert!(
        nothing.stderr.contains("nothing to change"),
        "{}",
        nothing.stderr
    );
}

/// A store the test writes to directly, as an operator or an attacker with database
/// access would.
enum Db {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Db {
    /// Runs `sql` (`?` parameters) with `params`; returns the rows changed.
    async fn exec(&self, sql: &str, params: &[&str]) -> u64 {
        match self {
            Db::Sqlite(path) => {
                let mut c = self.sqlite(path).await;
                let mut q = sqlx::query(sql);
                for p in params {
                    q = q.bind(*p);
                }
                q.execute(&mut c).await.unwrap().rows_affected()
            }
            Db::Postgres(url) => {
                let mut c = pg(url).await;
                let sql = numbered(sql);
                let mut q = sqlx::query(&sql);
                for p in params {
                    q = q.bind(*p);
                }
                q.execute(&mut c).await.unwrap().rows_affected()
            }
        }
    }

    /// One text value (`?` parameters).
    async fn text(&self, sql: &str, params: &[&str]) -> String {
        match self {
            Db::Sqlite(path) => {
                let mut c = self.sqlite(path).await;
                let mut q = sqlx::query_scalar::<_, String>(sql);
                for p in params {
                    q = q.bind(*p);
                }
                q.fetch_one(&mut c).await.unwrap()
            }
            Db::Postgres(url) => {
                let mut c = pg(url).await;
                let sql = numbered(sql);
                let mut q = sqlx::query_scalar::<_, String>(&sql);
                for p in params {
                    q = q.bind(*p);
                }
                q.fetch_one(&mut c).await.unwrap()
            }
        }
    }

    /// A count (`?` parameters).
    async fn count(&self, sql: &str, params: &[&str]) -> i64 {
        match self {
            Db::Sqlite(path) => {
                let mut c = self.sqlite(path).await;
                let mut q = sqlx::query_scalar::<_, i64>(sql);
                for p in params {
                    q = q.bind(*p);
                }
                q.fetch_one(&mut c).await.unwrap()
            }
            Db::Postgres(url) => {
                let mut c = pg(url).await;
                let sql = numbered(sql);
                let mut q = sqlx::query_scalar::<_, i64>(&sql);
                for p in params {
                    q = q.bind(*p);
                }
                q.fetch_one(&mut c).await.unwrap()
            }
        }
    }

    async fn sqlite(&self, path: &std::path::Path) -> sqlx::SqliteConnection {
        use sqlx::ConnectOptions;
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap()
    }

    async fn credential(&self, site: &str) -> String {
        self.text("SELECT credential_sealed FROM sites WHERE id = ?", &[site])
            .await
    }

    async fn set_credential(&self, site: &str, sealed: &str) {
        let n = self
            .exec(
                "UPDATE sites SET credential_sealed = ? WHERE id = ?",
                &[sealed, site],
            )
            .await;
        assert_eq!(n, 1);
    }

    /// The audit entries of `action` about `site`.
    async fn audited(&self, action: &str, site: &str) -> i64 {
        self.count(
            "SELECT COUNT(*) FROM audit_log WHERE action = ? AND site_id = ?",
            &[action, site],
        )
        .await
    }
}

async fn pg(url: &str) -> sqlx::PgConnection {
    <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap()
}

/// `?` parameters as PostgreSQL's `$1, $2, ...`.
fn numbered(sql: &str) -> String {
    let mut out = String::new();
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn a_credential_moved_in_the_database_never_opens_for_another_site_or_origin() {
    let up_a = Upstream::start();
    let up_b = Upstream::start();
    let mut gw = Gateway::prepare(GatewayConfig {
        extra_toml: HEALTH_TOML.into(),
        ..GatewayConfig::default()
    });
    let auth_a = SiteAuth::bearer("site-a-upstream-token-0123456789");
    let auth_b = SiteAuth::bearer("site-b-upstream-token-9876543210");
    gw.add_site("a", &up_a.url(), &auth_a);
    gw.add_site("b", &up_b.url(), &auth_b);
    let key_a = gw.issue_key("a", &[]);
    let key_b = gw.issue_key("b", &[]);
    let db = Db::Sqlite(gw.db_path());
    let token = gw.admin_token("write", None);

    // By hand in the database, before the gateway starts (a running one would keep
    // serving its cached copy for a while when a reload fails): a's sealed credential
    // copied into b, and a's upstream pointed at b's upstream (another origin), its
    // credential left as it is.
    let sealed_a = db.credential("a").await;
    db.set_credential("b", &sealed_a).await;
    let n = db
        .exec(
            "UPDATE sites SET upstream_url = ? WHERE id = ?",
            &[&up_b.url(), "a"],
        )
        .await;
    assert_eq!(n, 1);
    gw.serve();

    // Neither site can be used: requests get the "site unusable" answer and the health
    // of both says so.
    for (site, key) in [("a", &key_a), ("b", &key_b)] {
        let a = gw.get_as(site, &key.full, "/wp-json/").await;
        a.assert_error(500, "internal.error");
        assert_eq!(gw.logged_reason(&a).await, "site_unusable");
        let health = poll_until("the health to say unusable", CHANGE_DEADLINE, || async {
            let h = gw
                .admin_call(
                    Method::GET,
                    &format!("/admin/v1/sites/{site}/health"),
                    &token,
                    None,
                )
                .await;
            let h = h.json().unwrap();
            if h["state"] == "unusable" {
                Ok(h)
            } else {
                Err(h.to_string())
            }
        })
        .await;
        let message = health["message"].as_str().unwrap();
        assert!(message.contains("set-credential"), "{message}");
    }
    let tested = gw
        .admin_call(Method::POST, "/admin/v1/sites/a/test", &token, None)
        .await;
    tested.assert_ok();
    let tested = tested.json().unwrap();
    assert_eq!(tested["state"], "unusable", "{tested}");
    assert!(
        tested["message"]
            .as_str()
            .unwrap()
            .contains(&format!("http://127.0.0.1:{}", up_b.port())),
        "{tested}"
    );

    // a's credential never reached b's upstream; after the health says unusable no
    // request reaches it at all (the prober keeps running, every second).
    assert_eq!(requests_carrying(&up_b, &auth_a), 0);
    let seen = up_b.requests().len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(up_b.requests().len(), seen, "{:#?}", up_b.requests());
    assert_eq!(requests_carrying(&up_b, &auth_a), 0);
    let logs = gw.logs();
    for secret in auth_a.secrets().iter().chain(&auth_b.secrets()) {
        assert!(!logs.contains(secret.as_str()), "a secret in the log");
    }

    assert!(sealed_a.starts_with("v2."), "{sealed_a}");

    // The fix: set a's credential again, for its (new) upstream.
    let fixed = SiteAuth::bearer("site-a-new-token-for-b-origin-0000");
    gw.set_credential("a", &fixed, &[]).assert_success();
    let a = gw.poll_status("a", &key_a.full, "/wp-json/", 200).await;
    a.assert_ok();
    let (a, m) = marked_get(&gw, "a", &key_a.full, "/wp-json/").await;
    a.assert_ok();
    up_b.one_with(&m).assert_credential(&fixed);
    assert_eq!(requests_carrying(&up_b, &auth_a), 0);
}

/// A store holding credentials sealed the old way (format v1, bound to the site only):
/// every store open with the keyring binds them to their origin, once, audited, even
/// with several processes starting at once; the gateway keeps serving with them. A v1
/// value that does not open (copied from another site) is reported and stays unusable.
async fn old_format_credentials_are_bound_at_start_up(pg: Option<TestDb>) {
    let up = Upstream::start();
    let (extra_toml, db) = match &pg {
        Some(t) => (
            format!("[store]\nurl = {}\n", toml_str(&t.url)),
            Some(Db::Postgres(t.url.clone())),
        ),
        None => (String::new(), None),
    };
    let mut gw = Gateway::prepare(GatewayConfig {
        extra_toml,
        ..GatewayConfig::default()
    });
    let db = db.unwrap_or_else(|| Db::Sqlite(gw.db_path()));
    let password = "abcd EFGH 1234 ijkl MNOP 5678";
    let auth = app_password(password);
    let thief_auth = SiteAuth::bearer("thief-upstream-token-0123456789");
    gw.add_site("shop", &format!("{}/wp", up.url()), &auth);
    gw.add_site("thief", &up.url(), &thief_auth);
    let key = gw.issue_key("shop", &[]);
    let thief_key = gw.issue_key("thief", &[]);

    // What the old code stored: sealed for `wpgate/v1/<site>/upstream_credential`.
    let keyring = Keyring::load_file(&gw.keyring_path()).unwrap();
    let old_shop = keyring
        .seal(
            &Place::site("shop", "upstream_credential"),
            password.as_bytes(),
        )
        .unwrap();
    assert!(old_shop.starts_with("v1."), "{old_shop}");
    db.set_credential("shop", &old_shop).await;
    db.set_credential("thief", &old_shop).await;

    // Three processes open the store at once (replicas starting together).
    let config = gw.config_path.to_string_lossy().into_owned();
    let children: Vec<_> = (0..3)
        .map(|_| {
            wpgate_command(&["--config", &config, "site", "list"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut stderr = String::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{text}");
        stderr.push_str(&text);
    }
    assert!(
        !stderr.contains(password),
        "the secret was printed: {stderr}"
    );
    let bound = db.credential("shop").await;
    assert!(bound.starts_with("v2."), "{bound}");
    assert_eq!(db.audited("site.bind_credential", "shop").await, 1);
    assert_eq!(db.credential("thief").await, old_shop);
    assert_eq!(db.audited("site.bind_credential", "thief").await, 0);

    // The gateway serves the bound credential; the copied one is reported at start and
    // its site is unusable.
    gw.serve();
    let (a, m) = marked_get(&gw, "shop", &key.full, "/wp-json/").await;
    a.assert_ok();
    up.one_with(&m).assert_credential(&auth);
    let a = gw.get_as("thief", &thief_key.full, "/wp-json/").await;
    a.assert_error(500, "internal.error");
    assert_eq!(gw.logged_reason(&a).await, "site_unusable");
    assert_eq!(requests_carrying(&up, &thief_auth), 0);
    let logs = gw.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("thief") && l.contains("cannot be re-sealed")),
        "{logs}"
    );
    for secret in auth.secrets() {
        assert!(!logs.contains(&secret), "a secret in the log");
    }

    // Idempotent: the gateway's own start (the fourth store open) bound nothing more.
    assert_eq!(db.audited("site.bind_credential", "shop").await, 1);
    assert_eq!(db.credential("shop").await, bound);
    drop(gw);
    drop(pg);
}

#[tokio::test]
async fn old_format_credentials_are_bound_at_start_up_on_sqlite() {
    old_format_credentials_are_bound_at_start_up(None).await;
}

#[tokio::test]
async fn old_format_credentials_are_bound_at_start_up_on_postgres() {
    old_format_credentials_are_bound_at_start_up(Some(TestDb::create())).await;
}

// ---------------------------------------------------------------------------------
// JWKS
// ---------------------------------------------------------------------------------

const RSA_PRIVATE_PEM: &str = include_str!("../fixtures/rsa-test-private.pem");

/// The fixture RSA key as a JWK with kid `k1`, and an RS256 token signed with it.
fn rsa_jwk_and_token() -> (Value, String) {
    let encoding = EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap();
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, Algorithm::RS256).unwrap();
    let mut jwk = serde_json::to_value(jwk).unwrap();
    jwk["kid"] = json!("k1");
    let now = wpgate::time::now_unix();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let token = jsonwebtoken::encode(
        &header,
        &json!({"sub": "user-1", "iat": now, "exp": now + 600}),
        &encoding,
    )
    .unwrap();
    (jwk, token)
}

/// A loopback server answering every request `302 Location: <to>`, and its hit count.
fn redirector(to: String) -> (ServerThread, Arc<AtomicU64>) {
    let hits = Arc::new(AtomicU64::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let (to, counted) = (to.clone(), counted.clone());
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            (
                axum::http::StatusCode::FOUND,
                [(axum::http::header::LOCATION, to)],
            )
        }
    });
    (ServerThread::start(app), hits)
}

fn jwks_policy(url: &str) -> Vec<&str> {
    vec![
        "--methods",
        "jwt",
        "--jwt-alg",
        "RS256",
        "--jwt-jwks-url",
        url,
    ]
}

#[tokio::test]
async fn set_auth_refuses_a_jwks_url_that_is_not_https_or_loopback() {
    let up = Upstream::start();
    let gw = Gateway::start();
    gw.add_site("shop", &up.url(), &SiteAuth::None);
    let set_auth = |url: &str| {
        let mut args = vec!["site", "set-auth", "shop"];
        args.extend(jwks_policy(url));
        gw.cli(&args, None)
    };
    for refused in [
        "http://idp.example.com/.well-known/jwks.json",
        "http://10.1.2.3/jwks.json",
        "ftp://idp.example.com/jwks.json",
    ] {
        let out = set_auth(refused);
        out.assert_failure();
        assert!(out.stderr.contains("JWKS URL"), "{refused}: {}", out.stderr);
    }
    assert!(set_auth("http://idp.example.com/jwks.json")
        .stderr
        .contains("must use https"));
    let site = gw.cli_json(&["site", "show", "shop"]);
    let auth = site.assert_success().json()["auth"].clone();
    assert_eq!(auth, json!({"methods": ["api_key"]}), "nothing was stored");
    for accepted in [
        "https://idp.example.com/.well-known/jwks.json",
        "http://127.0.0.1:9/jwks.json",
        "http://localhost:9/jwks.json",
        "http://[::1]:9/jwks.json",
    ] {
        set_auth(accepted).assert_success();
    }
}

#[tokio::test]
async fn jwks_redirects_to_another_host_or_to_http_are_not_followed() {
    let (jwk, token) = rsa_jwk_and_token();
    let jwks = JwksServer::start(vec![jwk]);
    let port = url::Url::parse(&jwks.url()).unwrap().port().unwrap();
    // The redirectors are on 127.0.0.1, like the JWKS server: they send the fetch to
    // the JWKS server under another host name (`localhost`), over http and over https,
    // and to it over http on the same host.
    let (to_other_host, other_host_hits) = redirector(format!("http://localhost:{port}/jwks.json"));
    let (to_https_other_host, https_other_host_hits) =
        redirector(format!("https://localhost:{port}/jwks.json"));
    let (to_http, http_hits) = redirector(jwks.url());
    let up = Upstream::start();
    let mut gw = Gateway::prepare(GatewayConfig {
        extra_toml: "[auth]\nmax_failures = 0\n".into(),
        ..GatewayConfig::default()
    });
    let direct = jwks.url();
    let via_other_host = format!("http://127.0.0.1:{}/jwks.json", to_other_host.port);
    let via_https_other_host = format!("http://127.0.0.1:{}/jwks.json", to_https_other_host.port);
    let via_http = format!("http://127.0.0.1:{}/jwks.json", to_http.port);
    for (site, url) in [
        ("direct", &direct),
        ("other-host", &via_other_host),
        ("https-other-host", &via_https_other_host),
        ("to-http", &via_http),
    ] {
        gw.add_site(
            site,
            &up.url(),
            &SiteAuth::bearer("upstream-token-0123456789"),
        );
        let mut args = vec!["site", "set-auth", site];
        args.extend(jwks_policy(url));
        gw.cli(&args, None).assert_success();
    }
    gw.serve();
    let with_token = |site: &str| {
        gw.get("/wp-json/")
            .header(crate::harness::SITE_HEADER, site)
            .bearer_auth(&token)
    };

    // The key set itself is fine: fetched directly, the token verifies.
    gw.send(with_token("direct")).await.assert_ok();
    assert_eq!(jwks.hits(), 1);
    for site in ["other-host", "https-other-host", "to-http"] {
        let a = gw.send(with_token(site)).await;
        a.assert_error(503, "auth.jwks_unavailable");
        assert_eq!(gw.logged_reason(&a).await, "jwks_unavailable");
    }
    for hits in [&other_host_hits, &https_other_host_hits, &http_hits] {
        assert!(hits.load(Ordering::SeqCst) >= 1);
    }
    assert_eq!(jwks.hits(), 1, "a refused redirect was followed");
    let logs = gw.logs();
    let failures: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("JWKS fetch failed"))
        .collect();
    assert!(
        failures
            .iter()
            .any(|l| l.contains("to host localhost refused")),
        "{failures:#?}"
    );
    assert!(
        failures.iter().any(|l| l.contains("https only")),
        "{failures:#?}"
    );
}
