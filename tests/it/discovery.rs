//! `GET /api/v1/discovery`: the OpenAPI document lists exactly the routes the router serves,
//! and a real validator (openapi-spec-validator, from PyPI) accepts it.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::harness::{Backend, Gateway, python, served_endpoints};

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

async fn document(gateway: &Gateway) -> Value {
    // Anonymous, as Quay serves its Swagger document.
    let reply = gateway.call("GET", "/api/v1/discovery", None, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()
}

/// Every `(METHOD, path)` the document describes.
fn described(document: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                found.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_lists_every_route_the_router_serves() {
    let gateway = Gateway::start(Backend::Sqlite).await;
    let document = document(&gateway).await;
    let served = served_endpoints(&gateway).await;
    let described = described(&document);
    assert!(served.len() > 30, "{served:?}");
    assert_eq!(
        described.difference(&served).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "described but not served"
    );
    assert_eq!(
        served.difference(&described).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "served but not described"
    );

    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["servers"][0]["url"], gateway.url);
    // The caller's own robots need `user:admin`, an organization's `org:admin`, and the path
    // parameters are the route's own.
    let own = &document["paths"]["/api/v1/user/robots/{short}"]["put"];
    assert_eq!(own["operationId"], "createUserRobot");
    assert_eq!(own["security"][0]["api_token"][0], "user:admin");
    assert_eq!(own["parameters"].as_array().unwrap().len(), 1, "{own}");
    assert_eq!(own["parameters"][0]["name"], "short");
    let org = &document["paths"]["/api/v1/organization/{org}/robots/{short}"]["put"];
    assert_eq!(org["operationId"], "createOrgRobot");
    assert_eq!(org["security"][0]["api_token"][0], "org:admin");
    assert_eq!(org["parameters"].as_array().unwrap().len(), 2, "{org}");
    // Every admin operation says how to authenticate.
    for (method, path) in &described {
        let operation = &document["paths"][path][method.to_lowercase()];
        if path.starts_with("/api/v1/") && path != "/api/v1/discovery" {
            assert!(operation["security"].is_array(), "{method} {path}");
        }
    }
}

/// Runs openapi-spec-validator on `document`; `Ok` or its complaint.
fn validate(validator: &Path, document: &Value, dir: &Path) -> Result<(), String> {
    let file = dir.join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(document).unwrap()).unwrap();
    let out = Command::new(validator)
        .arg(&file)
        .output()
        .expect("run openapi-spec-validator");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(said.chars().take(2000).collect())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_validates_as_openapi() {
    let test = "discovery::the_document_validates_as_openapi";
    let Some(validator) = python::tool("openapi-spec-validator", test) else {
        return;
    };
    let gateway = Gateway::start(Backend::Sqlite).await;
    let document = document(&gateway).await;
    let dir = tempfile::tempdir().unwrap();
    validate(&validator, &document, dir.path()).expect("the document is valid OpenAPI");

    // The validator does validate: the same document with a reference to a schema it lacks,
    // or two operations sharing an id, is refused.
    let mut dangling = document.clone();
    dangling["components"]["schemas"]
        .as_object_mut()
        .unwrap()
        .remove("RobotView");
    let complaint = validate(&validator, &dangling, dir.path()).unwrap_err();
    assert!(complaint.contains("RobotView"), "{complaint}");
    let mut duplicate = document.clone();
    duplicate["paths"]["/healthz"]["get"]["operationId"] = "readyz".into();
    let complaint = validate(&validator, &duplicate, dir.path()).unwrap_err();
    assert!(complaint.contains("readyz"), "{complaint}");
}
