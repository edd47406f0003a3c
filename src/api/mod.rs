//! The HTTP endpoints, one file per resource. Handlers take plain extractors and return
//! `Result<_, ApiError>`; routing lives in `http::router`.

pub mod avatar;
pub mod discovery;
pub mod entities;
pub mod exchange;
pub mod federation;
pub mod federation_test;
pub mod health;
pub mod oauth_form;
pub mod organization;
pub mod permissions;
pub mod registry_auth;
pub mod registry_oauth;
pub mod robots;
pub mod sts;
pub mod user;
pub mod well_known;
