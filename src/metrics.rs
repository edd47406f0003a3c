//! Every Prometheus metric fedgate exports, declared in one place with help text.
//! Labels are bounded: routes are the router's patterns, never raw paths.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "fedgate_http_requests_total",
                "HTTP requests answered, by route pattern, method and status.",
            ),
            &["route", "method", "status"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "fedgate_http_request_duration_seconds",
                "Time from request head to response head, by route pattern.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        for collector in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
        ] {
            registry
                .register(collector)
                .unwrap_or_else(|e| unreachable!("metric names are unique: {e}"));
        }
        Self {
            registry,
            http_requests,
            http_duration,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
