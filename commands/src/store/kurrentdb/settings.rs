//! Connection settings and error text: parsing a URL, naming the nodes, keeping the
//! password out of every message, and explaining the client's errors.

use ::kurrentdb::ClientSettings;
use domain::store::StoreError;

use super::is_kurrentdb_url;

/// Installs ring as the process's rustls crypto provider. The `kurrentdb` crate enables
/// both of rustls' back ends (ring through reqwest, aws-lc-rs through tonic), and with
/// two compiled in rustls cannot choose one itself: building a TLS client config would
/// panic. Installing twice (or after someone else) is harmless, so the result is ignored.
pub(super) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Parses a connection string; an error names what is wrong without the password.
pub(super) fn parse_settings(url: &str) -> Result<ClientSettings, StoreError> {
    if !is_kurrentdb_url(url) {
        return Err(StoreError::Unavailable(format!(
            "not a KurrentDB URL: {}; expected one of {}",
            redact(url),
            "esdb://, esdb+discover://, kurrentdb:// or kurrentdb+discover://"
        )));
    }
    url.parse::<ClientSettings>().map_err(|e| {
        // The client's message may quote the whole URL: only say what kind of error it is,
        // and scrub the password from whatever is left.
        let reason = match e.error() {
            Some(parse) => format!("not a valid URL ({parse})"),
            None => e.message().to_owned(),
        };
        StoreError::Unavailable(scrub(
            &format!("invalid KurrentDB URL {}: {reason}", redact(url)),
            url,
        ))
    })
}

/// `host:port` of every configured node, comma-separated (with `discover ` first when
/// the nodes are found by DNS / gossip).
pub(super) fn describe_target(settings: &ClientSettings) -> String {
    let hosts: Vec<String> = settings
        .hosts()
        .iter()
        .map(|e| format!("{}:{}", e.host, e.port))
        .collect();
    let hosts = hosts.join(",");
    if settings.is_dns_discovery_enabled() {
        format!("discover {hosts}")
    } else {
        hosts
    }
}

/// The URL with its password replaced by `***`.
pub(super) fn redact(url: &str) -> String {
    match password_of(url) {
        Some(password) => url.replacen(&format!(":{password}@"), ":***@", 1),
        None => url.to_owned(),
    }
}

/// `text` with every occurrence of `url`'s password replaced by `***`.
pub(super) fn scrub(text: &str, url: &str) -> String {
    match password_of(url) {
        Some(password) => text.replace(password, "***"),
        None => text.to_owned(),
    }
}

fn password_of(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let userinfo = &authority[..authority.rfind('@')?];
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// What went wrong, for people: a few client errors get a hint.
pub(super) fn describe_error(error: &::kurrentdb::Error) -> String {
    use ::kurrentdb::Error as E;
    match error {
        E::AccessDenied => "access denied: the user needs to read $all and write keyledger's \
                            streams (e.g. a member of $admins or $ops)"
            .into(),
        E::DeadlineExceeded => "the server did not answer in time (deadline exceeded)".into(),
        E::NotLeaderException(leader) => {
            format!(
                "not the leader (the leader is {}:{})",
                leader.host, leader.port
            )
        }
        E::GrpcConnectionError(inner) => format!(
            "cannot connect (is the node up, and do the URL's TLS settings match it? \
             `?tls=false` for an insecure node): {inner}"
        ),
        E::UnsupportedFeature => "the server does not support this operation (EventStoreDB \
                                  22.6 or later, or KurrentDB, is needed)"
            .into(),
        other => other.to_string(),
    }
}

/// Whether a failed subscription may be retried (a disconnect, a leader change, a
/// timeout), as opposed to errors that the next attempt would meet again.
pub(super) fn is_transient(error: &::kurrentdb::Error) -> bool {
    use ::kurrentdb::Error as E;
    !matches!(
        error,
        E::AccessDenied
            | E::UnsupportedFeature
            | E::InitializationError(_)
            | E::InternalParsingError(_)
            | E::InternalClientError
            | E::IllegalStateError(_)
            | E::ResourceDeleted
    )
}

pub(super) fn is_missing_stream(error: &::kurrentdb::Error) -> bool {
    matches!(
        error,
        ::kurrentdb::Error::ResourceNotFound | ::kurrentdb::Error::ResourceDeleted
    )
}
