//! The one outbound HTTP client, for discovery documents and JWKS.
//!
//! Every fetch is bounded: a timeout, a size cap, no redirect to another host (nor, unless
//! `allow_http_issuers`, to another scheme or port of the same host), TLS with the
//! Mozilla web roots plus `federation.extra_ca_file`, and an SSRF guard that refuses loopback,
//! private, link-local (cloud metadata) and other non-public addresses unless
//! `federation.allow_private_networks`. The guard runs on the resolved addresses, inside the DNS
//! resolver, so a hostname cannot smuggle a private address past it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use url::{Host, Url};

use crate::config::Federation;

#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// The URL or the address it resolves to is not allowed (scheme, SSRF guard, redirect).
    #[error("refused: {0}")]
    Refused(String),
    /// Connection, TLS, timeout or a non-200 answer.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The body is larger than `federation.max_document_bytes`.
    #[error("document larger than {0} bytes")]
    TooLarge(usize),
}

/// The outbound client.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    max_bytes: usize,
    allow_http: bool,
    allow_private: bool,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").finish_non_exhaustive()
    }
}

/// True for addresses on the public internet (not loopback, private, link-local, shared,
/// documentation, multicast, reserved, or an IPv4-mapped form of those).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link local
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
        || (first == 0x0064 && ip.segments()[1] == 0xff9b)) // NAT64, may embed a private IPv4
}

/// Resolves names, then drops every address the guard refuses.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if allowed.is_empty() {
                let why = if found.is_empty() {
                    format!("{host} does not resolve")
                } else {
                    format!(
                        "{host} resolves only to non-public addresses (federation.allow_private_networks is off)"
                    )
                };
                return Err(why.into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

impl Fetcher {
    pub fn new(config: &Federation) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if !config.extra_ca_file.is_empty() {
            let path = Path::new(&config.extra_ca_file);
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("federation.extra_ca_file {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "federation.extra_ca_file {}: no certificate found",
                    path.display()
                ));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("federation.extra_ca_file {}: {e}", path.display()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];

        let timeout = Duration::from_millis(config.fetch_timeout_ms);
        let allow_http = config.allow_http_issuers;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .dns_resolver(Arc::new(GuardedResolver {
                allow_private: config.allow_private_networks,
            }))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                let first = attempt.previous().first();
                let target = attempt.url();
                let same_host = first.map(|f| f.host_str()) == Some(target.host_str());
                // A redirect may not leave TLS or go to another port (another service on the
                // host) unless http issuers are allowed at all.
                let same_origin = first.is_some_and(|f| {
                    f.scheme() == target.scheme()
                        && f.port_or_known_default() == target.port_or_known_default()
                });
                if attempt.previous().len() > 3 {
                    attempt.error("too many redirects")
                } else if !same_host {
                    attempt.error("redirect to another host")
                } else if !same_origin && !allow_http {
                    attempt.error("redirect to another scheme or port")
                } else {
                    attempt.follow()
                }
            }))
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("fedgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client set-up: {e}"))?;
        Ok(Self {
            client,
            max_bytes: config.max_document_bytes,
            allow_http: config.allow_http_issuers,
            allow_private: config.allow_private_networks,
        })
    }

    /// Checks what can be checked before any I/O: scheme and IP-literal hosts.
    pub fn check_url(&self, url: &Url) -> Result<(), FetchError> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            other => {
                return Err(FetchError::Refused(format!(
                    "{other}:// URLs are not fetched"
                )));
            }
        }
        let literal = match url.host() {
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(Host::Domain(_)) => None,
            None => return Err(FetchError::Refused("URL has no host".into())),
        };
        if let Some(ip) = literal.filter(|ip| !self.allow_private && !is_public(*ip)) {
            return Err(FetchError::Refused(format!(
                "{ip} is not a public address (federation.allow_private_networks is off)"
            )));
        }
        Ok(())
    }

    /// GETs `url` and returns its body, at most `max_document_bytes` of it.
    pub async fn get(&self, url: &Url) -> Result<Bytes, FetchError> {
        self.get_authorized(url, None).await
    }

    /// As [`get`](Self::get), sending `bearer` as `Authorization: Bearer` when given (an
    /// issuer's trust settings: `oidc::trust`).
    pub async fn get_authorized(
        &self,
        url: &Url,
        bearer: Option<&str>,
    ) -> Result<Bytes, FetchError> {
        self.check_url(url)?;
        let mut request = self.client.get(url.clone());
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let mut response = request
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| classify(&e))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(FetchError::Unreachable(format!(
                "{url} answered {}",
                response.status()
            )));
        }
        if response
            .content_length()
            .is_some_and(|len| len > self.max_bytes as u64)
        {
            return Err(FetchError::TooLarge(self.max_bytes));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e))? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(FetchError::TooLarge(self.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

/// A guard refusal travels inside reqwest's error chain; surface it as `Refused`.
fn classify(err: &reqwest::Error) -> FetchError {
    let mut chain = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = source {
        if !chain.is_empty() {
            chain.push_str(": ");
        }
        chain.push_str(&e.to_string());
        source = e.source();
    }
    if chain.contains("non-public addresses") || chain.contains("redirect to another") {
        FetchError::Refused(chain)
    } else {
        FetchError::Unreachable(chain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_knows_non_public_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "::",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "140.82.112.3", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    /// Each address is refused by one clause of the guard alone, and its neighbours just
    /// outside the range are public, so no clause can be dropped or widened unnoticed.
    #[test]
    fn each_non_public_range_is_refused_on_its_own_and_its_edges_are_public() {
        for private in [
            "127.255.255.254",  // loopback
            "172.31.255.255",   // private
            "169.254.0.1",      // link local
            "192.0.2.7",        // documentation
            "0.1.2.3",          // "this network"
            "100.64.0.0",       // shared address space: first
            "100.127.255.255",  // shared address space: last
            "192.0.0.9",        // IETF protocol assignments
            "198.18.0.0",       // benchmarking: first
            "198.19.255.255",   // benchmarking: last
            "240.0.0.0",        // reserved
            "239.255.255.255",  // multicast
            "fc00::1",          // unique local: first half
            "fdff:ffff::1",     // unique local: second half
            "febf::1",          // link local: last
            "2001:db8:ffff::1", // documentation
            "64:ff9b::7f00:1",  // NAT64
            "ff02::1",          // multicast
        ] {
            assert!(
                !is_public(private.parse().unwrap()),
                "{private} is not public"
            );
        }
        for public in [
            "11.0.0.1",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.0",
            "192.0.1.0",
            "192.1.0.0",
            "193.0.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "99.64.0.1",
            "101.64.0.1",
            "197.18.0.1",
            "199.18.0.1",
            "191.0.0.1",
            "223.255.255.255",
            "fbff::1",
            "fe00::1",
            "fec0::1",
            "2001:db9::1",
            "2002:db8::1",
            "64:ff9a::1",
            "65:ff9b::1",
            "::ffff:8.8.4.4",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public} is public");
        }
    }

    #[test]
    fn urls_are_checked_before_any_io() {
        let f = Fetcher::new(&Federation::default()).unwrap();
        let refused = |u: &str| {
            matches!(
                f.check_url(&Url::parse(u).unwrap()),
                Err(FetchError::Refused(_))
            )
        };
        assert!(refused("http://issuer.example"));
        assert!(refused("https://127.0.0.1/"));
        assert!(refused("https://[::1]/"));
        assert!(refused("https://169.254.169.254/latest/meta-data"));
        assert!(refused("file:///etc/passwd"));
        assert!(
            f.check_url(&Url::parse("https://token.actions.githubusercontent.com").unwrap())
                .is_ok()
        );
        assert!(
            f.check_url(&Url::parse("https://8.8.8.8/").unwrap())
                .is_ok()
        );
        assert!(
            f.check_url(&Url::parse("https://[2606:4700::1111]/").unwrap())
                .is_ok()
        );

        let lab = Fetcher::new(&Federation {
            allow_http_issuers: true,
            allow_private_networks: true,
            ..Federation::default()
        })
        .unwrap();
        for allowed in [
            "http://127.0.0.1:8080/",
            "https://[::1]/",
            "http://issuer.local",
        ] {
            assert!(
                lab.check_url(&Url::parse(allowed).unwrap()).is_ok(),
                "{allowed}"
            );
        }
        assert!(matches!(
            lab.check_url(&Url::parse("ftp://127.0.0.1/").unwrap()),
            Err(FetchError::Refused(_))
        ));
    }
}
