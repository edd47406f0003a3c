//! The audit lines an operator reads (target `audit`; README "Observability", docs/api.md):
//! one per exchange and per registry token request, naming the robot, the result and the
//! client, and a minted or registry token only by its SHA-256. Read from `fedgate serve`'s own
//! JSON log, as a log pipeline would.

use fedgate::tokens::sha256_hex;
use serde_json::Value;

use crate::harness::issuer::Issuer;
use crate::harness::replica::{Replica, admin};
use crate::harness::send;
use crate::replicas::{acme, deployment, exchange, github};

/// The log's audit lines of `kind`, as JSON objects.
fn audit_lines(log: &str, kind: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["target"] == "audit" && line["kind"] == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lines_name_the_robot_the_result_and_the_client_and_no_secret() {
    let issuer = Issuer::rsa().await;
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}/fedgate.db", dir.path().display());
    let env = deployment(&database, None, &issuer, &dir.path().join("keys"));
    admin(&env, &["migrate"]);
    let gw = Replica::start(&env, dir.path(), "audit").await;
    let api_token = acme(&env, &gw, &issuer).await;

    let jwt = github(&issuer);
    let minted = exchange(&gw.url, "acme+ci", &jwt).await;
    assert_eq!(minted.status, 200, "{}", minted.text);
    let robot_token = minted.json()["token"].as_str().unwrap().to_string();
    let replayed = exchange(&gw.url, "acme+ci", &jwt).await;
    assert_eq!(replayed.status, 401, "{}", replayed.text);

    let login = async |password: &str| {
        send(
            reqwest::Client::new()
                .get(format!(
                    "{}/v2/auth?service=fedgate.test&client_id=audit-test&scope=repository:acme/app:pull",
                    gw.url
                ))
                .basic_auth("acme+ci", Some(password)),
        )
        .await
    };
    let granted = login(&robot_token).await;
    assert_eq!(granted.status, 200, "{}", granted.text);
    let registry_token = granted.json()["token"].as_str().unwrap().to_string();
    let wrong = format!("{}x", &robot_token[..robot_token.len() - 1]);
    assert_eq!(login(&wrong).await.status, 401);
    let other_service = send(
        reqwest::Client::new()
            .get(format!("{}/v2/auth?service=registry.other", gw.url))
            .basic_auth("acme+ci", Some(&robot_token)),
    )
    .await;
    assert_eq!(other_service.status, 400, "{}", other_service.text);

    let log = gw.logs();
    let exchanges = audit_lines(&log, "exchange");
    let results: Vec<_> = exchanges
        .iter()
        .map(|l| (l["result"].clone(), l["error_code"].clone()))
        .collect();
    assert_eq!(
        results,
        [
            ("ok".into(), "".into()),
            ("refused".into(), "replayed".into())
        ],
        "{exchanges:#?}"
    );
    let ok = &exchanges[0];
    assert_eq!(ok["robot"], "acme+ci", "{ok}");
    assert_eq!(ok["issuer"], issuer.url.as_str(), "{ok}");
    assert_eq!(ok["client"], "127.0.0.1", "{ok}");
    assert_eq!(
        ok["token_sha256"],
        sha256_hex(robot_token.as_bytes()),
        "{ok}"
    );

    let logins = audit_lines(&log, "registry_token");
    assert_eq!(logins.len(), 3, "{logins:#?}");
    let (ok, refused, bad) = (&logins[0], &logins[1], &logins[2]);
    assert_eq!(ok["robot"], "acme+ci", "{ok}");
    assert_eq!(ok["result"], "ok", "{ok}");
    assert_eq!(ok["client"], "127.0.0.1", "{ok}");
    assert_eq!(ok["client_id"], "audit-test", "{ok}");
    assert_eq!(
        ok["token_sha256"],
        sha256_hex(registry_token.as_bytes()),
        "{ok}"
    );
    assert_eq!(
        ok["access"], "",
        "the robot holds no role on acme/app: {ok}"
    );
    assert_eq!(refused["robot"], "acme+ci", "{refused}");
    assert_eq!(refused["result"], "refused", "{refused}");
    assert_eq!(refused["error_code"], "unauthorized", "{refused}");
    assert_eq!(refused["client_id"], "audit-test", "{refused}");
    assert_eq!(bad["error_code"], "bad_request", "{bad}");

    for (what, secret) in [
        ("the identity token", jwt.as_str()),
        ("the minted token", robot_token.as_str()),
        ("the wrong password", wrong.as_str()),
        ("the registry token", registry_token.as_str()),
        ("the API token", api_token.as_str()),
    ] {
        assert!(!log.contains(secret), "{what} reached the log");
    }
    for (result, count) in [("ok", 1.0), ("unauthorized", 1.0), ("bad_request", 1.0)] {
        let series = format!("fedgate_registry_tokens_total{{result=\"{result}\"}}");
        assert_eq!(gw.metric(&series).await, Some(count), "{series}");
    }
}
