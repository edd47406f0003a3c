//! Every Prometheus metric fedgate exports, declared in one place with help text.
//! Labels are bounded: routes are the router's patterns, results a fixed set of codes.

use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets for the request paths, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `fedgate_http_requests_total{route,method,status}`
    pub http_requests: IntCounterVec,
    /// `fedgate_http_request_duration_seconds{route}`
    pub http_duration: HistogramVec,
    /// `fedgate_exchanges_total{result}`: `ok` or a refusal code.
    pub exchanges: IntCounterVec,
    /// `fedgate_exchange_duration_seconds{result}`: `ok` or `refused`.
    pub exchange_duration: HistogramVec,
    /// `fedgate_jwks_fetches_total{result}`: `ok` or `error`.
    pub jwks_fetches: IntCounterVec,
    /// `fedgate_registry_tokens_total{result}`: `ok`, `unauthorized`, `bad_request`,
    /// `rate_limited`, `unavailable`.
    pub registry_tokens: IntCounterVec,
    /// `fedgate_cache_bytes{cache}`: `robots` or `jwks`, against `limits.*_cache_bytes`.
    pub cache_bytes: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| unreachable!("static metric definition {name}: {e}"));
            register(&registry, Box::new(c.clone()));
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )
            .unwrap_or_else(|e| unreachable!("static metric definition {name}: {e}"));
            register(&registry, Box::new(h.clone()));
            h
        };
        Self {
            http_requests: counter(
                "fedgate_http_requests_total",
                "HTTP requests answered, by route pattern, method and status.",
                &["route", "method", "status"],
            ),
            http_duration: histogram(
                "fedgate_http_request_duration_seconds",
                "Time from request head to response head, by route pattern.",
                &["route"],
            ),
            exchanges: counter(
                "fedgate_exchanges_total",
                "Token exchanges, by result: ok or the refusal code.",
                &["result"],
            ),
            exchange_duration: histogram(
                "fedgate_exchange_duration_seconds",
                "Time to check an identity token and mint a robot token, by outcome.",
                &["result"],
            ),
            jwks_fetches: counter(
                "fedgate_jwks_fetches_total",
                "Discovery + JWKS fetches from identity issuers, by result.",
                &["result"],
            ),
            registry_tokens: counter(
                "fedgate_registry_tokens_total",
                "Docker registry tokens requested at /v2/auth, by result.",
                &["result"],
            ),
            cache_bytes: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "fedgate_cache_bytes",
                        "Bytes held by a cache as it weighs its entries (robots, jwks); \
                         updated every 5 s.",
                    ),
                    &["cache"],
                )
                .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
                register(&registry, Box::new(g.clone()));
                g
            },
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

fn register(registry: &Registry, collector: Box<dyn Collector>) {
    registry
        .register(collector)
        .unwrap_or_else(|e| unreachable!("metric names are unique: {e}"));
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
