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
async fn connections_beyond_the_cap_wait_for_a_busy_slot() {
    let gw = gateway(ServeOptions {
        max_connections: 1,
        ..ServeOptions::default()
    })
    .await;
    let addr = gw.config.server.listen;
    // The only slot is busy: a request whose body is still coming (the handler waits for it).
    let mut first = TcpStream::connect(addr).await.unwrap();
    first
        .write_all(b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await; // older than any idle grace

    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut buf = [0u8; 12];
    let mut second = TcpStream::connect(addr).await.unwrap();
    second.write_all(request).await.unwrap();
    let waiting =
        tokio::time::timeout(Duration::from_millis(500), second.read_exact(&mut buf)).await;
    assert!(
        waiting.is_err(),
        "a second connection is not served while the first holds the only slot with a request"
    );
    drop(first);
    tokio::time::timeout(Duration::from_secs(10), second.read_exact(&mut buf))
        .await
        .expect("served once the slot frees")
        .unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
}

#[tokio::test]
async fn an_idle_connection_gives_its_slot_to_a_new_one() {
    let gw = gateway(ServeOptions {
        max_connections: 1,
        header_read_timeout: Duration::from_secs(60),
        ..ServeOptions::default()
    })
    .await;
    let addr = gw.config.server.listen;
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut buf = [0u8; 12];
    let mut first = TcpStream::connect(addr).await.unwrap();
    first.write_all(request).await.unwrap();
    first.read_exact(&mut buf).await.unwrap();
    // Kept alive and idle: the next connection gets the slot, and the idle one is closed.
    let mut second = TcpStream::connect(addr).await.unwrap();
    second.write_all(request).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), second.read_exact(&mut buf))
        .await
        .expect("served in the idle connection's place")
        .unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), first.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle connection was closed");
}

/// A request body must arrive in full within the body timeout, however slowly it trickles:
/// the client gets 408 and the connection is freed.
#[tokio::test]
async fn slow_bodies_are_cut_off() {
    let gw = gateway(ServeOptions {
        body_timeout: Duration::from_secs(2),
        ..ServeOptions::default()
    })
    .await;
    {
        let path = "/oauth2/token";
        let mut stream = TcpStream::connect(gw.config.server.listen).await.unwrap();
        stream
            .write_all(
                format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        // One byte a second: each read makes progress, none brings the end.
        let trickle = async {
            for _ in 0..30 {
                if stream.write_all(b"a").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                let mut buf = [0u8; 12];
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_millis(10), stream.peek(&mut buf)).await
                    && n > 0
                {
                    let mut answer = vec![0u8; 512];
                    let n = stream.read(&mut answer).await.unwrap();
                    return String::from_utf8_lossy(&answer[..n]).to_string();
                }
            }
            String::new()
        };
        let answer = tokio::time::timeout(Duration::from_secs(20), trickle)
            .await
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
    }
}

/// The HTTP/2 connection preface and an empty SETTINGS frame: all a client must send before
/// hyper answers with its own SETTINGS, after which the connection waits for requests.
const H2_PREFACE_AND_SETTINGS: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Lets this process hold the sockets of the connection tests (their ends and the gateway's,
/// while other tests run too): raises the soft limit on open files toward 20,000 (the hard
/// limit too when running as root), and fails clearly below 10,000.
fn allow_open_files() {
    const WANTED: u64 = 20_000;
    const NEEDED: u64 = 10_000;
    let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
    if soft < WANTED {
        let hard = if hard < WANTED && crate::harness::is_root() {
            WANTED
        } else {
            hard
        };
        let _ = rlimit::Resource::NOFILE.set(WANTED.min(hard), hard);
    }
    let (soft, _) = rlimit::Resource::NOFILE.get().unwrap();
    assert!(
        soft >= NEEDED,
        "the connection tests need {NEEDED} open files; the limit is {soft} (raise it with ulimit -n)"
    );
}

/// One attacking connection from `source`: it sends nothing, or only the HTTP/2 preface, then
/// waits for the gateway to close it. Resolves to when it was closed.
async fn hold_open(
    gateway: std::net::SocketAddr,
    source: std::net::IpAddr,
    h2_preface: bool,
) -> tokio::task::JoinHandle<std::time::Instant> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((source, 0).into()).unwrap();
    let mut stream = socket.connect(gateway).await.unwrap();
    if h2_preface {
        stream.write_all(H2_PREFACE_AND_SETTINGS).await.unwrap();
    }
    tokio::spawn(async move {
        let mut buf = [0u8; 256];
        // Whatever the gateway sends (its SETTINGS) is read and dropped, until EOF or reset.
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
        std::time::Instant::now()
    })
}

/// Issue 12, item 2: 4,096 connections that send nothing or only the HTTP/2 preface, from 16
/// addresses, fill every slot of the default connection cap. `/healthz` from another address
/// still answers within a second, and every one of them is closed once the time to deliver a
/// request is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_preface_only_connections_cannot_take_every_slot() {
    allow_open_files();
    // Long enough for the 4,096 connections to be made on a busy machine before any is due.
    let timeout = Duration::from_secs(15);
    let gw = gateway(ServeOptions {
        header_read_timeout: timeout,
        ..ServeOptions::default()
    })
    .await;
    let addr = gw.config.server.listen;
    let (sources, per_source) = (16u8, 256usize);
    assert_eq!(
        usize::from(sources) * per_source,
        ServeOptions::default().max_connections,
        "the attack holds as many connections as the gateway allows"
    );
    let opened = std::time::Instant::now();
    let mut held = Vec::new();
    for i in 0..usize::from(sources) * per_source {
        let source = std::net::IpAddr::from([127, 0, 0, 2 + (i % usize::from(sources)) as u8]);
        held.push(hold_open(addr, source, i % 2 == 1).await);
        // The gateway shares this runtime: let it accept before its kernel queue (1,024
        // connections) overflows and connections the attack believes open are dropped.
        if i % 64 == 63 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
    let established = opened.elapsed();
    let closed = held.iter().filter(|h| h.is_finished()).count();
    assert_eq!(
        closed, 0,
        "all 4,096 are open while /healthz is asked (they took {established:?} to open)"
    );

    let client = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 1]))
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let health = client.get(format!("{}/healthz", gw.url)).send().await;
    assert!(
        health.as_ref().is_ok_and(|r| r.status() == 200),
        "/healthz within 1 s while 4,096 idle connections are open: {health:?}"
    );

    // Every one is closed once its time to send a request is up (generously bounded).
    let closed_at = tokio::time::timeout(timeout * 3, futures_join(held))
        .await
        .expect("the gateway closes connections that never send a request");
    let latest = closed_at.iter().max().unwrap().duration_since(opened);
    assert!(
        latest <= established + timeout * 3,
        "closed after the timeout: {latest:?}"
    );
}

async fn futures_join(
    handles: Vec<tokio::task::JoinHandle<std::time::Instant>>,
) -> Vec<std::time::Instant> {
    let mut done = Vec::with_capacity(handles.len());
    for handle in handles {
        done.push(handle.await.unwrap());
    }
    done
}

/// One address cannot hold more than its share of the slots: beyond the per-address cap, its
/// new connections are closed at once, and another address is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_more_than_its_share() {
    allow_open_files();
    let gw = gateway(ServeOptions {
        header_read_timeout: Duration::from_secs(60),
        ..ServeOptions::default()
    })
    .await;
    let addr = gw.config.server.listen;
    let source = std::net::IpAddr::from([127, 0, 0, 9]);
    let cap = ServeOptions::default().max_connections_per_ip;
    let mut held = Vec::new();
    for _ in 0..cap + 100 {
        held.push(hold_open(addr, source, false).await);
    }
    // Those beyond the cap are closed right away; those within it stay open.
    let settled = async {
        while held.iter().filter(|h| h.is_finished()).count() < 100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), settled)
        .await
        .expect("the connections beyond the cap are closed");
    let open = held.iter().filter(|h| !h.is_finished()).count();
    assert_eq!(open, cap, "one address holds at most its share");
    let reply = gw.call("GET", "/healthz", None, None).await;
    assert_eq!(reply.status, 200);
}

/// One HTTP/2 frame as read off the wire: its type and stream.
async fn read_frame(stream: &mut TcpStream) -> Option<(u8, u32)> {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.ok()?;
    let stream_id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Some((head[3], stream_id))
}

/// `GET /healthz` on stream 1 as an HTTP/2 HEADERS frame (HPACK: indexed `:method GET` and
/// `:scheme http`, literal `:path` and `:authority`).
fn h2_get_healthz() -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x44, 8];
    block.extend_from_slice(b"/healthz");
    block.extend_from_slice(&[0x41, 1, b'x']);
    let mut frame = vec![0, 0, block.len() as u8, 0x1, 0x5, 0, 0, 0, 1];
    frame.extend_from_slice(&block);
    frame
}

/// HTTP/2: after its request the connection is pinged while it stays open, and closed once it
/// has been idle for the header timeout (at the socket: no GOAWAY, as for an idle HTTP/1.1
/// connection; nothing is in flight to lose).
#[tokio::test]
async fn http2_connections_are_pinged_and_closed_when_idle() {
    let gw = gateway(ServeOptions {
        header_read_timeout: Duration::from_secs(3),
        http2_keep_alive_interval: Duration::from_millis(300),
        http2_keep_alive_timeout: Duration::from_secs(30),
        ..ServeOptions::default()
    })
    .await;
    let mut stream = TcpStream::connect(gw.config.server.listen).await.unwrap();
    stream.write_all(H2_PREFACE_AND_SETTINGS).await.unwrap();
    stream.write_all(&h2_get_healthz()).await.unwrap();
    let frames = tokio::time::timeout(Duration::from_secs(30), async {
        let mut frames = Vec::new();
        while let Some(frame) = read_frame(&mut stream).await {
            frames.push(frame);
        }
        frames
    })
    .await
    .expect("the idle HTTP/2 connection is closed");
    let (headers, ping) = (0x1, 0x6);
    assert!(
        frames.contains(&(headers, 1)),
        "the request was answered: {frames:?}"
    );
    let answered = frames.iter().position(|f| *f == (headers, 1)).unwrap();
    assert!(
        frames[answered..].contains(&(ping, 0)),
        "pinged while open: {frames:?}"
    );
}
