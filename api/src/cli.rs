//! The `keyledger` command line: `serve`, `orgs`, `keys`, `audit`, `projections rebuild`,
//! `migrate`.

mod audit;
mod keys;
mod orgs;
mod serve;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use commands::keys::{CommandContext, KeyService};
use domain::ids::{KeyId, OrgId};
use domain::plan::Plan;
use domain::token::Environment;
use domain::values::OrgName;
use indicatif::{ProgressBar, ProgressStyle};
use projections::keys::KeyQueries;
use projections::{Projector, rebuild as rebuild_projection};
use tracing_subscriber::EnvFilter;

use crate::config::{ServeConfig, StoreConfig};
use crate::wiring::{Stores, open_stores, projections};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "keyledger",
    version,
    about = "An event-sourced API key service"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node.
    #[command(
        long_about = "Run a node: the HTTP API on KEYLEDGER_LISTEN over the stores of \
KEYLEDGER_DATABASE_URL. On an empty event store it first creates the organisation \
\"default\" and a root key holding every scope, prints both once, and prints the next step \
(the console URL and a curl to try the key).",
        after_help = "Example:\n  KEYLEDGER_DATABASE_URL=sqlite://keyledger.db keyledger serve"
    )]
    Serve(ServeConfig),
    /// Create or upgrade the schemas of the event store and the read models.
    #[command(
        long_about = "Create or upgrade the schemas of the event store and the read models, \
then exit. `serve` does this too at start-up.",
        after_help = "Example:\n  KEYLEDGER_DATABASE_URL=postgres://keyledger@localhost/keyledger keyledger migrate"
    )]
    Migrate(StoreConfig),
    /// Manage organisations.
    #[command(after_help = "Example:\n  keyledger orgs list")]
    Orgs {
        #[command(subcommand)]
        command: OrgsCommand,
    },
    /// Create, rotate, inspect and revoke keys.
    #[command(
        after_help = "Example:\n  keyledger keys create ORG_ID --name \"SAP ERP\" --scopes work-orders:read,assets:read"
    )]
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Replay a key's history (its state after each event, or at a moment), export an
    /// organisation's events, verify the hash chains.
    #[command(
        after_help = "Examples:\n  keyledger audit KEY_ID --at 2025-03-01T09:00:00Z\n  keyledger audit export --org ORG_ID --output events.ndjson\n  keyledger audit verify"
    )]
    Audit(audit::AuditArgs),
    /// Manage read models.
    #[command(after_help = "Example:\n  keyledger projections rebuild key_list")]
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum OrgsCommand {
    /// Create an organisation and its root key (holding every scope; shown once).
    #[command(
        long_about = "Create an organisation and its root key, which holds every scope. The \
root key's secret is printed once; with --json as {\"org_id\": ..., \"root_key\": ...}.",
        after_help = "Example:\n  keyledger orgs create --name Acme --plan professional --json"
    )]
    Create {
        /// Its name.
        #[arg(long)]
        name: String,
        /// starter, professional or enterprise.
        #[arg(long)]
        plan: Plan,
        /// The root key's environment: live or test.
        #[arg(long, default_value = "live")]
        environment: Environment,
        /// Print `{"org_id": ..., "root_key": ...}`.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        stores: StoreConfig,
    },
    /// List the organisations: id, plan, active keys, name.
    #[command(
        long_about = "List every organisation, oldest first: its id, plan, number of active \
keys (neither revoked nor expired) and name. Reads the read models, brought up to date \
first; no server needs to be running.",
        after_help = "Examples:\n  keyledger orgs list\n  keyledger orgs list --json"
    )]
    List {
        /// Print a JSON array of {id, name, plan, created_at, version, integrity, active_keys}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        stores: StoreConfig,
    },
    /// Change an organisation's plan.
    #[command(
        long_about = "Change an organisation's plan: starter (no key creation), professional \
(10 active keys, 100 requests per minute per key) or enterprise (no key limit, 500 per \
minute per key).",
        after_help = "Example:\n  keyledger orgs set-plan ORG_ID enterprise"
    )]
    SetPlan {
        /// The organisation's id.
        org: OrgId,
        /// starter, professional or enterprise.
        plan: Plan,
        #[command(flatten)]
        stores: StoreConfig,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key and print its secret once (the way back in when the root key is lost).
    #[command(
        long_about = "Create a key in an organisation and print its secret once. It goes \
through the same checks as POST /organizations/{org}/api-keys, as the operator (actor \
cli:$USER), so it needs no other key: the way back in when every key that may create keys \
is lost. Use --all-scopes for a new root key.",
        after_help = "Examples:\n  keyledger keys create ORG_ID --name \"SAP ERP\" --scopes work-orders:read,assets:read\n  keyledger keys create ORG_ID --name \"new root\" --all-scopes --json"
    )]
    Create(keys::CreateArgs),
    /// Rotate a key: a new secret now, the old one works for a grace period.
    #[command(
        long_about = "Rotate a key: create its successor (same name, scopes, networks, \
environment, rate limit and expiry) and print the new secret once. The old key keeps \
working for --grace-period-seconds (default 3600), then stops.",
        after_help = "Example:\n  keyledger keys rotate KEY_ID --grace-period-seconds 600"
    )]
    Rotate(keys::RotateArgs),
    /// List an organisation's keys (never a secret), with when each was last used.
    #[command(
        long_about = "List an organisation's keys, newest first: id, prefix, status, when it \
was created, when it was LAST USED (\"never\" before its first call) and its name. Never a \
secret or a hash.",
        after_help = "Examples:\n  keyledger keys list ORG_ID\n  keyledger keys list ORG_ID --status active --json"
    )]
    List {
        /// The organisation's id.
        org: OrgId,
        /// active, revoked or expired.
        #[arg(long)]
        status: Option<domain::apikey::KeyStatus>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        stores: StoreConfig,
    },
    /// Show one key.
    #[command(
        long_about = "Show one key as JSON: its settings, status, integrity and usage \
counters (never its secret or hash).",
        after_help = "Example:\n  keyledger keys show KEY_ID"
    )]
    Show {
        /// The key's id.
        key: KeyId,
        #[command(flatten)]
        stores: StoreConfig,
    },
    /// Revoke a key (idempotent).
    #[command(
        long_about = "Revoke a key, for good. Every node refuses it within moments (the \
revocation bus). Revoking a revoked key changes nothing and succeeds.",
        after_help = "Example:\n  keyledger keys revoke KEY_ID --reason \"leaked in a log\""
    )]
    Revoke {
        /// The key's id.
        key: KeyId,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        stores: StoreConfig,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectionsCommand {
    /// Replay the whole event store into one read model (or all) from position 0.
    #[command(
        long_about = "Replay the whole event store into one read model (or all of them) from \
position 0, with a progress bar.",
        after_help = "Examples:\n  keyledger projections rebuild\n  keyledger projections rebuild key_list"
    )]
    Rebuild {
        /// The projection to rebuild; all when omitted.
        name: Option<String>,
        #[command(flatten)]
        stores: StoreConfig,
    },
}

/// The binary's entry point: parses the command line, runs it, and turns an error into
/// one line on stderr and a failing exit code.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            if let Some(var) = variable_of(&e) {
                // One line naming the variable first: most values come from the
                // environment, and clap names only the flag.
                let text = e.to_string();
                eprint!(
                    "{}",
                    text.replacen("error: ", &format!("error: {var}: "), 1)
                );
                return ExitCode::from(2);
            }
            e.exit()
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One clear line: the context names the variable, the cause says why.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(cfg) => serve::serve(cfg).await,
        Command::Migrate(stores) => {
            open_stores(&stores).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Orgs { command } => orgs(command).await,
        Command::Keys { command } => keys(command).await,
        Command::Audit(args) => audit::run(args).await,
        Command::Projections {
            command: ProjectionsCommand::Rebuild { name, stores },
        } => rebuild(&stores, name.as_deref()).await,
    }
}

/// The environment variable behind the flag a clap error is about (`--listen` is
/// `KEYLEDGER_LISTEN`), for invalid values of flags that have one.
fn variable_of(e: &clap::Error) -> Option<String> {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let flag = arg.strip_prefix("--")?.split([' ', '=']).next()?;
    fn find(cmd: &clap::Command, flag: &str) -> Option<String> {
        cmd.get_arguments()
            .find(|a| a.get_long() == Some(flag))
            .and_then(|a| a.get_env())
            .map(|v| v.to_string_lossy().into_owned())
            .or_else(|| cmd.get_subcommands().find_map(|c| find(c, flag)))
    }
    find(&Cli::command(), flag)
}

/// The actor recorded for CLI commands: `cli:<user>`.
fn cli_context() -> CommandContext {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    CommandContext {
        actor: format!("cli:{user}"),
        request_id: Some(uuid::Uuid::now_v7().to_string()),
        correlation_id: None,
    }
}

async fn orgs(command: OrgsCommand) -> anyhow::Result<()> {
    match command {
        OrgsCommand::Create {
            name,
            plan,
            environment,
            json,
            stores,
        } => {
            let name = OrgName::parse(&name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            let opened = open_stores(&stores).await?;
            let keys = KeyService::new(opened.events.clone());
            let (org, root) = keys
                .create_organization(&cli_context(), name, plan, environment)
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "org_id": org.id.to_string(),
                        "root_key": root.token.expose_secret(),
                        "root_key_id": root.key.id.to_string(),
                        "plan": plan,
                    })
                );
            } else {
                println!("organization: {} ({})", org.id, org.name.as_str());
                println!("root key (shown once): {}", root.token.expose_secret());
            }
            Ok(())
        }
        OrgsCommand::List { json, stores } => orgs::list(&stores, json).await,
        OrgsCommand::SetPlan { org, plan, stores } => {
            let opened = open_stores(&stores).await?;
            let keys = KeyService::new(opened.events.clone());
            keys.change_plan(&cli_context(), org, plan).await?;
            println!("{org}: plan is now {plan}");
            Ok(())
        }
    }
}

/// Brings every read model up to the store's head (no server needs to be running).
async fn catch_up(opened: &Stores) -> anyhow::Result<()> {
    let head = opened.events.head_position().await?;
    for projection in projections() {
        let handle =
            Projector::new(opened.read_db.clone(), opened.events.clone(), projection).spawn();
        if !handle.wait_for(head, Duration::from_secs(60)).await {
            anyhow::bail!(
                "read model {} did not catch up with the store",
                handle.name()
            );
        }
    }
    Ok(())
}

async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create(args) => keys::create(args).await,
        KeysCommand::Rotate(args) => keys::rotate(args).await,
        KeysCommand::List {
            org,
            status,
            json,
            stores,
        } => {
            let opened = open_stores(&stores).await?;
            catch_up(&opened).await?;
            let queries = KeyQueries::new(opened.read_db.clone());
            let mut cursor: Option<String> = None;
            let mut all = Vec::new();
            loop {
                let page = queries
                    .list(org, status, 100, cursor.as_deref(), chrono::Utc::now())
                    .await?;
                all.extend(page.items);
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                keys::print_table(&all);
            }
            Ok(())
        }
        KeysCommand::Show { key, stores } => {
            let opened = open_stores(&stores).await?;
            catch_up(&opened).await?;
            let service = KeyService::new(opened.events.clone());
            let state = service
                .load_key(key)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no key {key}"))?;
            let row = KeyQueries::new(opened.read_db.clone())
                .get(state.org_id, key, chrono::Utc::now())
                .await?
                .ok_or_else(|| anyhow::anyhow!("key {key} is not in the read model yet"))?;
            println!("{}", serde_json::to_string_pretty(&row)?);
            Ok(())
        }
        KeysCommand::Revoke {
            key,
            reason,
            stores,
        } => {
            let opened = open_stores(&stores).await?;
            let service = KeyService::new(opened.events.clone());
            let state = service
                .load_key(key)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no key {key}"))?;
            service
                .revoke(&cli_context(), state.org_id, key, reason)
                .await?;
            println!("{key}: revoked");
            Ok(())
        }
    }
}

/// `keyledger projections rebuild [NAME]`: replays from position 0 with a progress bar.
pub async fn rebuild(stores: &StoreConfig, name: Option<&str>) -> anyhow::Result<()> {
    let opened = open_stores(stores).await?;
    let all = projections();
    let selected: Vec<_> = match name {
        None => all,
        Some(n) => {
            let known: Vec<&str> = all.iter().map(|p| p.name()).collect();
            let chosen: Vec<_> = all.into_iter().filter(|p| p.name() == n).collect();
            if chosen.is_empty() {
                anyhow::bail!("unknown projection {n:?}; known: {}", known.join(", "));
            }
            chosen
        }
    };
    for projection in selected {
        let name = projection.name();
        let projector = Projector::new(opened.read_db.clone(), opened.events.clone(), projection);
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>12} [{bar:40}] {pos}/{len} events ({per_sec}, {eta})",
            )?
            .progress_chars("=> "),
        );
        bar.set_prefix(name);
        let last = rebuild_projection(&projector, |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })
        .await?;
        bar.finish();
        println!("{name}: rebuilt up to position {last}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_command_explains_itself_with_an_example() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in cmd.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                let example = sub
                    .get_after_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                if sub.get_about().is_none() || !example.contains("keyledger ") {
                    missing.push(path.clone());
                }
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "keyledger", &mut missing);
        // clap's own `help` subcommands explain themselves.
        missing.retain(|p| !p.ends_with(" help"));
        assert!(missing.is_empty(), "no description or example: {missing:?}");
    }
}
