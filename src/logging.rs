//! Log set-up: `text` for people, `json` for log pipelines; always to stderr, so commands that
//! print a result (`token create`) keep stdout clean.

use tracing_subscriber::EnvFilter;

use crate::config::Log;

/// Installs the global subscriber. The level was validated with the configuration.
pub fn init(log: &Log) {
    let filter = EnvFilter::try_new(&log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if log.format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
