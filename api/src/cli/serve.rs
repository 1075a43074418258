//! `keyledger serve`: a node's start-up (stores, bootstrap, projectors, the bus and its
//! relay, the key cache, the usage writer, the router), then serving until a signal, then
//! draining the usage writer.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use commands::keys::KeyService;
use domain::token::Environment;
use projections::keys::KeyQueries;
use projections::{Feed, Projector};

use crate::app::{App, AppState};
use crate::auth::proof::ProofConfig;
use crate::auth::rate_limit::RateLimits;
use crate::auth::{Authenticator, CacheConfig};
use crate::bus::Bus;
use crate::bus::relay::RevocationRelay;
use crate::config::ServeConfig;
use crate::http::router::app;
use crate::usage::{RecorderConfig, UsageRecorder};
use crate::wiring::{open_stores, projections};

/// Runs a node until SIGINT or SIGTERM, then drains the usage writer.
pub(super) async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    let environment: Environment = cfg
        .environment
        .parse()
        .map_err(|_| anyhow::anyhow!("KEYLEDGER_ENVIRONMENT: must be live or test"))?;
    let stores = open_stores(&cfg.stores).await?;
    let keys = Arc::new(KeyService::new(stores.events.clone()));

    // The root key made by a first start, for the next step printed once listening.
    let root = if cfg.no_bootstrap {
        None
    } else {
        bootstrap(&keys, environment).await?
    };

    if cfg.cache_ttl_seconds == 0 {
        anyhow::bail!("KEYLEDGER_CACHE_TTL_SECONDS: must be at least 1");
    }
    let ttl = Duration::from_secs(cfg.cache_ttl_seconds);
    let bus = match &cfg.nats_url {
        None => Bus::in_process(),
        Some(url) => {
            if !crate::bus::valid_subject_prefix(&cfg.nats_subject_prefix) {
                anyhow::bail!(
                    "KEYLEDGER_NATS_SUBJECT_PREFIX: {:?} is not a NATS subject prefix (dot-separated letters, digits, - and _)",
                    cfg.nats_subject_prefix
                );
            }
            // A dead connection must be noticed well within the TTL: ping a few times per
            // TTL (NATS gives up on a connection after two unanswered pings).
            let ping = (ttl / 4).clamp(Duration::from_millis(500), Duration::from_secs(10));
            Bus::nats(url, &cfg.nats_subject_prefix, ping)
                .await
                .map_err(|e| anyhow::anyhow!("KEYLEDGER_NATS_URL: {e}"))?
        }
    };
    tracing::info!(bus = bus.kind(), "revocation bus");

    // Every projector runs on every node, but on Postgres only the node holding the
    // projection's advisory lock projects; the others follow its checkpoint. They share
    // one subscription: each event is read and decoded once per node, not once per
    // projector.
    let feed = Feed::new(stores.events.clone());
    let projectors = projections()
        .into_iter()
        .map(|p| Projector::with_feed(stores.read_db.clone(), feed.clone(), p).spawn())
        .collect();
    // The relay announces every key change from the store (the reliable path; commands
    // also announce their own changes at once).
    crate::bus::relay::start_at_head(&stores.read_db, stores.events.as_ref())
        .await
        .map_err(|e| {
            anyhow::anyhow!("KEYLEDGER_DATABASE_URL: cannot start the revocation relay: {e}")
        })?;
    let relay = Projector::with_feed(
        stores.read_db.clone(),
        feed,
        Arc::new(RevocationRelay::new(bus.port())),
    )
    .spawn();
    let gateway = match &cfg.gateway_routes {
        Some(path) => crate::routes::gateway::GatewayRules::load(path)?,
        None => crate::routes::gateway::GatewayRules::default(),
    };
    if cfg.gateway_routes.is_some() {
        tracing::info!(rules = gateway.len(), "gateway route rules loaded");
    }
    let limits = RateLimits::new();
    let auth = Authenticator::new(
        keys.clone(),
        environment,
        CacheConfig {
            capacity: 100_000,
            ttl,
            healthy_ttl: Duration::from_secs(cfg.cache_healthy_ttl_seconds).max(ttl),
        },
        {
            let machine = ProofConfig::default_for_machine();
            ProofConfig {
                concurrency: match cfg.argon2_concurrency {
                    0 => machine.concurrency,
                    n => n,
                },
                failure_budget: cfg.auth_failure_budget.max(1),
            }
        },
        limits.clone(),
        bus,
    );
    let listener_task = auth.listen();
    crate::http::metrics::install();
    let (usage, usage_task) = UsageRecorder::start(
        stores.events.clone(),
        RecorderConfig {
            batch_size: cfg.usage_batch_size.max(1),
            max_delay: Duration::from_millis(cfg.usage_max_delay_ms),
            durability: cfg.usage_durability,
        },
    );
    let state = AppState(Arc::new(App {
        store: stores.events,
        key_queries: KeyQueries::new(stores.read_db.clone()),
        read_db: stores.read_db,
        keys,
        auth,
        trusted_proxies: cfg.trusted_proxies.clone(),
        projectors,
        last_written: AtomicU64::new(0),
        limits,
        usage,
        gateway,
    }));
    let router = app(state)?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("KEYLEDGER_LISTEN: cannot listen on {}: {e}", cfg.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, environment = environment.as_str(), "keyledger listening");
    // Tests and scripts read this line to find a port chosen by the OS (`:0`).
    println!("listening on http://{local}");
    if let Some(root) = root {
        print!("{}", next_step(local, root.expose_secret()));
    }
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    // Every request is answered and the router (with its recorder handles) is gone: drain
    // the usage writer so that no accepted call goes unrecorded.
    if tokio::time::timeout(Duration::from_secs(30), usage_task.shutdown())
        .await
        .is_err()
    {
        tracing::error!("usage writer did not drain within 30 s");
    }
    listener_task.abort();
    relay.stop();
    tracing::info!("stopped");
    Ok(())
}

/// On an empty event store: the `default` organisation (enterprise) and a root key holding
/// every scope, printed once to stdout. Two nodes starting at once create one. Returns
/// the root key's token when this node created it.
async fn bootstrap(
    keys: &KeyService,
    environment: Environment,
) -> anyhow::Result<Option<domain::Token>> {
    match keys.bootstrap(environment).await {
        Ok(Some((org, root))) => {
            // Printed to stdout only, never logged: this is the one time it is shown.
            println!(
                "bootstrap: organization \"default\" (plan enterprise): {}",
                org.id
            );
            println!(
                "bootstrap: root key (shown once, store it now): {}",
                root.token.expose_secret()
            );
            tracing::info!(org_id = %org.id, key_prefix = %root.key.prefix, "bootstrapped the default organization");
            Ok(Some(root.token))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(anyhow::anyhow!("bootstrap failed: {e}")),
    }
}

/// What to do after a first start, printed once to stdout (never logged, it holds the
/// root key): the console's URL and a curl that works pasted into bash or zsh (the key and
/// the URL single-quoted). An unspecified listen address becomes the loopback one.
fn next_step(listening: std::net::SocketAddr, root_key: &str) -> String {
    let ip = match listening.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    let base = format!("http://{}", std::net::SocketAddr::new(ip, listening.port()));
    format!(
        "next step: open {base}/console and sign in with the root key, or try it:\n  \
         curl -sS -H 'Authorization: Bearer {root_key}' '{base}/whoami'\n"
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_step_names_the_console_and_a_quoted_curl_on_loopback() {
        let text = next_step("0.0.0.0:8080".parse().unwrap(), "kl_live_abc");
        assert!(text.contains("http://127.0.0.1:8080/console"), "{text}");
        assert!(
            text.contains(
                "curl -sS -H 'Authorization: Bearer kl_live_abc' 'http://127.0.0.1:8080/whoami'"
            ),
            "{text}"
        );
        let v6 = next_step("[::]:9000".parse().unwrap(), "k");
        assert!(v6.contains("'http://[::1]:9000/whoami'"), "{v6}");
        let bound = next_step("10.1.2.3:80".parse().unwrap(), "k");
        assert!(bound.contains("http://10.1.2.3:80/console"), "{bound}");
    }
}
