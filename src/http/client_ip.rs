//! Which address a request comes from, when fedgate sits behind load balancers or proxies.
//!
//! Rate limits and audit lines are per client address. Behind a load balancer every TCP peer
//! is the balancer, so the client is named by the header it adds (`X-Forwarded-For`, or RFC
//! 7239 `Forwarded`). That header is believed only when the TCP peer is one of
//! `server.trusted_proxies`, and then only from the right: each trusted hop appends the address
//! it received the request from, so the right-most address that is not itself a trusted proxy
//! is the client. Anything left of it was written by the client and may be forged.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::HeaderMap;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An address range in `server.trusted_proxies`: `10.0.0.0/8`, `fd00::/8`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        text.parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .map(|net| Cidr(net.trunc()))
            .map_err(|_| format!("{text:?} is not an address or a CIDR range like 10.0.0.0/8"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The header trusted proxies name the client in (`server.trusted_proxy_header`). One only: a
/// proxy that writes one of them usually passes the other through from the client untouched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardedHeader {
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// RFC 7239: `Forwarded: for=192.0.2.60;proto=https, for="[2001:db8::1]:4711"`.
    #[serde(rename = "forwarded")]
    Forwarded,
}

/// The proxies whose forwarded header is believed, and which header that is.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Box<[IpNet]>,
    header: ForwardedHeader,
}

/// At most this many forwarded addresses are read from the right; a longer chain of trusted
/// proxies than this does not exist, and reading stops there.
const MAX_HOPS: usize = 16;

impl TrustedProxies {
    pub fn new(nets: &[Cidr], header: ForwardedHeader) -> Self {
        Self {
            nets: nets.iter().map(|c| c.0).collect(),
            header,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// True when `ip` is one of the trusted proxies (an IPv4-mapped IPv6 peer counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request that arrived from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let (name, parse): (_, fn(&str) -> Vec<&str>) = match self.header {
            ForwardedHeader::XForwardedFor => ("x-forwarded-for", x_forwarded_for),
            ForwardedHeader::Forwarded => ("forwarded", forwarded_for),
        };
        // Several header lines are one comma-separated list, in order (RFC 9110 §5.3).
        let mut hops: Vec<&str> = Vec::new();
        for value in headers.get_all(name) {
            let Ok(value) = value.to_str() else {
                return peer; // not text: no address in it can be believed
            };
            hops.extend(parse(value));
        }
        // The nearest hop that is not a trusted proxy is the client. A hop that is not an
        // address (garbage, `unknown`, an obfuscated name) ends the walk: the proxy to its right
        // is the last one that can be named.
        let mut client = peer;
        for hop in hops.iter().rev().take(MAX_HOPS) {
            let Some(ip) = parse_address(hop) else {
                return client;
            };
            client = ip;
            if !self.contains(ip) {
                return ip;
            }
        }
        client
    }
}

/// `X-Forwarded-For: client, proxy1, proxy2`.
fn x_forwarded_for(value: &str) -> Vec<&str> {
    value.split(',').map(str::trim).collect()
}

/// The `for=` parameter of each element of `Forwarded` (RFC 7239 §4); an element without one is
/// an empty hop, which names nobody.
fn forwarded_for(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(key, _)| key.trim().eq_ignore_ascii_case("for"))
                .map_or("", |(_, node)| node.trim().trim_matches('"'))
        })
        .collect()
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn parse_address(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    let bracketed = text.strip_prefix('[')?.strip_suffix(']')?;
    bracketed.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(name, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    fn proxies(nets: &[&str], header: ForwardedHeader) -> TrustedProxies {
        let nets: Vec<Cidr> = nets.iter().map(|n| n.parse().unwrap()).collect();
        TrustedProxies::new(&nets, header)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_with_or_without_a_prefix() {
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            "10.1.2.3".parse::<Cidr>().unwrap().to_string(),
            "10.1.2.3/32"
        );
        assert_eq!(
            "10.1.2.3/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!("fd00::/8".parse::<Cidr>().unwrap().to_string(), "fd00::/8");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("proxy.local".parse::<Cidr>().is_err());
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_peer() {
        let trusted = proxies(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let h = headers("x-forwarded-for", &["203.0.113.9"]);
        assert_eq!(trusted.client(ip("192.0.2.1"), &h), ip("192.0.2.1"));
        assert_eq!(trusted.client(ip("10.0.0.5"), &h), ip("203.0.113.9"));
        assert_eq!(
            trusted.client(ip("10.0.0.5"), &HeaderMap::new()),
            ip("10.0.0.5"),
            "no header: the proxy itself"
        );
        let none = TrustedProxies::default();
        assert_eq!(none.client(ip("10.0.0.5"), &h), ip("10.0.0.5"));
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        let trusted = proxies(
            &["10.0.0.0/8", "192.168.1.1"],
            ForwardedHeader::XForwardedFor,
        );
        // The client forged the first entry; two trusted hops appended theirs.
        let h = headers(
            "x-forwarded-for",
            &["6.6.6.6, 203.0.113.9, 10.1.1.1", "192.168.1.1"],
        );
        assert_eq!(trusted.client(ip("10.0.0.5"), &h), ip("203.0.113.9"));
        // Every hop trusted: the left-most one.
        let h = headers("x-forwarded-for", &["10.2.2.2, 10.1.1.1"]);
        assert_eq!(trusted.client(ip("10.0.0.5"), &h), ip("10.2.2.2"));
        // Garbage from the right stops the walk at the last proxy that could be named.
        let h = headers("x-forwarded-for", &["203.0.113.9, garbage, 10.1.1.1"]);
        assert_eq!(trusted.client(ip("10.0.0.5"), &h), ip("10.1.1.1"));
        let h = headers("x-forwarded-for", &["203.0.113.9:4711", "[2001:db8::7]:80"]);
        assert_eq!(trusted.client(ip("10.0.0.5"), &h), ip("2001:db8::7"));
        let h = headers("x-forwarded-for", &["::ffff:203.0.113.9"]);
        assert_eq!(trusted.client(ip("::ffff:10.0.0.5"), &h), ip("203.0.113.9"));
    }

    #[test]
    fn forwarded_is_read_when_configured_and_only_then() {
        let trusted = proxies(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        let h = headers(
            "forwarded",
            &[
                r#"for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, For=10.9.9.9;by=10.0.0.5"#,
            ],
        );
        assert_eq!(trusted.client(ip("10.0.0.5"), &h), ip("2001:db8:cafe::17"));
        let h = headers("forwarded", &["for=unknown, for=10.9.9.9"]);
        assert_eq!(trusted.client(ip("10.0.0.5"), &h), ip("10.9.9.9"));
        let xff = headers("x-forwarded-for", &["203.0.113.9"]);
        assert_eq!(
            trusted.client(ip("10.0.0.5"), &xff),
            ip("10.0.0.5"),
            "the other header is ignored"
        );
    }
}
