//! The integration tests: one binary, real servers. Tests that depend on the database run
//! against both SQLite and PostgreSQL (see `on_both_databases!`).

mod harness;

mod authz;
mod binary;
mod deploy;
mod docs;
mod dry_run;
mod exchange;
mod federation;
mod listener;
mod permissions;
mod platforms;
mod providers;
mod registry;
mod replicas;
mod robots;
mod trust;
mod upgrades;
