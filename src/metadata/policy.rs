//! Where a metadata fetch may connect: only `http`/`https` URLs, and only addresses outside
//! every special-purpose range unless the operator allowlisted that exact `ip:port`.
//!
//! The ranges are [`ipnet`] networks in tables, so adding one is one line and the reason a
//! user sees comes from the same row.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use url::{Host, Url};

use super::MetadataError;

/// Where one hop will connect, after every address was checked.
pub(super) enum Destination {
    /// The URL's host is an IP literal: reqwest connects to it without any resolver.
    Literal,
    /// The URL's host is a name; these are all the addresses it resolved to (with the port).
    Resolved {
        domain: String,
        addrs: Vec<SocketAddr>,
    },
}

/// Only absolute `http`/`https` URLs with a host are ever fetched.
pub(super) fn require_http_url(url: &Url) -> Result<(), MetadataError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(MetadataError::InvalidUrl(format!(
            "only http and https URLs can be fetched, not {}:",
            url.scheme()
        )));
    }
    if url.host().is_none() {
        return Err(MetadataError::InvalidUrl(format!("{url} has no host")));
    }
    Ok(())
}

fn port_of(url: &Url) -> Result<u16, MetadataError> {
    url.port_or_known_default()
        .ok_or_else(|| MetadataError::InvalidUrl(format!("{url} has no port")))
}

/// Checks where `url` would connect. A host name is resolved once and *every* address must
/// pass: the connector may try them in any order, so one bad record is enough for an
/// attacker. The caller pins the connection to exactly the returned addresses.
pub(super) async fn checked_destination(
    allowed: &[SocketAddr],
    url: &Url,
) -> Result<Destination, MetadataError> {
    let port = port_of(url)?;
    match url.host() {
        Some(Host::Ipv4(ip)) => {
            check_address(allowed, &ip.to_string(), SocketAddr::new(ip.into(), port))?;
            Ok(Destination::Literal)
        }
        Some(Host::Ipv6(ip)) => {
            check_address(allowed, &ip.to_string(), SocketAddr::new(ip.into(), port))?;
            Ok(Destination::Literal)
        }
        Some(Host::Domain(domain)) => {
            let addrs = resolve_host(domain, port).await?;
            for addr in &addrs {
                check_address(allowed, domain, *addr)?;
            }
            Ok(Destination::Resolved {
                domain: domain.to_owned(),
                addrs,
            })
        }
        None => Err(MetadataError::InvalidUrl(format!("{url} has no host"))),
    }
}

/// The rules applied to a URL that is stored now and fetched later (a webhook target): an
/// IP-literal host and every address a name resolves to within `within` must be allowed. A
/// name that does not resolve now passes — it is checked again at every fetch, and DNS
/// answers change anyway.
pub(super) async fn check_later_destination(
    allowed: &[SocketAddr],
    url: &Url,
    within: Duration,
) -> Result<(), MetadataError> {
    require_http_url(url)?;
    let port = port_of(url)?;
    match url.host() {
        Some(Host::Ipv4(ip)) => {
            check_address(allowed, &ip.to_string(), SocketAddr::new(ip.into(), port))
        }
        Some(Host::Ipv6(ip)) => {
            check_address(allowed, &ip.to_string(), SocketAddr::new(ip.into(), port))
        }
        Some(Host::Domain(domain)) => {
            match tokio::time::timeout(within, resolve_host(domain, port)).await {
                Ok(Ok(addrs)) => addrs
                    .iter()
                    .try_for_each(|a| check_address(allowed, domain, *a)),
                _ => Ok(()),
            }
        }
        None => Err(MetadataError::InvalidUrl(format!("{url} has no host"))),
    }
}

async fn resolve_host(domain: &str, port: u16) -> Result<Vec<SocketAddr>, MetadataError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((domain, port))
        .await
        .map_err(|error| {
            MetadataError::Network(format!("could not resolve host {domain}: {error}"))
        })?
        .collect();
    if addrs.is_empty() {
        return Err(MetadataError::Network(format!(
            "host {domain} did not resolve to any address"
        )));
    }
    Ok(addrs)
}

/// Refuses `addr` unless the operator allowlisted this exact `ip:port`, or the address is in
/// no forbidden range. The check is ours, per hop, rather than inside a reqwest resolver,
/// because a resolver sees the host but not the port, and the allowlist is per port.
pub(super) fn check_address(
    allowed: &[SocketAddr],
    host: &str,
    addr: SocketAddr,
) -> Result<(), MetadataError> {
    if is_allowlisted(allowed, addr) {
        return Ok(());
    }
    match forbidden_reason(addr.ip()) {
        Some(reason) => Err(MetadataError::ForbiddenAddress(format!(
            "host {host} resolves to {reason}"
        ))),
        None => Ok(()),
    }
}

/// Compares ip and port only: a resolved IPv6 address may carry flow info or a scope id,
/// and `::ffff:127.0.0.1` is the same destination as `127.0.0.1`.
fn is_allowlisted(allowed: &[SocketAddr], addr: SocketAddr) -> bool {
    allowed.iter().any(|allowed| {
        allowed.port() == addr.port() && allowed.ip().to_canonical() == addr.ip().to_canonical()
    })
}

/// Whether fetching from `ip` must be refused: loopback, unspecified, private, link-local
/// (cloud metadata services), CGNAT, "this network", broadcast, multicast, documentation,
/// benchmarking and reserved ranges, and the IPv6 equivalents. IPv6 forms that embed an
/// IPv4 address (mapped, compatible, NAT64, 6to4) are judged by that IPv4 address.
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    forbidden_reason(ip).is_some()
}

/// Why `ip` is forbidden, phrased to follow "resolves to".
pub(super) fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => forbidden_ipv4_reason(ip),
        IpAddr::V6(ip) => forbidden_ipv6_reason(ip),
    }
}

/// `Ipv4Net::new_assert` in a `const` is checked by the compiler: a bad prefix length is a
/// build error, never a runtime panic.
const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix)
}

/// Same as [`v4`], for IPv6 networks given by their first segments.
const fn v6(segments: [u16; 8], prefix: u8) -> Ipv6Net {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), prefix)
}

/// IPv4 ranges we never fetch from, with the reason; the first match names it. Broadcast
/// comes before 240/4 so it gets its own name.
const FORBIDDEN_IPV4: &[(Ipv4Net, &str)] = &[
    (
        v4(0, 0, 0, 0, 8),
        "an unspecified (\"this network\") address",
    ),
    (v4(10, 0, 0, 0, 8), "a private address"),
    (
        v4(100, 64, 0, 0, 10),
        "a carrier-grade NAT (shared) address",
    ),
    (v4(127, 0, 0, 0, 8), "a loopback address"),
    (
        v4(169, 254, 0, 0, 16),
        "a link-local address (where cloud metadata services live)",
    ),
    (v4(172, 16, 0, 0, 12), "a private address"),
    (v4(192, 0, 0, 0, 24), "an IETF protocol assignment address"),
    (v4(192, 0, 2, 0, 24), "a documentation address"),
    (v4(192, 168, 0, 0, 16), "a private address"),
    (v4(198, 18, 0, 0, 15), "a benchmarking address"),
    (v4(198, 51, 100, 0, 24), "a documentation address"),
    (v4(203, 0, 113, 0, 24), "a documentation address"),
    (v4(224, 0, 0, 0, 4), "a multicast address"),
    (v4(255, 255, 255, 255, 32), "the broadcast address"),
    (v4(240, 0, 0, 0, 4), "a reserved address"),
];

fn forbidden_ipv4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    FORBIDDEN_IPV4
        .iter()
        .find(|(network, _)| network.contains(&ip))
        .map(|(_, reason)| *reason)
}

/// Where an IPv6 address carries the IPv4 address that connecting to it reaches.
#[derive(Clone, Copy)]
enum Embedded {
    /// The last 32 bits.
    Last32,
    /// Bits 16 to 47, as 6to4 (`2002:aabb:ccdd::`) puts them.
    SixToFour,
}

/// IPv6 forms that stand for an IPv4 host: those are judged by the IPv4 address, so
/// `::ffff:127.0.0.1` is as loopback as `127.0.0.1`. The `/96` rows are exact prefixes (the
/// IPv4 address fills the remaining 32 bits).
const EMBEDS_IPV4: &[(Ipv6Net, Embedded)] = &[
    // IPv4-mapped `::ffff:a.b.c.d`
    (v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96), Embedded::Last32),
    // IPv4-translated `::ffff:0:a.b.c.d`
    (v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96), Embedded::Last32),
    // IPv4-compatible `::a.b.c.d` (after `::` and `::1` are handled)
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 96), Embedded::Last32),
    // NAT64 well-known prefix `64:ff9b::a.b.c.d`
    (v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96), Embedded::Last32),
    // 6to4 `2002:aabb:ccdd::`
    (v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16), Embedded::SixToFour),
];

/// IPv6 ranges we never fetch from. Anything outside [`GLOBAL_UNICAST`] is refused after
/// this table too; the table only gives the common ranges a clearer reason.
const FORBIDDEN_IPV6: &[(Ipv6Net, &str)] = &[
    (
        v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        "a local-use NAT64 address",
    ),
    (
        v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        "a discard-only address",
    ),
    (
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32),
        "a Teredo tunnel address",
    ),
    (
        v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48),
        "a benchmarking address",
    ),
    (
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        "a documentation address",
    ),
    (
        v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        "a documentation address",
    ),
    (
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        "a unique-local (private) address",
    ),
    (
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        "a link-local address",
    ),
    (
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "a site-local address",
    ),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "a multicast address"),
];

/// 2000::/3: the only IPv6 addresses the public internet routes to hosts.
const GLOBAL_UNICAST: Ipv6Net = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

fn forbidden_ipv6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("the unspecified address");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    if let Some(embedded) = embedded_ipv4(ip) {
        return forbidden_ipv4_reason(embedded);
    }
    if let Some((_, reason)) = FORBIDDEN_IPV6
        .iter()
        .find(|(network, _)| network.contains(&ip))
    {
        return Some(reason);
    }
    if !GLOBAL_UNICAST.contains(&ip) {
        return Some("a reserved IPv6 address");
    }
    None
}

/// The IPv4 address an IPv6 address stands for, when connecting to it reaches that IPv4
/// host (see [`EMBEDS_IPV4`]).
fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let (_, embedding) = EMBEDS_IPV4
        .iter()
        .find(|(network, _)| network.contains(&ip))?;
    let [_, _, a, b, c, d, _, _, _, _, _, _, w, x, y, z] = ip.octets();
    Some(match embedding {
        Embedded::Last32 => Ipv4Addr::new(w, x, y, z),
        Embedded::SixToFour => Ipv4Addr::new(a, b, c, d),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test IP addresses are valid")
    }

    #[test]
    fn forbidden_ip_covers_every_special_ipv4_range() {
        for address in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.1.2.3",
            "169.254.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.0.170",
            "192.0.2.10",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "250.1.2.3",
            "255.255.255.255",
        ] {
            assert!(
                is_forbidden_ip(ip(address)),
                "{address} should be forbidden"
            );
        }
    }

    #[test]
    fn forbidden_ip_leaves_the_neighbours_of_special_ranges_alone() {
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.1",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.1",
            "169.253.255.255",
            "169.255.0.1",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.0.3.1",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.101.1",
            "203.0.114.1",
            "223.255.255.255",
        ] {
            assert!(!is_forbidden_ip(ip(address)), "{address} should be allowed");
        }
    }

    #[test]
    fn forbidden_ip_covers_special_ipv6_ranges_and_embedded_ipv4() {
        for address in [
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fd00:ec2::254",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff05::1:3",
            "2001:db8::1",
            "2001:db8:ffff::1",
            "2001::1",
            "100::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::ffff:0:192.168.0.1",
            "::127.0.0.1",
            "::0.0.0.2",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "4000::1",
        ] {
            assert!(
                is_forbidden_ip(ip(address)),
                "{address} should be forbidden"
            );
        }
    }

    #[test]
    fn forbidden_ip_allows_public_ipv6_and_public_embedded_ipv4() {
        for address in [
            "2606:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:4860:4860::8888",
            "::ffff:93.184.216.34",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!is_forbidden_ip(ip(address)), "{address} should be allowed");
        }
    }

    #[test]
    fn forbidden_reason_names_the_kind_of_range() {
        assert_eq!(
            forbidden_reason(ip("127.0.0.1")),
            Some("a loopback address")
        );
        assert_eq!(
            forbidden_reason(ip("::ffff:127.0.0.1")),
            Some("a loopback address")
        );
        assert!(
            forbidden_reason(ip("169.254.169.254")).is_some_and(|why| why.contains("link-local"))
        );
        assert_eq!(
            forbidden_reason(ip("255.255.255.255")),
            Some("the broadcast address")
        );
        assert_eq!(forbidden_reason(ip("93.184.216.34")), None);
    }

    #[test]
    fn every_row_of_the_range_tables_is_refused_from_its_first_to_its_last_address() {
        for (network, _) in FORBIDDEN_IPV4 {
            for edge in [network.network(), network.broadcast()] {
                assert!(is_forbidden_ip(edge.into()), "{edge} ({network})");
                // The same host reached through an IPv4-mapped IPv6 address.
                assert!(is_forbidden_ip(edge.to_ipv6_mapped().into()), "{edge}");
            }
        }
        for (network, _) in FORBIDDEN_IPV6 {
            for edge in [network.network(), network.broadcast()] {
                assert!(is_forbidden_ip(edge.into()), "{edge} ({network})");
            }
        }
    }
}
