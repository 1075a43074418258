//! The operator's key commands: `keys create` (the way back in when every key with
//! `api-keys:create` is lost), `keys rotate`, and the `keys list` table.
//!
//! Both commands go through [`KeyService`], the command layer the HTTP API uses, as the
//! operator ([`Actor::Operator`], actor `cli:<user>` in the events): the same checks, the
//! same events. The secret is printed once, to stdout, and never logged.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::Args;
use commands::keys::{CreatedKey, KeyService, NewKey};
use domain::ids::{KeyId, OrgId};
use domain::policy::Actor;
use domain::scope::{Scope, Scopes};
use domain::token::Environment;
use domain::values::{AllowedIps, Cidr, GracePeriod, KeyName, RateLimit};
use projections::KeyRow;

use super::cli_context;
use crate::config::StoreConfig;
use crate::wiring::open_stores;

/// `keyledger keys create ORG --name NAME --scopes a,b ...`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The organisation's id (see `keyledger orgs list`).
    org: OrgId,
    /// The key's name: 1 to 100 characters, no control characters.
    #[arg(long)]
    name: String,
    /// Comma-separated scopes, e.g. work-orders:read,assets:read (see the README's scope
    /// table; api-keys:create lets the key create others).
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "all_scopes",
        conflicts_with = "all_scopes"
    )]
    scopes: Vec<String>,
    /// Every scope, management ones included: a new root key.
    #[arg(long)]
    all_scopes: bool,
    /// live or test.
    #[arg(long, default_value = "live")]
    environment: Environment,
    /// Comma-separated IPv4/IPv6 addresses or CIDRs it may be used from; anywhere when
    /// omitted.
    #[arg(long, value_delimiter = ',')]
    allowed_ips: Vec<String>,
    /// When it stops working (RFC 3339, in the future), e.g. 2027-01-01T00:00:00Z.
    #[arg(long)]
    expires_at: Option<String>,
    /// Its own rate limit (1 to 1,000,000 per minute), instead of the plan's.
    #[arg(long)]
    rate_limit_per_minute: Option<u64>,
    /// Print the key as the API's 201 does (`id`, `secret`, `scopes`, ...).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    stores: StoreConfig,
}

/// `keyledger keys rotate KEY [--grace-period-seconds N]`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The key's id.
    key: KeyId,
    /// How long the old key keeps working: 0 to 2592000 (30 days).
    #[arg(long, default_value_t = GracePeriod::DEFAULT.seconds())]
    grace_period_seconds: i64,
    /// Print the new key as the API's 201 does (`id`, `secret`, `rotated_from`, ...).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    stores: StoreConfig,
}

/// The command line's key, checked as the API checks a `POST .../api-keys` body; an
/// error names the flag.
fn new_key(args: &CreateArgs, now: DateTime<Utc>, custom: &[String]) -> anyhow::Result<NewKey> {
    let name = KeyName::parse(&args.name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    let scopes = if args.all_scopes {
        Scope::all()
    } else {
        let mut scopes = Scopes::new();
        for raw in &args.scopes {
            // Built-in scopes, and the organisation's custom ones (known once it is loaded).
            let raw = raw.trim();
            let scope = Scope::lookup(raw).ok_or_else(|| {
                anyhow::anyhow!(
                    "--scopes: unknown scope {raw:?}; known scopes: {}",
                    known_scopes(custom)
                )
            })?;
            scopes.insert(scope);
        }
        if scopes.is_empty() {
            anyhow::bail!(
                "--scopes: name at least one scope; known scopes: {}",
                known_scopes(custom)
            );
        }
        scopes
    };
    for entry in &args.allowed_ips {
        Cidr::parse(entry).map_err(|e| anyhow::anyhow!("--allowed-ips: {entry:?}: {e}"))?;
    }
    let allowed_ips = AllowedIps::parse(args.allowed_ips.iter())
        .map_err(|e| anyhow::anyhow!("--allowed-ips: {e}"))?;
    let expires_at = match &args.expires_at {
        None => None,
        Some(raw) => {
            let at = DateTime::parse_from_rfc3339(raw)
                .map_err(|e| {
                    anyhow::anyhow!("--expires-at: {raw:?} is not an RFC 3339 time ({e}), e.g. 2027-01-01T00:00:00Z")
                })?
                .with_timezone(&Utc);
            if at <= now {
                anyhow::bail!("--expires-at: must be in the future");
            }
            Some(at)
        }
    };
    let rate_limit_per_minute = args
        .rate_limit_per_minute
        .map(RateLimit::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--rate-limit-per-minute: {e}"))?;
    Ok(NewKey {
        name,
        scopes: Some(scopes),
        environment: args.environment,
        allowed_ips,
        expires_at,
        rate_limit_per_minute,
    })
}

/// The built-in scopes and the organisation's custom ones.
fn known_scopes(custom: &[String]) -> String {
    Scope::all()
        .names()
        .into_iter()
        .map(str::to_owned)
        .chain(custom.iter().cloned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `keys create`: checks the flags, then creates the key through the command layer.
pub async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let opened = open_stores(&args.stores).await?;
    let service = KeyService::new(opened.events.clone());
    // Loading the organisation makes its custom scopes known to `--scopes`; a missing
    // organisation is reported by the create itself.
    let custom: Vec<String> = match service.load_org(args.org).await {
        Ok(Some(org)) => org
            .custom_scopes
            .keys()
            .map(|s| s.as_str().to_owned())
            .collect(),
        _ => Vec::new(),
    };
    let new = new_key(&args, Utc::now(), &custom)?;
    let created = service
        .create_key(&cli_context(), args.org, &Actor::Operator, new)
        .await
        .with_context(|| format!("cannot create a key in organization {}", args.org))?;
    print_created(&created, args.json, "key")
}

/// `keys rotate`: a successor with the same settings; the old key works for the grace
/// period.
pub async fn rotate(args: RotateArgs) -> anyhow::Result<()> {
    let grace = GracePeriod::from_seconds(args.grace_period_seconds).map_err(|_| {
        anyhow::anyhow!(
            "--grace-period-seconds: must be 0 to {} (30 days)",
            GracePeriod::MAX.num_seconds()
        )
    })?;
    let opened = open_stores(&args.stores).await?;
    let service = KeyService::new(opened.events.clone());
    let old = service
        .load_key(args.key)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no key {}", args.key))?;
    let created = service
        .rotate(
            &cli_context(),
            old.org_id,
            args.key,
            &Actor::Operator,
            grace.as_delta(),
        )
        .await
        .with_context(|| format!("cannot rotate key {}", args.key))?;
    if !args.json {
        println!(
            "{}: rotated; it keeps working for {} s (until {})",
            args.key,
            grace.seconds(),
            (Utc::now() + grace.as_delta()).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    print_created(&created, args.json, "new key")
}

/// The new key: JSON shaped as the API's `CreatedKeyResponse`, or lines for a person.
/// The one place the secret is shown.
fn print_created(created: &CreatedKey, json: bool, what: &str) -> anyhow::Result<()> {
    let key = &created.key;
    let scopes = key.scopes.names();
    if json {
        let body = serde_json::json!({
            "id": key.id.to_string(),
            "org_id": key.org_id.to_string(),
            "name": key.name.as_str(),
            "prefix": key.prefix,
            "secret": created.token.expose_secret(),
            "scopes": scopes,
            "environment": key.environment.as_str(),
            "allowed_ips": key.allowed_ips.to_strings(),
            "status": key.status(Utc::now()).to_string(),
            "created_at": key.created_at,
            "expires_at": key.expires_at,
            "rate_limit_per_minute": key.rate_limit_per_minute.map(RateLimit::per_minute),
            "rotated_from": key.rotated_from.map(|k| k.to_string()),
            "version": key.version,
        });
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        println!(
            "{what}: {} ({}) in organization {}",
            key.id,
            key.name.as_str(),
            key.org_id
        );
        println!("scopes: {}", scopes.join(","));
        println!(
            "secret (shown once, store it now): {}",
            created.token.expose_secret()
        );
    }
    Ok(())
}

/// The `keys list` table: one row per key, `never` when a key has made no call.
pub fn print_table(rows: &[KeyRow]) {
    // The prefix column fits today's prefixes (older keys' are shorter); stored times are
    // RFC 3339 with microseconds (27 characters).
    let w = domain::token::PREFIX_LEN;
    println!(
        "{:<36}  {:<w$}  {:<8}  {:<27}  {:<27}  NAME",
        "ID", "PREFIX", "STATUS", "CREATED", "LAST USED"
    );
    for k in rows {
        println!(
            "{:<36}  {:<w$}  {:<8}  {:<27}  {:<27}  {}",
            k.id,
            k.prefix,
            k.status,
            k.created_at,
            k.usage.last_used_at.as_deref().unwrap_or("never"),
            k.name
        );
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        args: CreateArgs,
    }

    fn parse(extra: &[&str]) -> CreateArgs {
        let mut argv = vec![
            "keys-create",
            "00000000-0000-7000-8000-000000000001",
            "--name",
            "ERP",
        ];
        argv.extend_from_slice(extra);
        Wrap::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn comma_separated_scopes_become_the_keys_scopes() {
        let new = new_key(
            &parse(&["--scopes", "work-orders:read,assets:read"]),
            Utc::now(),
            &[],
        )
        .unwrap();
        let mut names = new.scopes.unwrap().names();
        names.sort_unstable();
        assert_eq!(names, ["assets:read", "work-orders:read"]);
        assert_eq!(new.environment, Environment::Live);
        assert!(new.allowed_ips.is_empty());
    }

    #[test]
    fn an_unknown_scope_is_refused_naming_the_flag_and_the_scope() {
        let err = new_key(
            &parse(&["--scopes", "work-orders:read,bogus"]),
            Utc::now(),
            &[],
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("--scopes: unknown scope \"bogus\""),
            "{text}"
        );
        assert!(
            text.contains("assets:read"),
            "the catalogue is listed: {text}"
        );
    }

    #[test]
    fn all_scopes_grants_the_management_scopes_too() {
        let new = new_key(&parse(&["--all-scopes"]), Utc::now(), &[]).unwrap();
        assert_eq!(new.scopes.unwrap(), Scope::all());
    }

    #[test]
    fn bad_networks_expiries_rate_limits_and_names_name_their_flag() {
        let now = Utc::now();
        for (extra, flag) in [
            (vec!["--allowed-ips", "10.0.0.0/8,nope"], "--allowed-ips"),
            (vec!["--expires-at", "tomorrow"], "--expires-at"),
            (vec!["--expires-at", "2000-01-01T00:00:00Z"], "--expires-at"),
            (
                vec!["--rate-limit-per-minute", "0"],
                "--rate-limit-per-minute",
            ),
        ] {
            let mut argv = vec!["--scopes", "assets:read"];
            argv.extend(extra);
            let err = new_key(&parse(&argv), now, &[]).unwrap_err();
            assert!(err.to_string().starts_with(flag), "{flag}: {err}");
        }
        let mut args = parse(&["--scopes", "assets:read"]);
        args.name = "  ".into();
        assert!(
            new_key(&args, now, &[])
                .unwrap_err()
                .to_string()
                .starts_with("--name")
        );
    }

    #[test]
    fn scopes_are_required_unless_every_scope_is_asked_for() {
        let argv = ["x", "00000000-0000-7000-8000-000000000001", "--name", "ERP"];
        assert!(Wrap::try_parse_from(argv).is_err());
    }
}
