//! The server certificate, reloaded from `server.tls_cert`/`tls_key` when the files change,
//! so a renewed certificate (certbot, cert-manager, a Secret update) is served without a
//! restart. Every [`CHECK_EVERY`] the files are read and compared with what is loaded; a new
//! pair is parsed and checked (the key must match the certificate) before it replaces the old
//! one, so a half-written renewal keeps the current certificate until both files agree.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// How often the files are compared with the loaded certificate.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

struct Loaded {
    key: Arc<CertifiedKey>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

/// A [`ResolvesServerCert`] that serves the certificate last loaded from two PEM files.
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    loaded: RwLock<Loaded>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    /// Loads the pair once (an error names the config key and file) and, inside a tokio
    /// runtime, checks the files every [`CHECK_EVERY`] for as long as the result is in use.
    pub fn load(
        cert: &Path,
        key: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<Self>, String> {
        let (cert_pem, key_pem) = read_pair(cert, key)?;
        let loaded = parse(cert, key, cert_pem, key_pem, &provider)?;
        let this = Arc::new(Self {
            cert_path: cert.to_path_buf(),
            key_path: key.to_path_buf(),
            provider,
            loaded: RwLock::new(loaded),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(watch(Arc::downgrade(&this)));
        }
        Ok(this)
    }

    /// Reloads the pair if either file changed; `Ok(true)` when a new certificate is served.
    /// On error the current certificate stays.
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let (cert_pem, key_pem) = read_pair(&self.cert_path, &self.key_path)?;
        {
            let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
            if loaded.cert_pem == cert_pem && loaded.key_pem == key_pem {
                return Ok(false);
            }
        }
        let fresh = parse(
            &self.cert_path,
            &self.key_path,
            cert_pem,
            key_pem,
            &self.provider,
        )?;
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(true)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        Some(loaded.key.clone())
    }
}

/// Checks the files until the resolver is dropped.
async fn watch(cert: Weak<ReloadingCert>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(cert) = cert.upgrade() else { return };
        match cert.reload_if_changed() {
            Ok(false) => {}
            Ok(true) => {
                tracing::info!(cert = %cert.cert_path.display(), "TLS certificate reloaded")
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot reload the TLS certificate; still serving the previous one")
            }
        }
    }
}

fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), String> {
    let cert_pem =
        std::fs::read(cert).map_err(|e| format!("server.tls_cert {}: {e}", cert.display()))?;
    let key_pem =
        std::fs::read(key).map_err(|e| format!("server.tls_key {}: {e}", key.display()))?;
    Ok((cert_pem, key_pem))
}

fn parse(
    cert: &Path,
    key: &Path,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    provider: &CryptoProvider,
) -> Result<Loaded, String> {
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("server.tls_cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "server.tls_cert {}: no certificate found",
            cert.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("server.tls_key {}: {e}", key.display()))?;
    let certified = CertifiedKey::from_der(chain, private, provider)
        .map_err(|e| format!("server.tls_cert/tls_key: {e}"))?;
    Ok(Loaded {
        key: Arc::new(certified),
        cert_pem,
        key_pem,
    })
}
