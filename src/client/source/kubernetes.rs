//! Kubernetes: a projected service-account token with the gateway as its audience, mounted by
//! the pod spec:
//!
//! ```yaml
//! volumes:
//!   - name: fedgate-token
//!     projected:
//!       sources:
//!         - serviceAccountToken: {path: token, audience: "https://fedgate.example.com", expirationSeconds: 600}
//! # and in the container: volumeMounts: [{name: fedgate-token, mountPath: /var/run/secrets/fedgate}]
//! ```
//!
//! kubelet replaces the file before the token expires, so it is read again on every fetch.

use std::path::Path;

use secrecy::SecretString;

use super::super::{ClientError, Env};
use super::generic::read_file;

/// Where the projected token is read unless `--token-file` says otherwise.
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/fedgate/token";

pub fn detected(env: &Env) -> bool {
    env.is_set("KUBERNETES_SERVICE_HOST")
}

pub fn read(file: &Path) -> Result<SecretString, ClientError> {
    read_file(
        file,
        &format!(
            "Kubernetes: the projected service-account token {}",
            file.display()
        ),
        "; mount one with the gateway as its audience, or give --token-file",
    )
}
