//! The command line: `wpgate serve | check | site ... | key ...`. Every command works on
//! the same store as a running gateway.

use crate::admin::token::AdminTokens;
use crate::admin::views::{AdminTokenView, KeyView, SiteView};
use crate::auth::policy::{AuthPolicy, JwtPolicy, JwtVerify, Method};
use crate::config::{Config, LoadOptions};
use crate::crypto::Keyring;
use crate::fleet::{Actor, CredentialInput, Fleet, FleetError, NewSite};
use crate::secret::Secret;
use crate::site::CredentialKind;
use crate::store::{AdminScope, ApiKeyRecord, SiteRecord, StoreError};
use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "wpgate",
    version,
    about = "Authentication gateway for fleets of WordPress sites"
)]
pub struct Cli {
    /// Configuration file (default: config/wpgate.toml if it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (store and keyring); overrides the configuration.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Graceful binary upgrade: take over the listening sockets of the running gateway
    /// (same data directory) once it is sent SIGQUIT; no connection is refused.
    #[arg(long)]
    pub upgrade: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Validate the configuration (and the keyring, if present) and exit.
    Check,
    /// Manage sites.
    #[command(subcommand)]
    Site(SiteCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage the admin API.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Rotate the master keys that seal every secret in the store.
    #[command(subcommand)]
    Keyring(KeyringCommand),
    /// Work on whole stores (copy one into another).
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeyringCommand {
    /// Keys, the primary, and how many stored records each key still seals.
    Status,
    /// Add a new random key to the keyring file (then reload the gateways).
    Add {
        /// Make the new key the primary (new secrets are sealed with it).
        #[arg(long)]
        primary: bool,
    },
    /// Make an existing key the primary.
    SetPrimary { key_id: String },
    /// Re-seal every stored record with the primary key, batch by batch (each batch one
    /// transaction). Safe while gateways serve; run it again to resume.
    Rewrap {
        /// Records per batch.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10000))]
        batch: u32,
    },
    /// Remove a key from the keyring file; refused while any record is sealed with it.
    Retire { key_id: String },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Admin API tokens (`Authorization: Bearer wpgat_...` on /admin/v1).
    #[command(subcommand)]
    Token(AdminTokenCommand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    /// GET requests only.
    Read,
    /// Everything.
    Write,
}

#[derive(Debug, Subcommand)]
pub enum AdminTokenCommand {
    /// Create a token; prints the whole token once, alone on one line.
    Create {
        #[arg(long, value_enum)]
        scope: ScopeArg,
        /// Names the token in the audit log (`admin:<label>`): [A-Za-z0-9._@:-]{1,64}.
        #[arg(long)]
        label: Option<String>,
    },
    /// List tokens (never a secret or hash).
    List,
    /// Revoke a token. A running gateway may accept it for up to a minute more.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// Register a WordPress site.
    Add {
        id: String,
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
    },
    /// Show one site (never its secret).
    Show { id: String },
    /// Delete a site and its API keys.
    Rm { id: String },
    /// Let requests through to a site again.
    Enable { id: String },
    /// Refuse requests to a site (403 site.disabled).
    Disable { id: String },
    /// Replace a site's upstream credential.
    SetCredential {
        id: String,
        #[command(flatten)]
        credential: CredentialArgs,
        /// Check the new credential against the site first (users/me must accept it)
        /// and store it only if the check passes; otherwise keep the old one.
        #[arg(long)]
        confirm: bool,
    },
    /// Set a site's health settings (replaces them): REST namespaces it must offer, and
    /// whether proxy requests fail fast (503 site.unavailable) while it is unreachable.
    SetHealth {
        id: String,
        /// A REST namespace the site must offer, e.g. myplugin/v1 (repeatable).
        #[arg(long)]
        require_namespace: Vec<String>,
        /// Answer 503 at once while the health check finds the site unreachable.
        #[arg(long)]
        fail_fast: bool,
    },
    /// Set how clients authenticate to a site (replaces its whole auth policy).
    SetAuth {
        id: String,
        #[command(flatten)]
        auth: AuthArgs,
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

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Issue an API key for a site; prints the whole key once, alone on one line.
    Issue {
        site_id: String,
        #[arg(long)]
        label: Option<String>,
        /// Lifetime, e.g. 30d, 12h.
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<Duration>,
    },
    /// List a site's keys (never the secret).
    List { site_id: String },
    /// Revoke a key, optionally keeping it valid for a grace period (e.g. 1h).
    Revoke {
        key_id: String,
        #[arg(long, value_parser = parse_duration)]
        grace: Option<Duration>,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30d, 12h, 90s)"))
}

fn actor() -> Actor {
    Actor::new(format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    ))
}

pub fn load_options(cli: &Cli) -> LoadOptions {
    LoadOptions {
        config_file: cli.config.clone(),
        data_dir: cli.data_dir.clone(),
    }
}

pub fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    Ok(Config::load(&load_options(cli))?)
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config = load_config(&cli)?;
    crate::serve::init_logging(&config);
    match &cli.command {
        Command::Serve(args) => crate::serve::run(config, load_options(&cli), args),
        Command::Check => check(&config, cli.json),
        Command::Site(cmd) => block_on(site(&config, cmd, cli.json)),
        Command::Key(cmd) => block_on(key(&config, cmd, cli.json)),
        Command::Admin(AdminCommand::Token(cmd)) => block_on(admin_token(&config, cmd, cli.json)),
        Command::Keyring(cmd) => block_on(keyring(&config, cmd, cli.json)),
        Command::Store(cmd) => block_on(store(cmd, cli.json)),
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?
        .block_on(f)
}

fn check(config: &Config, json: bool) -> anyhow::Result<()> {
    let keyring = match std::env::var("WPGATE_KEYRING") {
        Ok(text) => {
            let k = Keyring::parse(&text, "from WPGATE_KEYRING")?;
            format!(
                "WPGATE_KEYRING ({} keys, primary {})",
                k.key_ids().count(),
                k.primary_id()
            )
        }
        Err(_) if config.keyring_file.exists() => {
            let k = Keyring::load_file(&config.keyring_file)?;
            format!(
                "{} ({} keys, primary {})",
                config.keyring_file.display(),
                k.key_ids().count(),
                k.primary_id()
            )
        }
        Err(_) => format!(
            "{} (does not exist yet: generated on first start)",
            config.keyring_file.display()
        ),
    };
    let source = config
        .source_file
        .as_ref()
        .map_or("built-in defaults and environment".to_string(), |p| {
            p.display().to_string()
        });
    if json {
        println!(
            "{}",
            json!({"ok": true, "config": source, "keyring": keyring, "listen_proxy": config.listen_proxy.to_string()})
        );
    } else {
        println!("configuration OK: {source}");
        println!("  proxy listens on {}", config.listen_proxy);
        println!("  keyring: {keyring}");
    }
    Ok(())
}

async fn open_fleet(config: &Config) -> anyhow::Result<Fleet> {
    let (fleet, source) = Fleet::open(config)
        .await
        .context("cannot open the store and keyring")?;
    crate::serve::log_keyring_source(&source);
    Ok(fleet)
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
                    JwtVerify::Wordpress => parts.push("verified by WordPress".into()),
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
        println!("created:    {}", crate::time::rfc3339(s.created_at));
        println!("updated:    {}", crate::time::rfc3339(s.updated_at));
        println!("version:    {}", s.version);
    }
}

async fn site(config: &Config, cmd: &SiteCommand, json: bool) -> anyhow::Result<()> {
    let fleet = open_fleet(config).await?;
    let actor = actor();
    match cmd {
        SiteCommand::Add {
            id,
            upstream,
            name,
            credential,
        } => {
            let credential = credential_input(credential, None)?;
            let record = fleet
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
        SiteCommand::List { after, limit } => {
            let sites = fleet.store().list_sites(after.as_deref(), *limit).await?;
            if json {
                println!("{}", Value::Array(sites.iter().map(site_json).collect()));
            } else {
                println!(
                    "{:<24} {:<8} {:<28} UPSTREAM",
                    "ID", "ENABLED", "CREDENTIAL"
                );
                for s in &sites {
                    println!(
                        "{:<24} {:<8} {:<28} {}",
                        s.id,
                        s.enabled,
                        credential_text(s),
                        s.upstream_url
                    );
                }
            }
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
                let timeout = config.health.timeout;
                let client = crate::health::client(config.upstream.ca_file.as_deref(), timeout)?;
                let (s, checked) = fleet
                    .set_credential_confirmed(id, &input, &client, timeout, &actor)
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

fn report(json: bool, value: Value, text: String) {
    if json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

fn key_json(k: &ApiKeyRecord) -> Value {
    serde_json::to_value(KeyView::from(k)).unwrap_or(Value::Null)
}

async fn key(config: &Config, cmd: &KeyCommand, json: bool) -> anyhow::Result<()> {
    let fleet = open_fleet(config).await?;
    let actor = actor();
    match cmd {
        KeyCommand::Issue {
            site_id,
            label,
            expires_in,
        } => {
            let (record, key) = fleet
                .issue_key(site_id, label.clone(), *expires_in, &actor)
                .await
                .map_err(explain)?;
            let text = key.expose_str().unwrap_or_default();
            if json {
                let mut v = key_json(&record);
                v["key"] = json!(text);
                println!("{v}");
            } else {
                println!("{text}");
            }
            eprintln!(
                "key {} issued for site {site_id}: it is shown only this once",
                record.key_id
            );
        }
        KeyCommand::List { site_id } => {
            fleet.site(site_id).await.map_err(explain)?;
            let keys = fleet.store().list_api_keys(site_id).await?;
            if json {
                println!("{}", Value::Array(keys.iter().map(key_json).collect()));
            } else {
                println!(
                    "{:<14} {:<20} {:<22} {:<22} {:<22} GRACE UNTIL",
                    "KEY ID", "LABEL", "CREATED", "EXPIRES", "REVOKED"
                );
                for k in &keys {
                    let t = |v: Option<i64>| v.map_or("-".to_string(), crate::time::rfc3339);
                    println!(
                        "{:<14} {:<20} {:<22} {:<22} {:<22} {}",
                        k.key_id,
                        k.label.as_deref().unwrap_or("-"),
                        crate::time::rfc3339(k.created_at),
                        t(k.expires_at),
                        t(k.revoked_at),
                        t(k.grace_until)
                    );
                }
            }
        }
        KeyCommand::Revoke { key_id, grace } => {
            if !crate::auth::api_key::is_key_id(key_id) {
                bail!("{key_id:?} is not a key id (12 characters, the part after wpg_)");
            }
            let k = fleet
                .revoke_key(key_id, *grace, &actor)
                .await
                .map_err(explain)?;
            let until = k.grace_until.map(crate::time::rfc3339).unwrap_or_default();
            report(
                json,
                key_json(&k),
                format!("key {key_id} revoked; accepted until {until}"),
            );
        }
    }
    Ok(())
}

async fn admin_token(config: &Config, cmd: &AdminTokenCommand, json: bool) -> anyhow::Result<()> {
    let fleet = open_fleet(config).await?;
    let store = fleet.store();
    let tokens = AdminTokens::new();
    let actor = actor();
    match cmd {
        AdminTokenCommand::Create { scope, label } => {
            let scope = match scope {
                ScopeArg::Read => AdminScope::Read,
                ScopeArg::Write => AdminScope::Write,
            };
            let (record, token) = tokens.create(store, scope, label.clone(), &actor).await?;
            println!("{}", token.expose_str().unwrap_or_default());
            eprintln!(
                "admin token {} ({}) created: it is shown only this once",
                record.id,
                scope.as_str()
            );
        }
        AdminTokenCommand::List => {
            let all = store.list_admin_tokens().await?;
            if json {
                let views: Vec<AdminTokenView> = all.iter().map(AdminTokenView::from).collect();
                println!("{}", serde_json::to_value(views)?);
            } else {
                println!(
                    "{:<14} {:<6} {:<24} {:<22} {:<22} LAST USED",
                    "ID", "SCOPE", "LABEL", "CREATED", "REVOKED"
                );
                let t = |v: Option<i64>| v.map_or("-".to_string(), crate::time::rfc3339);
                for r in &all {
                    println!(
                        "{:<14} {:<6} {:<24} {:<22} {:<22} {}",
                        r.id,
                        r.scope.as_str(),
                        r.label.as_deref().unwrap_or("-"),
                        crate::time::rfc3339(r.created_at),
                        t(r.revoked_at),
                        t(r.last_used_at)
                    );
                }
            }
        }
        AdminTokenCommand::Revoke { id } => {
            if !crate::admin::token::is_token_id(id) {
                bail!("{id:?} is not a token id (12 characters, the part after wpgat_)");
            }
            let r = tokens
                .revoke(store, id, &actor)
                .await
                .map_err(|e| match e {
                    crate::admin::token::TokenError::Store(StoreError::NotFound(what)) => {
                        anyhow::anyhow!("{what} does not exist")
                    }
                    other => anyhow::Error::new(other),
                })?;
            report(
                json,
                serde_json::to_value(AdminTokenView::from(&r))?,
                format!("admin token {id} revoked"),
            );
        }
    }
    Ok(())
}

/// Replaces the keyring file (private mode, atomically) with an edited text.
fn write_keyring(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    crate::crypto::replace_private_file(path, text)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The keyring file the CLI edits; a keyring given in `WPGATE_KEYRING` is the
/// operator's secret store's to change, not ours.
fn keyring_file(
    config: &Config,
) -> anyhow::Result<(std::path::PathBuf, zeroize::Zeroizing<String>)> {
    if std::env::var_os("WPGATE_KEYRING").is_some() {
        anyhow::bail!(
            "the keyring comes from WPGATE_KEYRING: change it where that variable is kept \
             (wpgate keyring edits only a keyring file)"
        );
    }
    let path = config.keyring_file.clone();
    // Loading checks the permissions and the content.
    Keyring::load_file(&path)?;
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?,
    );
    Ok((path, text))
}

async fn keyring(config: &Config, cmd: &KeyringCommand, json: bool) -> anyhow::Result<()> {
    let env_text = std::env::var("WPGATE_KEYRING").ok();
    let current = || -> anyhow::Result<Keyring> {
        Ok(match &env_text {
            Some(text) => Keyring::parse(text, "from WPGATE_KEYRING")?,
            None => Keyring::load_file(&config.keyring_file)?,
        })
    };
    let store = crate::store::open(&config.store)
        .await
        .context("cannot open the store")?;
    let origin = format!("file {}", config.keyring_file.display());
    match cmd {
        KeyringCommand::Status => {
            let keyring = current()?;
            let counts = store.sealed_key_counts().await?;
            let view = crate::admin::ops::keyring_view(&keyring, &counts);
            if json {
                println!("{}", serde_json::to_value(&view)?);
            } else {
                for k in &view.keys {
                    println!(
                        "{}{}  seals {} record(s)",
                        k.id,
                        if k.primary { " (primary)" } else { "" },
                        k.sealed_records
                    );
                }
                for k in &view.missing {
                    println!(
                        "{}  MISSING from the keyring: seals {} record(s) that cannot be opened",
                        k.id, k.sealed_records
                    );
                }
            }
            if !view.missing.is_empty() {
                anyhow::bail!("the keyring lacks keys that stored records use");
            }
        }
        KeyringCommand::Add { primary } => {
            let (path, text) = keyring_file(config)?;
            let (new_text, id) = crate::crypto::edit::add_key(&text, &origin, *primary)?;
            write_keyring(&path, &new_text)?;
            report(
                json,
                json!({"key_id": id, "primary": primary}),
                format!(
                    "added key {id}{} to {}; reload the gateways (SIGHUP or POST /admin/v1/reload){}",
                    if *primary { " as primary" } else { "" },
                    path.display(),
                    if *primary { ", then run `wpgate keyring rewrap`" } else { "" }
                ),
            );
        }
        KeyringCommand::SetPrimary { key_id } => {
            let (path, text) = keyring_file(config)?;
            let new_text = crate::crypto::edit::set_primary(&text, &origin, key_id)?;
            write_keyring(&path, &new_text)?;
            report(
                json,
                json!({"primary": key_id}),
                format!(
                    "key {key_id} is now the primary in {}; reload the gateways",
                    path.display()
                ),
            );
        }
        KeyringCommand::Rewrap { batch } => {
            let keyring = current()?;
            let progress =
                crate::rotation::rewrap(store.as_ref(), &keyring, *batch, &actor(), |p| {
                    if !json {
                        println!("rewrapped {}/{} (batch {})", p.resealed, p.total, p.batches);
                    }
                })
                .await
                .map_err(explain)?;
            report(
                json,
                serde_json::to_value(progress)?,
                format!(
                    "done: every stored record is sealed with {} ({} re-sealed)",
                    keyring.primary_id(),
                    progress.resealed
                ),
            );
        }
        KeyringCommand::Retire { key_id } => {
            let (path, text) = keyring_file(config)?;
            let counts = store.sealed_key_counts().await?;
            if let Some((_, n)) = counts.iter().find(|(k, n)| k == key_id && *n > 0) {
                anyhow::bail!(
                    "key {key_id} still seals {n} stored record(s): run `wpgate keyring rewrap` \
                     with another primary first"
                );
            }
            let new_text = crate::crypto::edit::remove_key(&text, &origin, key_id)?;
            write_keyring(&path, &new_text)?;
            report(
                json,
                json!({"retired": key_id}),
                format!(
                    "retired key {key_id} from {}; reload the gateways",
                    path.display()
                ),
            );
        }
    }
    Ok(())
}

/// Turns a fleet error into a message for the operator.
fn explain(e: FleetError) -> anyhow::Error {
    match e {
        FleetError::Store(StoreError::NotFound(what)) => anyhow::anyhow!("{what} does not exist"),
        other => anyhow::Error::new(other),
    }
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy a whole store (sites, API keys, admin tokens, settings, audit log) into an
    /// empty one, e.g. sqlite://./data/wpgate.db to postgres://gw@db/wpgate.
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The store to copy: sqlite://PATH or postgres://... (or $WPGATE_MIGRATE_FROM,
    /// which keeps a password off the command line).
    #[arg(
        long,
        value_name = "URL",
        env = "WPGATE_MIGRATE_FROM",
        hide_env_values = true
    )]
    pub from: UrlArg,
    /// The empty store to copy into (created and migrated if needed), or
    /// $WPGATE_MIGRATE_TO.
    #[arg(
        long,
        value_name = "URL",
        env = "WPGATE_MIGRATE_TO",
        hide_env_values = true
    )]
    pub to: UrlArg,
    /// Records per batch (one transaction each).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
}

/// A store URL as given on the command line: `Debug` never shows it (it may hold a
/// password), and neither does a parse error.
#[derive(Clone)]
pub struct UrlArg(pub String);

impl std::str::FromStr for UrlArg {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(UrlArg(s.to_string()))
    }
}

impl std::fmt::Debug for UrlArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("UrlArg")
            .field(&crate::config::redact_url(&self.0))
            .finish()
    }
}

async fn store(cmd: &StoreCommand, json: bool) -> anyhow::Result<()> {
    use crate::config::StoreUrl;
    let StoreCommand::Migrate(args) = cmd;
    let parse_url = |flag: &str, raw: &str| {
        StoreUrl::parse(raw).map_err(|problem| {
            anyhow::anyhow!("{flag} {}: {problem}", crate::config::redact_url(raw))
        })
    };
    let from = parse_url("--from", &args.from.0)?;
    let to = parse_url("--to", &args.to.0)?;
    if from == to {
        bail!("--from and --to name the same store ({from})");
    }
    if let StoreUrl::Sqlite(path) = &from {
        // Opening would create an empty file: a typo must not "migrate" nothing.
        if !path.exists() {
            bail!("--from: {} does not exist", path.display());
        }
    }
    let source = crate::store::open(&from)
        .await
        .with_context(|| format!("cannot open the source store {from}"))?;
    let target = crate::store::open(&to)
        .await
        .with_context(|| format!("cannot open the target store {to}"))?;
    let options = crate::store::copy::CopyOptions {
        batch: args.batch,
        from: from.to_string(),
        to: to.to_string(),
    };
    let report = crate::store::copy::copy(source.as_ref(), target.as_ref(), &options).await?;
    if json {
        println!("{}", serde_json::to_value(&report)?);
    } else {
        println!(
            "copied {} from {} to {} in {} batches, {:.1}s",
            report.copied, report.from, report.to, report.batches, report.seconds
        );
    }
    Ok(())
}
