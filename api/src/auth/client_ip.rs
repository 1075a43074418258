//! Step 3 of the auth order ([`crate::auth`]): the client's IP, the peer address, or the first untrusted hop of `X-Forwarded-For`
//! when the peer is a trusted proxy (`KEYLEDGER_TRUSTED_PROXIES`).

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use ipnet::IpNet;

/// The client IP from a request's extensions (the peer address) and headers.
pub fn client_ip_of(
    extensions: &axum::http::Extensions,
    headers: &axum::http::HeaderMap,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())?;
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    Some(resolve(peer, &forwarded, trusted))
}

/// Walks `X-Forwarded-For` from the right while the hop is a trusted proxy; the first
/// untrusted address is the client. An unparsable entry stops the walk at the last
/// trusted hop, which is then taken as the client (fail closed for allowlists).
pub fn resolve(peer: IpAddr, forwarded: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer;
    if !is_trusted(&client) {
        return client;
    }
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn it_should_ignore_forwarded_for_from_an_untrusted_peer() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            resolve(ip("203.0.113.9"), &["1.2.3.4"], &trusted),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn it_should_believe_forwarded_for_from_a_trusted_proxy() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            resolve(ip("10.0.0.2"), &["1.2.3.4", "10.0.0.7"], &trusted),
            ip("1.2.3.4")
        );
    }

    #[test]
    fn it_should_not_let_a_client_spoof_past_the_first_untrusted_hop() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        // The client wrote "9.9.9.9" itself; the proxy appended the real client.
        assert_eq!(
            resolve(ip("10.0.0.2"), &["9.9.9.9", "198.51.100.1"], &trusted),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn it_should_use_the_peer_without_trusted_proxies() {
        assert_eq!(resolve(ip("::1"), &["1.2.3.4"], &[]), ip("::1"));
    }
}
