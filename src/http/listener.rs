//! The connection loop: hyper 1.x through hyper-util, optionally behind tokio-rustls.
//!
//! It takes a listener that is already bound (tests bind `127.0.0.1:0`) and a shutdown future.
//! Connection slots, per-address caps and the time a connection may go without a request are
//! [`super::connections`]'s; this file accepts, hands each connection to hyper (TLS handshake
//! timeout, HTTP/2 keep-alive pings, header size caps) and shuts down gracefully, dropping
//! connections still open after the grace period.

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::ClientAddr;
use super::certs::ReloadingCert;
use super::client_ip::TrustedProxies;
use super::connections::{ConnectionLimits, Connections, TimedBody};
use crate::config::Server;

/// Request heads (HTTP/1.1 buffer, HTTP/2 header list) larger than this are refused: room for
/// a 16 KiB identity token in a Basic header, and a 48 KiB query.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Requests in flight at once on one HTTP/2 connection.
const MAX_STREAMS_PER_CONNECTION: u32 = 100;

/// Limits of the connection loop. The defaults suit a gateway behind a load balancer.
#[derive(Clone)]
pub struct ServeOptions {
    pub tls: Option<Arc<ServerConfig>>,
    pub max_connections: usize,
    /// Connections from one address at once (0: no limit); trusted proxies are exempt.
    pub max_connections_per_ip: usize,
    pub trusted_proxies: TrustedProxies,
    pub tls_handshake_timeout: Duration,
    /// Time a connection has to deliver a request head from when it opens or its previous
    /// request ends (HTTP/1.1 and HTTP/2); idle connections are closed after it.
    pub header_read_timeout: Duration,
    /// Time a request body has to arrive in full.
    pub body_timeout: Duration,
    /// HTTP/2 pings: sent this often; a peer that does not answer within the timeout is gone.
    pub http2_keep_alive_interval: Duration,
    pub http2_keep_alive_timeout: Duration,
    /// How long in-flight requests may take to finish after shutdown starts.
    pub grace_period: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self::from_config(&Server::default())
    }
}

impl ServeOptions {
    /// The options `server` configures (TLS aside, which needs its files read).
    pub fn from_config(server: &Server) -> Self {
        Self {
            tls: None,
            max_connections: server.max_connections,
            max_connections_per_ip: server.max_connections_per_ip,
            trusted_proxies: server.proxies(),
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(server.header_timeout_seconds),
            body_timeout: Duration::from_secs(server.body_timeout_seconds),
            http2_keep_alive_interval: Duration::from_secs(20),
            http2_keep_alive_timeout: Duration::from_secs(20),
            grace_period: Duration::from_secs(20),
        }
    }
}

/// Loads a PEM certificate chain and private key into a rustls server configuration
/// (HTTP/2 and HTTP/1.1 offered by ALPN). The files are watched: a renewed pair is served
/// without a restart (see [`ReloadingCert`]).
pub fn load_tls(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let resolver = ReloadingCert::load(cert, key, provider.clone())?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("server.tls_cert/tls_key: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains for at most
/// `options.grace_period`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(options.http2_keep_alive_interval)
        .keep_alive_timeout(options.http2_keep_alive_timeout)
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .max_header_list_size(MAX_HEAD_BYTES as u32);
    let acceptor = options.tls.clone().map(TlsAcceptor::from);
    let connections = Connections::new(ConnectionLimits {
        max_connections: options.max_connections,
        max_per_ip: options.max_connections_per_ip,
        trusted_proxies: options.trusted_proxies.clone(),
        header_timeout: options.header_read_timeout,
    });
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually EMFILE; back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if !connections.may_admit(peer.ip()) {
            tracing::debug!(%peer, "too many connections from this address; closed");
            continue;
        }
        // Only now, with a client waiting, does a full table close an idle connection.
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = connections.room() => {}
        }
        let Ok(admitted) = connections.admit(peer.ip()) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let stream = connections.guard(stream, &admitted.slot);
        let router = router.clone();
        let slot = admitted.slot.clone();
        let body_timeout = options.body_timeout;
        let service = TowerToHyperService::new(tower::service_fn(
            move |request: http::Request<Incoming>| {
                let in_flight = slot.begin_request();
                let mut request = request.map(|body| TimedBody::new(body, body_timeout));
                request.extensions_mut().insert(ClientAddr(peer));
                let response = router.clone().oneshot(request);
                async move {
                    let response = response.await;
                    drop(in_flight);
                    response
                }
            },
        ));
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        let handshake_timeout = options.tls_handshake_timeout;
        tokio::spawn(async move {
            let _admitted = admitted;
            match acceptor {
                None => serve_connection(&builder, stream, service, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => serve_connection(&builder, tls, service, watcher).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }

    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(options.grace_period) => {
            tracing::warn!(grace_period_s = options.grace_period.as_secs(), "grace period over; dropping open connections");
        }
    }
}

async fn serve_connection<I, S>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    service: S,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<http::Request<Incoming>, Response = axum::response::Response>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(connection.into_owned()).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Raises the soft limit on open files to the hard limit (as Go programs do), so that
/// `max_connections` is not cut short by the usual soft limit of 1024; warns if even the hard
/// limit leaves too little room.
pub fn raise_open_file_limit(max_connections: usize) {
    // Connections, plus the database pool, Redis, the outbound client and files.
    let wanted = max_connections as u64 + 256;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < wanted => tracing::warn!(
            limit,
            max_connections,
            "the open-file limit is below server.max_connections; raise it (LimitNOFILE=, ulimit -n)"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

/// Binds a listener (kept separate so `serve` can take pre-bound ones).
pub async fn bind(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
