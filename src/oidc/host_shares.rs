//! What the issuers under one host may take of the key cache.
//!
//! Issuers are URLs, and whoever controls a host controls every path under it: a tenant can
//! name thousands of issuers (`https://evil.example/1`, `/2`, …) and have each one's keys
//! fetched and cached. Their keys count against a share of the cache per host (a quarter of
//! `limits.jwks_cache_bytes`); when a host's issuers would take more, its oldest ones are
//! dropped, so one host's flood pushes out its own issuers, never other hosts'. Hosts with
//! many legitimate issuers (Entra ID tenants, GitHub Enterprise slugs) have small key sets
//! and fit a quarter of the budget by the thousand.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// The bytes each host's issuers hold, oldest issuer first.
#[derive(Debug)]
pub struct HostShares {
    share: u64,
    hosts: Mutex<HashMap<String, Host>>,
}

#[derive(Debug, Default)]
struct Host {
    bytes: u64,
    issuers: VecDeque<(String, u64)>,
}

/// The host an issuer belongs to (port and path aside; the whole text if it is not a URL).
pub fn host_of(issuer: &str) -> String {
    url::Url::parse(issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| issuer.to_string())
}

impl HostShares {
    /// Each host may hold `share` bytes.
    pub fn new(share: u64) -> Self {
        Self {
            share,
            hosts: Mutex::default(),
        }
    }

    fn hosts(&self) -> std::sync::MutexGuard<'_, HashMap<String, Host>> {
        // A panic cannot leave the map inconsistent beyond a byte count, which heals.
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts `issuer`'s keys (`bytes`), replacing what it held before; returns the issuers of
    /// the same host to drop so that the host stays within its share (never `issuer` itself).
    pub fn admit(&self, issuer: &str, bytes: u64) -> Vec<String> {
        let mut hosts = self.hosts();
        let host = hosts.entry(host_of(issuer)).or_default();
        if let Some(at) = host.issuers.iter().position(|(i, _)| i == issuer)
            && let Some((_, old)) = host.issuers.remove(at)
        {
            host.bytes -= old;
        }
        host.issuers.push_back((issuer.to_string(), bytes));
        host.bytes += bytes;
        let mut dropped = Vec::new();
        while host.bytes > self.share && host.issuers.len() > 1 {
            if let Some((oldest, old)) = host.issuers.pop_front() {
                host.bytes -= old;
                dropped.push(oldest);
            }
        }
        dropped
    }

    /// Forgets `issuer` (its keys left the cache for another reason).
    pub fn forget(&self, issuer: &str) {
        let key = host_of(issuer);
        let mut hosts = self.hosts();
        let Some(host) = hosts.get_mut(&key) else {
            return;
        };
        if let Some(at) = host.issuers.iter().position(|(i, _)| i == issuer)
            && let Some((_, old)) = host.issuers.remove(at)
        {
            host.bytes -= old;
        }
        if host.issuers.is_empty() {
            hosts.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_over_its_share_drops_its_own_oldest_issuers() {
        let shares = HostShares::new(100);
        assert!(shares.admit("https://good.example", 60).is_empty());
        assert!(shares.admit("https://evil.example/1", 40).is_empty());
        assert!(shares.admit("https://evil.example/2", 40).is_empty());
        assert_eq!(
            shares.admit("https://evil.example:8443/3", 40),
            ["https://evil.example/1"],
            "the port does not make another host"
        );
        assert!(
            shares.admit("https://good.example", 70).is_empty(),
            "a refetch replaces the issuer's own count"
        );
        shares.forget("https://evil.example/2");
        assert!(shares.admit("https://evil.example/4", 60).is_empty());
        assert_eq!(
            shares.admit("https://evil.example/5", 200),
            ["https://evil.example:8443/3", "https://evil.example/4"],
            "an issuer alone over the share is kept (the cache's own budget still applies)"
        );
        assert_eq!(host_of("not a url"), "not a url");
    }

    /// A refetch and a forget each take the issuer's old bytes off its host's count: a count
    /// too high would drop a neighbour for nothing, one too low would let a host past its share.
    #[test]
    fn refetched_and_forgotten_issuers_leave_their_host_exactly_what_remains() {
        let shares = HostShares::new(100);
        shares.admit("https://ci.example/a", 40);
        shares.admit("https://ci.example/b", 40);
        assert!(
            shares.admit("https://ci.example/a", 40).is_empty(),
            "a refetch of the same size keeps the host at 80"
        );
        assert_eq!(
            shares.admit("https://ci.example/c", 30),
            ["https://ci.example/b"],
            "110 bytes: the oldest (b, since a was refetched) goes"
        );

        let shares = HostShares::new(100);
        shares.admit("https://ci.example/a", 60);
        shares.admit("https://ci.example/b", 30);
        shares.forget("https://ci.example/b");
        assert_eq!(
            shares.admit("https://ci.example/c", 50),
            ["https://ci.example/a"],
            "60 left after the forget, 110 with c"
        );
    }
}
