//! The `keyledger` command line: `serve`, `migrate`, `projections rebuild`, ...

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use projections::{Projector, rebuild as rebuild_projection};
use tracing_subscriber::EnvFilter;

use crate::config::StoreConfig;
use crate::wiring::{open_stores, projections};

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

use crate::app::{App, AppState, app};
use crate::config::ServeConfig;

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
    Serve(ServeConfig),
    /// Create or upgrade the schemas of the event store and the read models.
    Migrate(StoreConfig),
    /// Manage read models.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectionsCommand {
    /// Replay the whole event store into one read model (or all) from position 0.
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
    let cli = Cli::parse();
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
        Command::Serve(cfg) => serve(cfg).await,
        Command::Migrate(stores) => {
            open_stores(&stores).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Projections {
            command: ProjectionsCommand::Rebuild { name, stores },
        } => rebuild(&stores, name.as_deref()).await,
    }
}

async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    let stores = open_stores(&cfg.stores).await?;
    let state = AppState(Arc::new(App {
        store: stores.events,
        read_db: stores.read_db,
    }));
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("KEYLEDGER_LISTEN: cannot listen on {}: {e}", cfg.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, "keyledger listening");
    // Tests and scripts read this line to find a port chosen by the OS (`:0`).
    println!("listening on http://{local}");
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
