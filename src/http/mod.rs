//! Everything between the socket and the handlers.
//!
//! - [`listener`]: accepts connections (plain or TLS) and shuts down gracefully.
//! - [`connections`]: connection slots, per-address caps, and how long a connection may go
//!   without a request or take over a body.
//! - [`certs`]: the server certificate, reloaded when its files change.
//! - [`router`]: the route table and the middleware that logs, counts and renders errors.
//! - [`error`]: [`ApiError`](error::ApiError), the Quay-shaped error body of the admin API.
//! - [`auth`]: who is calling the admin API and what they may touch.
//! - [`extract`]: request parsing whose failures become clear 4xx answers.
//! - [`client_ip`]: the client's address behind trusted proxies.

pub mod auth;
pub mod certs;
pub mod client_ip;
pub mod connections;
pub mod error;
pub mod extract;
pub mod listener;
pub mod router;

/// The client's address: the peer of the connection the request came on (inserted by the
/// listener), or, when that peer is a trusted proxy, the address its forwarded header names
/// (replaced by the router; the port is then 0). Rate limits and audit lines use it.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);
