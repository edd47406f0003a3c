//! Log set-up: `text` for people, `json` for log pipelines; always to stderr, so commands that
//! print a result (`token create`) keep stdout clean.

use tracing_subscriber::EnvFilter;

use crate::config::Log;

/// Installs the global subscriber. The level was validated with the configuration. `colour`
/// (ANSI escapes in text logs) is for a person at a terminal only: see [`colour_wanted`].
pub fn init(log: &Log, colour: bool) {
    let filter = EnvFilter::try_new(&log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = if log.format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// Colour only when stderr is a terminal, not under systemd (`JOURNAL_STREAM`: journald would
/// store the escape codes) and not with `NO_COLOR` set.
pub fn colour_wanted(stderr_is_terminal: bool, env: impl Fn(&str) -> bool) -> bool {
    stderr_is_terminal && !env("JOURNAL_STREAM") && !env("NO_COLOR")
}
