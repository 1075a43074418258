//! Configuration: environment variables with a `KEYLEDGER_` prefix, the same as CLI flags.

use std::net::SocketAddr;

use clap::Args;
use ipnet::IpNet;

/// Settings shared by every command that touches the stores.
#[derive(Debug, Clone, Args)]
pub struct StoreConfig {
    /// Read models (and, unless `--eventstore-url` is given, events): `sqlite://FILE` or
    /// `postgres://...`.
    #[arg(
        long,
        env = "KEYLEDGER_DATABASE_URL",
        default_value = "sqlite://keyledger.db"
    )]
    pub database_url: String,

    /// The event store, if it is not the database: `sqlite://FILE` or `postgres://...`.
    #[arg(long, env = "KEYLEDGER_EVENTSTORE_URL")]
    pub eventstore_url: Option<String>,
}

impl StoreConfig {
    /// The event store's URL (the database unless set apart).
    pub fn eventstore_url(&self) -> &str {
        self.eventstore_url.as_deref().unwrap_or(&self.database_url)
    }
}

/// `keyledger serve` settings.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// The address to listen on.
    #[arg(long, env = "KEYLEDGER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// The stores.
    #[command(flatten)]
    pub stores: StoreConfig,

    /// NATS for the revocation bus; unset: the in-process bus (one node).
    #[arg(long, env = "KEYLEDGER_NATS_URL")]
    pub nats_url: Option<String>,

    /// The first tokens of the bus's NATS subjects (`<prefix>.keys.changed`); nodes of one
    /// cluster must share it.
    #[arg(
        long,
        env = "KEYLEDGER_NATS_SUBJECT_PREFIX",
        default_value = "keyledger"
    )]
    pub nats_subject_prefix: String,

    /// Which keys this server accepts: `live` or `test`.
    #[arg(long, env = "KEYLEDGER_ENVIRONMENT", default_value = "live", value_parser = ["live", "test"])]
    pub environment: String,

    /// CIDRs of proxies whose `X-Forwarded-For` is believed (comma-separated).
    #[arg(long, env = "KEYLEDGER_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_cidr)]
    pub trusted_proxies: Vec<IpNet>,

    /// The longest a node trusts a cached key state without re-reading the store while
    /// the revocation bus is down (s): the bound on how late a change takes effect when
    /// no notice can reach this node.
    #[arg(long, env = "KEYLEDGER_CACHE_TTL_SECONDS", default_value_t = 30)]
    pub cache_ttl_seconds: u64,

    /// The longest a node trusts a cached key state while the revocation bus is
    /// connected (s); never less than `KEYLEDGER_CACHE_TTL_SECONDS`.
    #[arg(
        long,
        env = "KEYLEDGER_CACHE_HEALTHY_TTL_SECONDS",
        default_value_t = 300
    )]
    pub cache_healthy_ttl_seconds: u64,

    /// The most usage events appended in one transaction (group commit).
    #[arg(long, env = "KEYLEDGER_USAGE_BATCH_SIZE", default_value_t = 256)]
    pub usage_batch_size: usize,

    /// The longest a usage event waits for its batch to fill, in milliseconds.
    #[arg(long, env = "KEYLEDGER_USAGE_MAX_DELAY_MS", default_value_t = 2)]
    pub usage_max_delay_ms: u64,

    /// `durable`: a response waits until its usage event is committed; `async`: it does
    /// not (faster; a crash may lose the last batch).
    #[arg(
        long,
        env = "KEYLEDGER_USAGE_DURABILITY",
        value_enum,
        default_value = "durable"
    )]
    pub usage_durability: crate::usage::Durability,

    /// argon2 verifications of not-yet-proven tokens at once; 0: half the cores (at least
    /// one).
    #[arg(long, env = "KEYLEDGER_ARGON2_CONCURRENCY", default_value_t = 0)]
    pub argon2_concurrency: usize,

    /// Wrong tokens per key id per minute before a node stops checking that id's unproven
    /// tokens until the minute ends (429 `too_many_failed_attempts`).
    #[arg(long, env = "KEYLEDGER_AUTH_FAILURE_BUDGET", default_value_t = 20)]
    pub auth_failure_budget: u32,

    /// A TOML file of route rules for `GET /v1/gateway/auth` (`[[route]] method, path,
    /// scope`); without it every gateway call is refused (403 `no_route_rule`).
    #[arg(long, env = "KEYLEDGER_GATEWAY_ROUTES")]
    pub gateway_routes: Option<std::path::PathBuf>,

    /// Do not create the `default` organisation and root key on an empty store.
    #[arg(long, env = "KEYLEDGER_NO_BOOTSTRAP")]
    pub no_bootstrap: bool,
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR (e.g. 10.0.0.0/8) or IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_accept_cidrs_and_bare_addresses_as_trusted_proxies() {
        assert_eq!(parse_cidr("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr(" ::1 ").unwrap().to_string(), "::1/128");
        assert!(parse_cidr("nope").is_err());
    }
}
