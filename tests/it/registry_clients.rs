//! skopeo and podman push and pull through the registries people run: Debian's distribution
//! 2.8 and distribution 3.1.1 (the `registry:3` image), each trusting nothing but what
//! `fedgate keys registry-cert` prints, and 3.1.1 also with a `jwks` file from
//! `fedgate keys registry-jwks`. The 3.1.1 tests need the optional tool that builds it and
//! skip, saying so, without it.

use std::sync::Arc;

use fedgate::clock::SystemClock;

use crate::harness::issuer::Issuer;
use crate::harness::registry::{
    Distribution, Podman, Registry, TokenAuth, Trust, assert_push_refused, keys_verb, oci_image,
    pulled_content, registry_cert, registry3_or_skip,
};
use crate::harness::{Backend, Gateway};
use crate::registry::{acme, minted};

/// How the registry is told to trust fedgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `rootcertbundle` = `keys registry-cert`; tokens carry `x5c` (the default).
    Bundle,
    /// `jwks` = `keys registry-jwks`, no bundle; `registry.token_x5c = false`.
    Jwks,
}

/// The writer pushes and pulls with skopeo and with podman, each with a token fresh from the
/// exchange; the read-only robot pulls but cannot push.
async fn push_and_pull(distribution: Distribution, mode: Mode) {
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |c| {
        c.registry.token_x5c = mode == Mode::Bundle;
    })
    .await;
    acme(&gw, &issuer).await;
    let trust = match mode {
        Mode::Bundle => Trust::Bundle(registry_cert(&gw)),
        Mode::Jwks => Trust::Jwks(keys_verb(&gw, "registry-jwks")),
    };
    let name = format!("{} ({mode:?})", distribution.name());
    let registry = Registry::start_with(distribution, TokenAuth::of(&gw), trust).await;
    let work = tempfile::tempdir().unwrap();
    let image = oci_image(work.path(), "pushed by skopeo");

    // skopeo
    let writer = minted(&gw, &issuer, "acme+writer").await;
    let app = registry.image("acme/app", "skopeo");
    registry
        .skopeo_copy(&image, &app, "acme+writer", &writer)
        .unwrap_or_else(|e| panic!("{name}: skopeo push: {e}\nregistry: {}", registry.log()));
    let reader = minted(&gw, &issuer, "acme+reader").await;
    let pulled = work.path().join("pulled");
    registry
        .skopeo_copy(
            &app,
            &format!("oci:{}:copy", pulled.display()),
            "acme+reader",
            &reader,
        )
        .unwrap_or_else(|e| panic!("{name}: skopeo pull: {e}\nregistry: {}", registry.log()));
    assert_eq!(pulled_content(&pulled), "pushed by skopeo");
    assert_push_refused(
        || {
            registry.skopeo_copy(
                &image,
                &registry.image("acme/app", "reader"),
                "acme+reader",
                &reader,
            )
        },
        &format!("{name}: a read-only robot pushes"),
    );

    // podman: log in with a token from the exchange, push, forget the image, pull it back.
    let podman = Podman::default();
    let id = podman.load_image("pushed by podman");
    let remote = format!("{}/acme/app:podman", registry.addr);
    podman.run(&["tag", &id, &remote]).unwrap();
    let writer = minted(&gw, &issuer, "acme+writer").await;
    podman
        .login(&registry.addr, "acme+writer", &writer)
        .unwrap_or_else(|e| panic!("{name}: podman login: {e}"));
    podman
        .run(&["push", "--tls-verify=false", &remote])
        .unwrap_or_else(|e| panic!("{name}: podman push: {e}\nregistry: {}", registry.log()));
    podman.run(&["rmi", "--force", &id]).unwrap();
    assert!(podman.image_id(&remote).is_err(), "the local copy is gone");
    let reader = minted(&gw, &issuer, "acme+reader").await;
    podman
        .login(&registry.addr, "acme+reader", &reader)
        .unwrap();
    podman
        .run(&["pull", "--tls-verify=false", &remote])
        .unwrap_or_else(|e| panic!("{name}: podman pull: {e}\nregistry: {}", registry.log()));
    assert_eq!(
        podman.image_id(&remote).unwrap(),
        id,
        "{name}: the same image came back"
    );
    let other = format!("{}/acme/app:by-reader", registry.addr);
    podman.run(&["tag", &id, &other]).unwrap();
    assert_push_refused(
        || podman.run(&["push", "--tls-verify=false", &other]),
        &format!("{name}: a read-only robot pushes with podman"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_2_8_with_registry_cert() {
    push_and_pull(Distribution::Debian2, Mode::Bundle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_3_1_1_with_registry_cert() {
    if let Some(binary) = registry3_or_skip("distribution_3_1_1_with_registry_cert") {
        push_and_pull(Distribution::V3(binary.to_path_buf()), Mode::Bundle).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_3_1_1_with_registry_jwks() {
    if let Some(binary) = registry3_or_skip("distribution_3_1_1_with_registry_jwks") {
        push_and_pull(Distribution::V3(binary.to_path_buf()), Mode::Jwks).await;
    }
}
