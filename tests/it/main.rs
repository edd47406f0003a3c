//! The integration tests: one binary, real servers. Tests that depend on the database run
//! against both SQLite and PostgreSQL (see `on_both_databases!`).

mod harness;

mod action;
mod authz;
mod binary;
mod credential_helper;
mod deploy;
mod exchange;
mod federation;
mod listener;
mod login;
mod permissions;
mod registry;
mod replicas;
mod robots;
