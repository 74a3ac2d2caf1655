//! `wpgate site ...`: register sites and set their credential, health and auth policy;
//! show and run their health checks.

use super::{actor, explain, parse_duration, print_table, report};
use crate::admin::health::HealthView;
use crate::admin::views::SiteView;
use crate::auth::policy::{ActAs, AuthPolicy, JwtPolicy, JwtVerify, Method};
use crate::config::Config;
use crate::fleet::{CredentialInput, Fleet, NewSite, SiteChanges};
use crate::health::targets::check_now;
use crate::health::{HealthReport, Ledger};
use crate::secret::Secret;
use crate::site::{AllowOrigin, AllowPath, CorsAllow, CredentialKind, RouteAllow, SiteId};
use crate::store::{SiteRecord, StoreError};
use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// Register a WordPress site.
    Add {
        id: SiteId,
        /// Base URL of the site, http or https, optionally with a path prefix.
        #[arg(long)]
        upstream: String,
        /// Display name (default: the id).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        credential: CredentialArgs,
    },
    /// List sites.
    List {
        /// Start after this site id (pagination).
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// Only sites whose id or name contains this text (ASCII letters in either case).
        #[arg(long)]
        search: Option<String>,
        /// Only sites whose last stored health check found this state (healthy,
        /// degraded, auth_failed, unreachable, disabled, unusable, unknown).
        #[arg(long, value_parser = health_state)]
        state: Option<crate::health::HealthState>,
    },
    /// Change a site's name or upstream, and its credential. The credential is bound to
    /// the upstream's origin (scheme, host, port): moving the upstream to another origin
    /// needs a new credential in the same command (--secret-stdin, with --auth ... if the
    /// kind changes).
    Update {
        id: SiteId,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        /// New base URL of the site, http or https, optionally with a path prefix.
        #[arg(long)]
        upstream: Option<String>,
        #[command(flatten)]
        credential: CredentialArgs,
    },
    /// Show one site (never its secret).
    Show { id: SiteId },
    /// Delete a site and its API keys.
    Rm { id: SiteId },
    /// Let requests through to a site again.
    Enable { id: SiteId },
    /// Refuse requests to a site (403 site.disabled).
    Disable { id: SiteId },
    /// Replace a site's upstream credential.
    SetCredential {
        id: SiteId,
        #[command(flatten)]
        credential: CredentialArgs,
        /// Check the new credential against the site first (users/me must accept it)
        /// and store it only if the check passes; otherwise keep the old one.
        #[arg(long)]
        confirm: bool,
    },
    /// Show a site's health as its last check found it, from the store (what every
    /// gateway sharing the store shows).
    Health { id: SiteId },
    /// Check a site now, as the store holds it; the result becomes its health on every
    /// gateway sharing the store. Exit status 0 when it is healthy.
    Test { id: SiteId },
    /// Set a site's health settings (replaces them): REST namespaces it must offer, and
    /// whether proxy requests fail fast (503 site.unavailable) while it is unreachable.
    SetHealth {
        id: SiteId,
        /// A REST namespace the site must offer, e.g. myplugin/v1 (repeatable).
        #[arg(long)]
        require_namespace: Vec<String>,
        /// Answer 503 at once while the health check finds the site unreachable.
        #[arg(long)]
        fail_fast: bool,
    },
    /// Set which paths are forwarded to a site besides the WordPress REST API (replaces
    /// the list). Other paths get 403 route.not_allowed.
    SetRoutes {
        id: SiteId,
        /// A path prefix to forward, e.g. /xmlrpc.php or /wp-content/uploads/ (repeatable;
        /// matched on segment boundaries, after percent-decoding).
        #[arg(long, required_unless_present = "reset")]
        allow_path: Vec<AllowPath>,
        /// Back to the default: the REST API only.
        #[arg(long, conflicts_with = "allow_path")]
        reset: bool,
    },
    /// Set which browser origins may call a site (CORS; replaces the list). A request
    /// with an Origin header the site does not list gets 403 cors.origin_not_allowed.
    SetCors {
        id: SiteId,
        /// An origin, scheme://host[:port] (http or https, no path, no wildcard), e.g.
        /// https://app.example.com (repeatable).
        #[arg(long, required_unless_present = "reset")]
        allow_origin: Vec<AllowOrigin>,
        /// Back to the default: no browser origin.
        #[arg(long, conflicts_with = "allow_origin")]
        reset: bool,
    },
    /// Set how clients authenticate to a site (replaces its whole auth policy).
    SetAuth {
        id: SiteId,
        #[command(flatten)]
        auth: Box<AuthArgs>,
    },
    /// Create and update many sites from an onboarding file: JSON lines or CSV with a
    /// header row, fields id, name, upstream, auth, username, header_name, secret (a
    /// value, env:NAME or file:PATH). The whole file is checked first and written in one
    /// transaction; running it again changes nothing.
    Import {
        /// The file, or - for standard input.
        file: String,
        /// Only say what would be created, updated or left unchanged.
        #[arg(long)]
        dry_run: bool,
        /// The file's format (default: by its extension, else by its content).
        #[arg(long, value_enum)]
        format: Option<super::onboard::FormatArg>,
    },
    /// Write every site as an onboarding file (never a secret) to standard output.
    Export {
        #[arg(long, value_enum, default_value = "jsonl")]
        format: super::onboard::FormatArg,
    },
    /// Create a site from a one-site set-up's environment: WORDPRESS_API_URL (its REST
    /// API URL or base URL), and WORDPRESS_USERNAME with WORDPRESS_APP_PASSWORD, or
    /// WORDPRESS_AUTH_TOKEN (or the secret on standard input with --secret-stdin).
    ImportEnv {
        id: SiteId,
        /// Display name (default: the id).
        #[arg(long)]
        name: Option<String>,
        /// Read the secret from standard input instead of WORDPRESS_APP_PASSWORD or
        /// WORDPRESS_AUTH_TOKEN (an Application Password when WORDPRESS_USERNAME is set,
        /// else a bearer token).
        #[arg(long)]
        secret_stdin: bool,
        /// Only say what was found; add nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Args)]
pub struct AuthArgs {
    /// Accepted methods, comma-separated: api_key, jwt.
    #[arg(long, value_delimiter = ',', default_value = "api_key")]
    pub methods: Vec<String>,
    /// Who verifies JWTs: local (wpgate, with the keys below) or wordpress (the site).
    #[arg(long, default_value = "local")]
    pub jwt_verify: String,
    /// Allowed algorithms (repeat or comma-separate): HS256/384/512, RS*, PS*, ES256/384, EdDSA.
    #[arg(long, value_delimiter = ',')]
    pub jwt_alg: Vec<String>,
    /// JWKS URL the verification keys are fetched from.
    #[arg(long)]
    pub jwt_jwks_url: Option<String>,
    /// PEM file with a public key (repeatable).
    #[arg(long)]
    pub jwt_public_key_file: Vec<PathBuf>,
    /// Required `iss`.
    #[arg(long)]
    pub jwt_issuer: Option<String>,
    /// Accepted `aud` values (repeatable); the token must name one of them.
    #[arg(long)]
    pub jwt_audience: Vec<String>,
    /// Clock leeway for exp/nbf/iat.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub jwt_leeway: Duration,
    /// Longest accepted token lifetime (exp - iat).
    #[arg(long, value_parser = parse_duration)]
    pub jwt_max_lifetime: Option<Duration>,
    /// Copy a verified claim into an upstream header: CLAIM=HEADER, e.g. sub=X-Auth-Subject.
    #[arg(long)]
    pub jwt_claim_header: Vec<String>,
    /// Read the HMAC secret for HS* algorithms from standard input.
    #[arg(long)]
    pub jwt_secret_stdin: bool,
    /// With --jwt-verify wordpress: `user` (default) forwards the client's own token so
    /// WordPress applies that user's capabilities; `site` injects the site credential
    /// instead, for users holding a role given with --jwt-require-role.
    #[arg(long, value_enum)]
    pub jwt_act_as: Option<ActAsArg>,
    /// With --jwt-verify wordpress: WordPress roles (repeat or comma-separate), one of
    /// which the user must hold, e.g. administrator,editor. Required with --jwt-act-as site.
    #[arg(long, value_delimiter = ',')]
    pub jwt_require_role: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActAsArg {
    User,
    Site,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthKind {
    /// HTTP Basic with a WordPress Application Password (needs --username).
    AppPassword,
    /// Authorization: Bearer <secret>.
    Bearer,
    /// A plugin's own header (needs --header-name).
    Header,
    /// No credential.
    None,
}

impl From<AuthKind> for CredentialKind {
    fn from(k: AuthKind) -> Self {
        match k {
            AuthKind::AppPassword => CredentialKind::AppPassword,
            AuthKind::Bearer => CredentialKind::Bearer,
            AuthKind::Header => CredentialKind::Header,
            AuthKind::None => CredentialKind::None,
        }
    }
}

#[derive(Debug, Args)]
pub struct CredentialArgs {
    /// How wpgate authenticates to the site.
    #[arg(long, value_enum)]
    pub auth: Option<AuthKind>,
    /// WordPress user for --auth app-password.
    #[arg(long)]
    pub username: Option<String>,
    /// Header name for --auth header.
    #[arg(long)]
    pub header_name: Option<String>,
    /// Read the secret from standard input (never from the command line).
    #[arg(long)]
    pub secret_stdin: bool,
}

impl CredentialArgs {
    /// True when any credential flag is given.
    fn given(&self) -> bool {
        self.auth.is_some()
            || self.username.is_some()
            || self.header_name.is_some()
            || self.secret_stdin
    }
}

fn read_secret(args: &CredentialArgs) -> anyhow::Result<Option<Secret>> {
    if !args.secret_stdin {
        return Ok(None);
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read the secret from standard input")?;
    let text = zeroize::Zeroizing::new(text);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        bail!("--secret-stdin: standard input was empty");
    }
    Ok(Some(Secret::from_string(trimmed.to_string())))
}

/// Builds the credential from flags; `current` fills in what a rotation leaves out.
fn credential_input(
    args: &CredentialArgs,
    current: Option<&SiteRecord>,
) -> anyhow::Result<CredentialInput> {
    let kind: CredentialKind = match (args.auth, current) {
        (Some(k), _) => k.into(),
        (None, Some(site)) => site.credential.kind,
        (None, None) if args.username.is_some() => CredentialKind::AppPassword,
        (None, None) if args.header_name.is_some() => CredentialKind::Header,
        (None, None) if args.secret_stdin => {
            bail!("say which kind of credential the secret is: --auth app-password|bearer|header")
        }
        (None, None) => CredentialKind::None,
    };
    let keep = current
        .filter(|s| s.credential.kind == kind)
        .and_then(|s| s.credential.username.clone());
    let username = match kind {
        CredentialKind::AppPassword => {
            if args.header_name.is_some() {
                bail!("--header-name goes with --auth header");
            }
            Some(
                args.username
                    .clone()
                    .or(keep)
                    .context("--auth app-password needs --username")?,
            )
        }
        CredentialKind::Header => {
            if args.username.is_some() {
                bail!("--username goes with --auth app-password");
            }
            Some(
                args.header_name
                    .clone()
                    .or(keep)
                    .context("--auth header needs --header-name")?,
            )
        }
        CredentialKind::Bearer | CredentialKind::None => {
            if args.username.is_some() || args.header_name.is_some() {
                bail!(
                    "--username and --header-name do not go with --auth {}",
                    kind.as_str()
                );
            }
            None
        }
    };
    let secret = read_secret(args)?;
    if kind.needs_secret() && secret.is_none() {
        bail!(
            "--auth {} needs the secret on standard input: add --secret-stdin",
            kind.as_str()
        );
    }
    if !kind.needs_secret() && secret.is_some() {
        bail!("--auth none takes no secret");
    }
    Ok(CredentialInput {
        kind,
        username,
        secret,
    })
}

fn auth_policy(args: &AuthArgs) -> anyhow::Result<(AuthPolicy, Option<Secret>)> {
    let methods = args
        .methods
        .iter()
        .map(|m| match m.trim() {
            "api_key" | "api-key" => Ok(Method::ApiKey),
            "jwt" => Ok(Method::Jwt),
            other => bail!("unknown method {other:?} (api_key, jwt)"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let verify = match args.jwt_verify.as_str() {
        "local" => JwtVerify::Local,
        "wordpress" => JwtVerify::Wordpress,
        other => bail!("--jwt-verify must be local or wordpress, got {other:?}"),
    };
    let mut public_keys = Vec::new();
    for path in &args.jwt_public_key_file {
        public_keys.push(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        );
    }
    let mut claim_headers = std::collections::BTreeMap::new();
    for pair in &args.jwt_claim_header {
        let (claim, header) = pair
            .split_once('=')
            .context("--jwt-claim-header takes CLAIM=HEADER, e.g. sub=X-Auth-Subject")?;
        claim_headers.insert(claim.trim().to_string(), header.trim().to_string());
    }
    let act_as = match (args.jwt_act_as, verify) {
        (Some(ActAsArg::Site), _) if args.jwt_require_role.is_empty() => bail!(
            "--jwt-act-as site injects the site's credential for WordPress users: give \
             --jwt-require-role with the roles allowed to do that (e.g. administrator)"
        ),
        (Some(ActAsArg::Site), _) => Some(ActAs::Site),
        (Some(ActAsArg::User), _) => Some(ActAs::User),
        // Stored explicitly, so `site show` says it.
        (None, JwtVerify::Wordpress) => Some(ActAs::User),
        (None, JwtVerify::Local) => None,
    };
    let jwt = methods.contains(&Method::Jwt).then(|| JwtPolicy {
        verify,
        algorithms: args.jwt_alg.clone(),
        jwks_url: args.jwt_jwks_url.clone(),
        public_keys,
        issuer: args.jwt_issuer.clone(),
        audiences: args.jwt_audience.clone(),
        leeway: args.jwt_leeway,
        max_lifetime: args.jwt_max_lifetime,
        claim_headers,
        act_as,
        require_roles: args
            .jwt_require_role
            .iter()
            .map(|r| r.trim().to_string())
            .collect(),
    });
    let secret = if args.jwt_secret_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the JWT secret from standard input")?;
        let text = zeroize::Zeroizing::new(text);
        let trimmed = text.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            bail!("--jwt-secret-stdin: standard input was empty");
        }
        Some(Secret::from_string(trimmed.to_string()))
    } else {
        None
    };
    Ok((AuthPolicy { methods, jwt }, secret))
}

fn auth_text(s: &SiteRecord) -> String {
    match AuthPolicy::from_json(s.auth_policy.as_deref()) {
        Ok(p) => {
            let mut parts: Vec<String> = p
                .methods
                .iter()
                .map(|m| match m {
                    Method::ApiKey => "api_key".to_string(),
                    Method::Jwt => "jwt".to_string(),
                })
                .collect();
            if let Some(j) = &p.jwt {
                match j.verify {
                    JwtVerify::Wordpress => {
                        parts.push("verified by WordPress".into());
                        parts.push(match j.act_as.unwrap_or_default() {
                            ActAs::User => "acting as the user".into(),
                            ActAs::Site => "acting as the site".into(),
                        });
                        if !j.require_roles.is_empty() {
                            parts.push(format!("roles {}", j.require_roles.join(",")));
                        }
                    }
                    JwtVerify::Local => {
                        parts.push(format!("algorithms {}", j.algorithms.join(",")))
                    }
                }
            }
            parts.join(", ")
        }
        Err(e) => format!("invalid: {e}"),
    }
}

/// The site as the admin API shows it (never a secret).
fn site_json(s: &SiteRecord) -> Value {
    serde_json::to_value(SiteView::from(s)).unwrap_or(Value::Null)
}

fn routes_text(s: &SiteRecord) -> String {
    if s.allowed_paths.is_empty() {
        "REST API only".to_string()
    } else {
        format!("REST API and {}", s.allowed_paths.join(", "))
    }
}

fn cors_text(s: &SiteRecord) -> String {
    if s.allowed_origins.is_empty() {
        "no browser origin".to_string()
    } else {
        s.allowed_origins.join(", ")
    }
}

fn credential_text(s: &SiteRecord) -> String {
    match (s.credential.kind, &s.credential.username) {
        (CredentialKind::AppPassword, Some(u)) => format!("app_password (user {u})"),
        (CredentialKind::Header, Some(h)) => format!("header ({h})"),
        (kind, _) => kind.as_str().to_string(),
    }
}

fn print_site(s: &SiteRecord, json: bool) {
    if json {
        println!("{}", site_json(s));
    } else {
        println!("id:         {}", s.id);
        println!("name:       {}", s.name);
        println!("upstream:   {}", s.upstream_url);
        println!("enabled:    {}", s.enabled);
        println!("credential: {}", credential_text(s));
        println!("auth:       {}", auth_text(s));
        println!("routes:     {}", routes_text(s));
        println!("cors:       {}", cors_text(s));
        println!("created:    {}", crate::time::rfc3339(s.created_at));
        println!("updated:    {}", crate::time::rfc3339(s.updated_at));
        println!("version:    {}", s.version);
    }
}

/// The `checked_by` of checks the CLI runs.
const CLI_CHECKER: &str = "cli";

fn print_health(id: &SiteId, report: Option<HealthReport>, json: bool) {
    let view = HealthView::new(id, report);
    if json {
        println!("{}", serde_json::to_value(&view).unwrap_or(Value::Null));
        return;
    }
    println!("site:     {}", view.site_id);
    println!("state:    {}", view.state);
    println!("message:  {}", view.message);
    if let Some(at) = &view.checked_at {
        println!(
            "checked:  {at} by {} in {} ms",
            view.checked_by.as_deref().unwrap_or("?"),
            view.duration_ms
        );
        println!("failures: {} in a row", view.consecutive_failures);
    }
}

pub(super) async fn run(
    fleet: &Fleet,
    config: &Config,
    cmd: &SiteCommand,
    json: bool,
) -> anyhow::Result<()> {
    let actor = actor();
    match cmd {
        SiteCommand::Import {
            file,
            dry_run,
            format,
        } => return super::onboard::import(fleet, file, *format, *dry_run, json).await,
        SiteCommand::Export { format } => return super::onboard::export(fleet, *format).await,
        SiteCommand::ImportEnv {
            id,
            name,
            secret_stdin,
            dry_run,
        } => {
            return super::onboard::import_env(
                fleet,
                id,
                name.clone(),
                *secret_stdin,
                *dry_run,
                json,
            )
            .await
        }
        SiteCommand::Add {
            id,
            upstream,
            name,
            credential,
        } => {
            let credential = credential_input(credential, None)?;
            let added = fleet
                .add_site(
                    NewSite {
                        id: id.clone(),
                        name: name.clone(),
                        upstream_url: upstream.clone(),
                        credential,
                    },
                    &actor,
                )
                .await
                .map_err(explain)?;
            for w in &added.warnings {
                eprintln!("warning: {w}");
            }
            let record = added.record;
            if json {
                println!("{}", site_json(&record));
            } else {
                println!(
                    "site {} added: {} with {}",
                    record.id,
                    record.upstream_url,
                    credential_text(&record)
                );
            }
        }
        SiteCommand::List {
            after,
            limit,
            search,
            state,
        } => {
            let filter = crate::store::SiteFilter {
                text: search.clone().filter(|t| !t.trim().is_empty()),
                state: state.map(|s| s.as_str().to_string()),
            };
            let sites = fleet
                .store()
                .find_sites(after.as_deref(), *limit, &filter)
                .await?;
            if json {
                println!("{}", Value::Array(sites.iter().map(site_json).collect()));
            } else {
                print_table(
                    [
                        ("ID", 24),
                        ("ENABLED", 8),
                        ("CREDENTIAL", 28),
                        ("UPSTREAM", 0),
                    ],
                    sites.iter().map(|s| {
                        [
                            s.id.clone(),
                            s.enabled.to_string(),
                            credential_text(s),
                            s.upstream_url.clone(),
                        ]
                    }),
                );
            }
        }
        SiteCommand::Update {
            id,
            name,
            upstream,
            credential,
        } => {
            let current = fleet.site(id).await.map_err(explain)?;
            let credential = if credential.given() {
                Some(credential_input(credential, Some(&current))?)
            } else {
                None
            };
            let changes = SiteChanges {
                name: name.clone(),
                upstream_url: upstream.clone(),
                enabled: None,
                credential,
            };
            let fields = changes.fields().join(", ");
            let s = fleet
                .change_site(current, changes, &actor)
                .await
                .map_err(explain)?;
            report(
                json,
                site_json(&s),
                format!(
                    "site {id} updated ({fields}): {} with {}",
                    s.upstream_url,
                    credential_text(&s)
                ),
            );
        }
        SiteCommand::Show { id } => print_site(&fleet.site(id).await.map_err(explain)?, json),
        SiteCommand::Rm { id } => {
            fleet.remove_site(id, &actor).await.map_err(explain)?;
            report(
                json,
                json!({"id": id, "deleted": true}),
                format!("site {id} deleted"),
            );
        }
        SiteCommand::Enable { id } | SiteCommand::Disable { id } => {
            let enable = matches!(cmd, SiteCommand::Enable { .. });
            let s = fleet
                .set_enabled(id, enable, &actor)
                .await
                .map_err(explain)?;
            let word = if enable { "enabled" } else { "disabled" };
            report(json, site_json(&s), format!("site {id} {word}"));
        }
        SiteCommand::Health { id } => {
            fleet.site(id).await.map_err(explain)?;
            let ledger = Ledger::new(fleet.shared_store(), CLI_CHECKER);
            let current = ledger.current(id.as_str()).await?;
            print_health(id, current.map(|s| s.report), json);
        }
        SiteCommand::Test { id } => {
            let timeout = config.boot.health.timeout;
            let client = crate::health::client(config.boot.upstream_ca_file.as_deref(), timeout)?;
            let ledger = Ledger::new(fleet.shared_store(), CLI_CHECKER);
            let stored = check_now(fleet, &ledger, &client, timeout, id.as_str())
                .await
                .map_err(explain)?
                .ok_or_else(|| explain(StoreError::NotFound(format!("site {id}")).into()))?;
            let state = stored.report.state;
            print_health(id, Some(stored.report), json);
            if state != crate::health::HealthState::Healthy {
                bail!("site {id} is {}", state.as_str());
            }
        }
        SiteCommand::SetHealth {
            id,
            require_namespace,
            fail_fast,
        } => {
            let s = fleet
                .set_health(id, require_namespace.clone(), *fail_fast, &actor)
                .await
                .map_err(explain)?;
            report(
                json,
                site_json(&s),
                format!(
                    "site {id}: required namespaces [{}], fail fast {}",
                    s.required_namespaces.join(", "),
                    s.health_fail_fast
                ),
            );
        }
        SiteCommand::SetRoutes {
            id,
            allow_path,
            reset: _,
        } => {
            // `--reset` conflicts with `--allow-path`: without paths, it is the reset.
            let routes = RouteAllow::new(allow_path.clone())?;
            let s = fleet
                .set_routes(id, &routes, &actor)
                .await
                .map_err(explain)?;
            report(
                json,
                site_json(&s),
                format!("site {id}: routes {}", routes_text(&s)),
            );
        }
        SiteCommand::SetCors {
            id,
            allow_origin,
            reset: _,
        } => {
            // `--reset` conflicts with `--allow-origin`: without origins, it is the reset.
            let cors = CorsAllow::new(allow_origin.clone())?;
            let s = fleet.set_cors(id, &cors, &actor).await.map_err(explain)?;
            report(
                json,
                site_json(&s),
                format!("site {id}: cors {}", cors_text(&s)),
            );
        }
        SiteCommand::SetAuth { id, auth } => {
            let (policy, secret) = auth_policy(auth)?;
            let s = fleet
                .set_auth_policy(id, &policy, secret, &actor)
                .await
                .map_err(explain)?;
            report(
                json,
                site_json(&s),
                format!("site {id}: auth policy set ({})", auth_text(&s)),
            );
        }
        SiteCommand::SetCredential {
            id,
            credential,
            confirm,
        } => {
            let current = fleet.site(id).await.map_err(explain)?;
            let input = credential_input(credential, Some(&current))?;
            if *confirm {
                let timeout = config.boot.health.timeout;
                let client =
                    crate::health::client(config.boot.upstream_ca_file.as_deref(), timeout)?;
                let (s, checked) = fleet
                    .set_credential_confirmed(
                        id,
                        &input,
                        &crate::health::targets::CredentialProbe { client, timeout },
                        &actor,
                    )
                    .await
                    .map_err(explain)?;
                report(
                    json,
                    site_json(&s),
                    format!(
                        "site {id}: new credential confirmed ({}) and set ({}); the old one is no longer used",
                        checked.message,
                        credential_text(&s)
                    ),
                );
            } else {
                let s = fleet
                    .set_credential(id, &input, &actor)
                    .await
                    .map_err(explain)?;
                report(
                    json,
                    site_json(&s),
                    format!("site {id}: credential set ({})", credential_text(&s)),
                );
            }
        }
    }
    Ok(())
}

/// A `--state` value: a health state's name.
fn health_state(name: &str) -> Result<crate::health::HealthState, String> {
    crate::health::HealthState::parse(name).ok_or_else(|| {
        let names: Vec<&str> = crate::health::HealthState::ALL
            .iter()
            .map(|s| s.as_str())
            .collect();
        format!("not a health state; one of {}", names.join(", "))
    })
}
