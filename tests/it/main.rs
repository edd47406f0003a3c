//! The integration tests: one binary, real servers. Tests that depend on the database run
//! against both SQLite and PostgreSQL (see `on_both_databases!`).

mod harness;

mod authz;
mod binary;
mod change_log;
mod claims;
mod deploy;
mod exchange;
mod federation;
mod issuers;
mod listener;
mod lockout;
mod memory;
mod permissions;
mod properties;
mod registry;
mod registry_limits;
mod replicas;
mod robots;
