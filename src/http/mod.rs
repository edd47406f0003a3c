//! Everything between the socket and the handlers.
//!
//! - [`listener`]: accepts connections (plain or TLS), enforces timeouts and the connection
//!   cap, and shuts down gracefully.
//! - [`certs`]: the server certificate, reloaded when its files change.
//! - [`router`]: the route table and the middleware that logs, counts and renders errors.
//! - [`error`]: [`ApiError`](error::ApiError), the Quay-shaped error body of the admin API.
//! - [`auth`]: who is calling the admin API and what they may touch.
//! - [`extract`]: request parsing whose failures become clear 4xx answers.

pub mod auth;
pub mod certs;
pub mod error;
pub mod extract;
pub mod listener;
pub mod router;

/// The peer address of the connection a request came on (inserted by the listener).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);
