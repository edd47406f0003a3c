//! The deployment files under `deploy/` say what the code accepts: every FEDGATE_* variable is
//! a real configuration key with a valid value, the Kubernetes objects reference each other
//! and probe the right paths, and the compose services agree with fedgate's configuration.

use fedgate::config::Config;
use yaml_rust2::{Yaml, YamlLoader};

fn read(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn yaml(path: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Loads a configuration from the embedded defaults and these FEDGATE_* variables.
fn config_from(vars: &[(String, String)]) -> Config {
    Config::load(None, vars.iter().cloned()).unwrap_or_else(|e| panic!("{vars:?}: {e}"))
}

fn str_of(y: &Yaml) -> String {
    match y {
        Yaml::String(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

#[test]
fn kubernetes_manifests_are_consistent() {
    let docs = yaml("deploy/kubernetes/fedgate.yaml");
    let by_kind = |kind: &str| -> &Yaml {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(kind))
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let config_map = by_kind("ConfigMap");
    let toml = config_map["data"]["fedgate.toml"].as_str().unwrap();
    let config = Config::from_toml(toml).expect("the ConfigMap's fedgate.toml is valid");
    assert_eq!(config.log.format, "json");

    let deployment = by_kind("Deployment");
    assert_eq!(deployment["spec"]["replicas"].as_i64(), Some(2));
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    let ports: Vec<i64> = container["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(|p| p["containerPort"].as_i64())
        .collect();
    assert!(ports.contains(&i64::from(config.server.listen.port())));
    assert!(ports.contains(&i64::from(config.server.metrics_addr().unwrap().port())));

    // Env: FEDGATE_CONFIG points at the mounted ConfigMap; the rest are real keys.
    let mut vars = Vec::new();
    for env in container["env"].as_vec().unwrap() {
        let name = env["name"].as_str().unwrap().to_string();
        let value = match name.as_str() {
            "FEDGATE_CONFIG" => {
                assert!(env["value"].as_str().unwrap().ends_with("/fedgate.toml"));
                continue;
            }
            "FEDGATE_STORAGE_DATABASE_URL" => "postgres://fedgate:pw@postgres/fedgate".to_string(),
            "FEDGATE_STORAGE_REDIS_URL" => "redis://redis:6379".to_string(),
            _ => str_of(&env["value"]),
        };
        vars.push((name, value));
    }
    let with_env = config_from(&vars);
    assert!(
        !with_env.storage.redis_url.is_empty(),
        "replicas share Redis"
    );

    // Mounts: the keys Secret lands on keys.dir, the ConfigMap on FEDGATE_CONFIG's directory.
    let mounts = container["volumeMounts"].as_vec().unwrap();
    let mount_of = |volume: &str| {
        mounts
            .iter()
            .find(|m| m["name"].as_str() == Some(volume))
            .unwrap()["mountPath"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(mount_of("keys"), config.keys.dir.display().to_string());
    let volumes = pod["volumes"].as_vec().unwrap();
    let secret = volumes
        .iter()
        .find(|v| v["name"].as_str() == Some("keys"))
        .unwrap();
    let secret_name = secret["secret"]["secretName"].as_str().unwrap();
    assert_eq!(
        by_kind("Secret")["metadata"]["name"].as_str(),
        Some(secret_name)
    );
    let config_volume = volumes
        .iter()
        .find(|v| v["name"].as_str() == Some("config"))
        .unwrap();
    assert_eq!(
        config_volume["configMap"]["name"].as_str(),
        config_map["metadata"]["name"].as_str()
    );
    let service = by_kind("Service");
    assert_eq!(service["spec"]["selector"]["app"].as_str(), Some("fedgate"));
}

#[test]
fn compose_services_agree_with_the_configuration() {
    let doc = &yaml("deploy/compose.yaml")[0];
    let services = doc["services"].as_hash().unwrap();
    let names: Vec<String> = services.keys().map(str_of).collect();
    for needed in ["postgres", "redis", "fedgate", "registry"] {
        assert!(names.iter().any(|n| n == needed), "service {needed}");
    }
    let env: Vec<(String, String)> = doc["services"]["fedgate"]["environment"]
        .as_hash()
        .expect("fedgate's environment")
        .iter()
        .map(|(k, v)| (str_of(k), str_of(v)))
        .collect();
    let config = config_from(&env);
    let host_of = |url: &str| {
        url::Url::parse(url)
            .unwrap()
            .host_str()
            .unwrap()
            .to_string()
    };
    assert!(
        names.contains(&host_of(&config.storage.database_url)),
        "database host is a service"
    );
    assert!(
        names.contains(&host_of(&config.storage.redis_url)),
        "redis host is a service"
    );
    let postgres = &doc["services"]["postgres"]["environment"];
    let db_url = url::Url::parse(&config.storage.database_url).unwrap();
    assert_eq!(postgres["POSTGRES_USER"].as_str(), Some(db_url.username()));
    assert_eq!(postgres["POSTGRES_PASSWORD"].as_str(), db_url.password());

    let registry = &doc["services"]["registry"]["environment"];
    assert_eq!(
        registry["REGISTRY_AUTH_TOKEN_ISSUER"].as_str(),
        Some(config.server.public_url.as_str())
    );
    assert_eq!(
        registry["REGISTRY_AUTH_TOKEN_SERVICE"].as_str(),
        Some(config.registry_service().as_str())
    );
    assert_eq!(
        registry["REGISTRY_AUTH_TOKEN_REALM"].as_str(),
        Some(format!("{}/v2/auth", config.server.public_url).as_str())
    );
    for service in ["migrate", "registry-cert"] {
        let other: Vec<(String, String)> = doc["services"][service]["environment"]
            .as_hash()
            .unwrap()
            .iter()
            .map(|(k, v)| (str_of(k), str_of(v)))
            .collect();
        assert_eq!(
            other, env,
            "{service} uses the same configuration as the replicas"
        );
    }
}

#[test]
fn container_and_systemd_set_only_real_keys() {
    let containerfile = read("deploy/Containerfile");
    let mut vars = Vec::new();
    for line in containerfile.lines() {
        for part in line.split_whitespace() {
            let assignment = part.trim_end_matches('\\').split_once('=');
            if let Some((k, v)) = assignment.filter(|(k, _)| k.starts_with("FEDGATE_")) {
                vars.push((k.to_string(), v.to_string()));
            }
        }
    }
    assert!(vars.len() >= 3, "{vars:?}");
    let config = config_from(&vars);
    assert_eq!(config.server.listen.port(), 8080);
    let unit = read("deploy/fedgate.service");
    assert!(
        unit.contains("Environment=FEDGATE_CONFIG=")
            && unit.contains("ExecStart=/usr/local/bin/fedgate serve")
    );
}
