//! The listener and router edges: TLS, timeouts, the connection cap, unknown routes and
//! methods, readiness.

use std::sync::Arc;
use std::time::Duration;

use fedgate::config::Config;
use fedgate::http::certs::{CHECK_EVERY, ReloadingCert};
use fedgate::http::listener::{ServeOptions, load_tls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::tls::TestCa;
use crate::harness::{Backend, Gateway, database_url};

async fn gateway(options: ServeOptions) -> Gateway {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = Config::default();
    config.storage.database_url = database_url(Backend::Sqlite, dir.path()).await;
    config.keys.dir = dir.path().join("keys");
    Gateway::serve(config, dir, options).await
}

#[tokio::test]
async fn serves_https_with_the_configured_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();

    let tls = load_tls(&cert_path, &key_path).unwrap();
    let gw = gateway(ServeOptions {
        tls: Some(tls),
        ..ServeOptions::default()
    })
    .await;
    assert!(gw.url.starts_with("https://"));
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    let reply = client
        .get(format!("{}/healthz", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let plain = reqwest::get(gw.url.replace("https://", "http://") + "/healthz").await;
    assert!(
        plain.is_err(),
        "plain HTTP is not answered on a TLS listener"
    );

    let missing = load_tls(&dir.path().join("nope.pem"), &key_path).unwrap_err();
    assert!(missing.contains("server.tls_cert"), "{missing}");
    std::fs::write(dir.path().join("garbage.pem"), "not pem").unwrap();
    let garbage = load_tls(&cert_path, &dir.path().join("garbage.pem")).unwrap_err();
    assert!(garbage.contains("server.tls_key"), "{garbage}");
}

/// A renewed certificate written over the files is served without a restart; a key that
/// does not match the certificate (a renewal half written) is refused and the old pair stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestCa::new("first CA");
    let (_, cert_path, key_path) = first.write_into(dir.path(), &["127.0.0.1"]);
    let gw = gateway(ServeOptions {
        tls: Some(load_tls(&cert_path, &key_path).unwrap()),
        ..ServeOptions::default()
    })
    .await;
    let trusting = |ca: &TestCa| {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap()])
            .build()
            .unwrap()
    };
    let healthz = format!("{}/healthz", gw.url);
    assert_eq!(
        trusting(&first)
            .get(&healthz)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Half written: the new certificate with the old key is refused, the old pair stays.
    let second = TestCa::new("second CA");
    let (cert, key) = second.leaf(&["127.0.0.1"]);
    let watcher = ReloadingCert::load(
        &cert_path,
        &key_path,
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .unwrap();
    std::fs::write(&cert_path, &cert).unwrap();
    let mismatch = watcher.reload_if_changed().unwrap_err();
    assert!(mismatch.contains("tls_cert/tls_key"), "{mismatch}");

    std::fs::write(&key_path, &key).unwrap();
    assert!(
        watcher.reload_if_changed().unwrap(),
        "a consistent pair loads"
    );
    let renewed = trusting(&second);
    let mut served = false;
    for _ in 0..(4 * CHECK_EVERY.as_secs() * 10) {
        if renewed.get(&healthz).send().await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        served,
        "the renewed certificate is served within a few checks"
    );
    assert!(
        trusting(&first).get(&healthz).send().await.is_err(),
        "the old certificate is no longer served"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_get_api_errors() {
    let gw = gateway(ServeOptions::default()).await;
    let missing = gw.call("GET", "/api/v1/nope", None, None).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error_type"], "not_found");
    assert!(
        missing.json()["type"]
            .as_str()
            .unwrap()
            .starts_with(&gw.url)
    );

    let patch = gw.call("PATCH", "/api/v1/user/robots/ci", None, None).await;
    assert_eq!(patch.status, 405);
    assert_eq!(patch.headers["allow"], "GET,HEAD,PUT,DELETE");
    assert_eq!(patch.json()["status"], 405);

    let head = gw
        .client
        .head(format!("{}/healthz", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.text().await.unwrap(), "");
}

#[tokio::test]
async fn readiness_follows_the_database() {
    let gw = gateway(ServeOptions::default()).await;
    let ready = gw.call("GET", "/readyz", None, None).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["database"], "ok");
    gw.state.store.close().await;
    let unready = gw.call("GET", "/readyz", None, None).await;
    assert_eq!(unready.status, 503);
    assert_eq!(
        gw.call("GET", "/healthz", None, None).await.status,
        200,
        "alive all the same"
    );
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let gw = gateway(ServeOptions {
        header_read_timeout: Duration::from_millis(300),
        ..ServeOptions::default()
    })
    .await;
    let mut stream = TcpStream::connect(gw.config.server.listen).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the gateway closes a connection whose headers never finish"
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let gw = gateway(ServeOptions {
        max_connections: 1,
        ..ServeOptions::default()
    })
    .await;
    let addr = gw.config.server.listen;
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut first = TcpStream::connect(addr).await.unwrap();
    first.write_all(request).await.unwrap();
    let mut buf = [0u8; 12];
    first.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");

    let mut second = TcpStream::connect(addr).await.unwrap();
    second.write_all(request).await.unwrap();
    let waiting =
        tokio::time::timeout(Duration::from_millis(500), second.read_exact(&mut buf)).await;
    assert!(
        waiting.is_err(),
        "a second connection is not served while the first holds the only slot"
    );
    drop(first);
    tokio::time::timeout(Duration::from_secs(10), second.read_exact(&mut buf))
        .await
        .expect("served once the slot frees")
        .unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
}
