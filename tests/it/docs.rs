//! The documentation a user reads stays true to the code: every route of the router has a
//! section in `docs/api.md`, and every endpoint documented there exists.

use std::collections::BTreeSet;

use crate::harness::{Backend, Gateway, served_endpoints};

/// Every `` `METHOD /path` `` named in a heading of `docs/api.md`.
fn documented_endpoints() -> BTreeSet<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md");
    let text = std::fs::read_to_string(path).expect("docs/api.md exists");
    let mut found = BTreeSet::new();
    for heading in text.lines().filter(|l| l.starts_with('#')) {
        for (i, quoted) in heading.split('`').enumerate() {
            if i % 2 == 0 {
                continue; // outside backticks
            }
            if let Some((method, path)) = quoted.split_once(' ')
                && method.chars().all(|c| c.is_ascii_uppercase())
                && path.starts_with('/')
            {
                found.insert((method.to_string(), path.to_string()));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented_and_every_documented_endpoint_exists() {
    let gateway = Gateway::start(Backend::Sqlite).await;
    let documented = documented_endpoints();
    let served = served_endpoints(&gateway).await;
    assert!(served.len() > 20, "the router lists its routes: {served:?}");
    let undocumented: Vec<_> = served.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes without a heading in docs/api.md: {undocumented:?}"
    );
    // The metrics page is served on its own listener, outside the public router.
    let metrics = ("GET".to_string(), "/metrics".to_string());
    let stale: Vec<_> = documented
        .difference(&served)
        .filter(|e| **e != metrics)
        .collect();
    assert!(
        stale.is_empty(),
        "docs/api.md documents endpoints the router does not serve: {stale:?}"
    );
    assert!(documented.contains(&metrics), "/metrics is documented");
}

#[test]
fn every_configuration_key_is_documented() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
    let text = std::fs::read_to_string(path).expect("docs/configuration.md exists");
    let defaults = toml::Table::try_from(fedgate::config::Config::default()).unwrap();
    let mut keys = 0;
    for (section, table) in &defaults {
        for key in table.as_table().expect("sections are tables").keys() {
            keys += 1;
            if fedgate::config::FILE_ONLY_KEYS.contains(&(section.as_str(), key.as_str())) {
                // An array of tables: a row saying it is file-only, and a row per key of its
                // tables, `section.key[].name` (no environment variable can set them).
                let row = format!("| `{section}.{key}` |");
                assert!(
                    text.lines()
                        .any(|line| line.starts_with(&row) && line.contains("file only")),
                    "docs/configuration.md has no row for {section}.{key} saying it is file only"
                );
                let sample = fedgate::oidc::trust::IssuerTrust::default();
                for name in toml::Table::try_from(sample).unwrap().keys() {
                    let row = format!("| `{section}.{key}[].{name}` |");
                    assert!(
                        text.lines().any(|line| line.starts_with(&row)),
                        "docs/configuration.md has no row for {section}.{key}[].{name}"
                    );
                }
                continue;
            }
            let row = format!("| `{section}.{key}` |");
            let env = format!("`FEDGATE_{section}_{key}`").to_uppercase();
            let documented = text
                .lines()
                .any(|line| line.starts_with(&row) && line.contains(&env));
            assert!(
                documented,
                "docs/configuration.md has no row for {section}.{key} naming {env}"
            );
        }
    }
    assert!(keys > 25, "{keys} keys");
}
