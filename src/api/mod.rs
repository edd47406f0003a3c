//! The HTTP endpoints, one file per resource. Handlers take plain extractors and return
//! `Result<_, ApiError>`; routing lives in `http::router`.

pub mod exchange;
pub mod federation;
pub mod federation_test;
pub mod health;
pub mod permissions;
pub mod registry_auth;
pub mod robots;
pub mod sts;
pub mod well_known;
