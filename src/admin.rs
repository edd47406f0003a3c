//! Admin operations shared by the CLI and the test harness.

use secrecy::{ExposeSecret, SecretString};

use crate::http::auth::Scope;
use crate::rng::{RandomUnavailable, Rng};
use crate::store::{ApiTokenRecord, NamespaceKind, Store, StoreError, Unix};
use crate::tokens::at_rest::AtRestKeys;
use crate::tokens::opaque::{self, TokenKind};

#[derive(Debug, thiserror::Error)]
pub enum IssueTokenError {
    #[error("no user named {0}")]
    NoSuchUser(String),
    #[error(transparent)]
    Random(#[from] RandomUnavailable),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates an admin-API token for `user` with `scopes`. Only its keyed hash is stored; the
/// token itself is returned once.
pub async fn issue_api_token(
    store: &dyn Store,
    keys: &AtRestKeys,
    rng: &dyn Rng,
    user: &str,
    scopes: &[Scope],
    now: Unix,
    expires_at: Option<Unix>,
) -> Result<SecretString, IssueTokenError> {
    if store.namespace_kind(user).await? != Some(NamespaceKind::User) {
        return Err(IssueTokenError::NoSuchUser(user.to_string()));
    }
    let token = opaque::generate(TokenKind::Api, rng)?;
    let mut names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    names.dedup();
    let record = ApiTokenRecord {
        username: user.to_string(),
        scopes: names.join(" "),
        expires_at,
    };
    store
        .insert_api_token(&keys.lookup_hash(token.expose_secret()), &record, now)
        .await?;
    Ok(token)
}
