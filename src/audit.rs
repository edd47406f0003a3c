//! Audit lines: one structured event (target `audit`) per admin change, and later per exchange.
//! They name who did what to which object from where; never a token or other secret.

use crate::http::auth::Caller;

/// Records an admin change made through the API.
pub fn admin_change(caller: &Caller, action: &'static str, object: &str) {
    tracing::info!(
        target: "audit",
        kind = "admin",
        action,
        actor = %caller.username,
        object,
        client = %caller.client.map(|c| c.ip().to_string()).unwrap_or_default(),
        result = "ok",
    );
}

/// Records an admin change made with the CLI (`fedgate user create`, ...).
pub fn cli_change(action: &'static str, object: &str) {
    tracing::info!(target: "audit", kind = "admin", action, actor = "cli", object, result = "ok");
}
