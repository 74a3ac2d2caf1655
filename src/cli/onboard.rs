//! `wpgate site import | export | import-env`: many sites at once from an onboarding
//! file (JSON lines or CSV), the fleet out in the same format (never a secret), and one
//! site from a one-site set-up's environment variables.

use super::{actor, explain, report};
use crate::admin::views::SiteView;
use crate::fleet::onboard::{legacy_env, rows, Format, ImportOptions, ImportReport, SecretRefs};
use crate::fleet::{Fleet, NewSite};
use crate::secret::Secret;
use crate::site::SiteId;
use anyhow::{bail, Context};
use clap::ValueEnum;
use serde_json::json;
use std::io::Read;
use std::path::Path;

/// An onboarding file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// One JSON object per line.
    Jsonl,
    /// A header row, then one site per record.
    Csv,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Jsonl => Format::JsonLines,
            FormatArg::Csv => Format::Csv,
        }
    }
}

fn read_stdin(what: &str) -> anyhow::Result<zeroize::Zeroizing<String>> {
    let mut text = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {what} from standard input"))?;
    Ok(text)
}

/// `site import FILE|-`: checks the whole file, then creates and updates what differs
/// in one transaction (or, with `--dry-run`, says what it would do).
pub(super) async fn import(
    fleet: &Fleet,
    file: &str,
    format: Option<FormatArg>,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<()> {
    let text = if file == "-" {
        read_stdin("the file")?
    } else {
        zeroize::Zeroizing::new(
            std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?,
        )
    };
    let format = match format {
        Some(f) => f.into(),
        None => Format::of_path(Path::new(file)).unwrap_or_else(|| Format::detect(&text)),
    };
    let options = ImportOptions {
        format,
        refs: SecretRefs::Resolve,
        dry_run,
    };
    let done = fleet.import_sites(&text, options, &actor()).await?;
    print_report(&done, json);
    Ok(())
}

fn print_report(r: &ImportReport, json: bool) {
    if json {
        println!("{}", serde_json::to_value(r).unwrap_or_default());
        return;
    }
    let (create, update) = if r.dry_run {
        ("would create", "would update")
    } else {
        ("created", "updated")
    };
    for s in &r.created {
        println!("{create} {} (line {})", s.id, s.line);
    }
    for s in &r.updated {
        println!(
            "{update} {} (line {}): {}",
            s.id,
            s.line,
            s.fields.join(", ")
        );
    }
    if r.dry_run {
        for s in &r.unchanged {
            println!("unchanged {} (line {})", s.id, s.line);
        }
    }
    let total = r.created.len() + r.updated.len() + r.unchanged.len();
    let (created, updated, note) = if r.dry_run {
        ("to create", "to update", " (dry run: nothing written)")
    } else {
        ("created", "updated", "")
    };
    println!(
        "{total} site{}: {} {created}, {} {updated}, {} unchanged{note}",
        if total == 1 { "" } else { "s" },
        r.created.len(),
        r.updated.len(),
        r.unchanged.len(),
    );
}

/// `site export`: every site, never a secret, in the format `site import` reads.
pub(super) async fn export(fleet: &Fleet, format: FormatArg) -> anyhow::Result<()> {
    let sites = fleet.export_sites().await.map_err(explain)?;
    let text = rows::write(&sites, format.into()).map_err(anyhow::Error::msg)?;
    print!("{text}");
    Ok(())
}

/// `site import-env ID`: the site of a one-site set-up, from its environment (or the
/// secret on standard input), through the same audited write as `site add`.
pub(super) async fn import_env(
    fleet: &Fleet,
    id: &SiteId,
    name: Option<String>,
    secret_stdin: bool,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<()> {
    let stdin_secret = if secret_stdin {
        let text = read_stdin("the secret")?;
        let trimmed = text.trim();
        if trimmed.is_empty() {
            bail!("import_env.empty_variable: --secret-stdin: standard input was empty");
        }
        Some(Secret::from_string(trimmed.to_string()))
    } else {
        None
    };
    let found = legacy_env::read(|k| std::env::var(k).ok(), stdin_secret)?;
    let derived = match found.removed_suffix {
        Some(suffix) => format!("{suffix} removed from {}", legacy_env::API_URL),
        None => format!("{} taken as the site's base URL", legacy_env::API_URL),
    };
    let summary = found.credential_summary();
    let mut sources = found.sources.join(", ");
    if !found.ignored.is_empty() {
        sources.push_str(&format!("; not used: {}", found.ignored.join(", ")));
    }
    let site = if dry_run {
        None
    } else {
        let added = fleet
            .add_site(
                NewSite {
                    id: id.clone(),
                    name,
                    upstream_url: found.upstream.clone(),
                    credential: found.credential.clone(),
                },
                &actor(),
            )
            .await
            .map_err(explain)?;
        for w in &added.warnings {
            eprintln!("warning: {w}");
        }
        Some(added.record)
    };
    let credential = &found.credential;
    let value = json!({
        "id": id,
        "upstream": found.upstream,
        "derived": derived,
        "credential": {
            "kind": credential.kind.as_str(),
            "username": credential.username,
            "secret_chars": credential.secret.as_ref().and_then(Secret::expose_str).map(|s| s.chars().count()),
            "from": found.sources,
        },
        "dry_run": dry_run,
        "site": site.as_ref().map(SiteView::from),
    });
    let mut text = format!(
        "upstream:   {} ({derived})\ncredential: {summary} (from {sources})",
        found.upstream
    );
    match &site {
        Some(s) => text.push_str(&format!("\nsite {} added", s.id)),
        None => text.push_str(&format!("\ndry run: site {id} not added")),
    }
    report(json, value, text);
    Ok(())
}
