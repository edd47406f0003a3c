//! The integration tests: one binary, real servers. Tests that depend on the database run
//! against both SQLite and PostgreSQL (see `on_both_databases!`).

mod harness;

mod action;
mod ansible;
mod audit;
mod authz;
mod binary;
mod change_log;
mod claims;
mod claims_tested;
mod credential_helper;
mod deploy;
mod discovery;
mod docs;
mod dry_run;
mod exchange;
mod fail_closed;
mod federation;
mod forged_tokens;
mod issuers;
mod keys;
mod listener;
mod lockout;
mod login;
mod memory;
mod one_node_replays;
mod outbound;
mod permissions;
mod platforms;
mod properties;
mod providers;
mod quay;
mod registry;
mod registry_clients;
mod registry_limits;
mod registry_oauth;
mod replicas;
mod robots;
mod rotation;
mod shared_state;
mod trust;
mod upgrades;
