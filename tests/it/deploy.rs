//! The deployment files under `deploy/` hold up: what they configure is accepted by the real
//! binary's `config check`, the Kubernetes objects reference each other and roll safely, the
//! image reads the configuration it promises, the systemd unit is hardened (rated by
//! `systemd-analyze security`), and the alert rules and dashboard name metrics `/metrics`
//! really exports (and pass `promtool check rules` where promtool is available).

use std::collections::BTreeSet;
use std::process::Output;
use std::sync::Arc;

use fedgate::clock::{Clock, SystemClock};
use fedgate::config::Config;
use fedgate::http::listener::ServeOptions;
use serde_json::json;
use yaml_rust2::{Yaml, YamlLoader};

use crate::harness::issuer::Issuer;
use crate::harness::replica::fedgate;
use crate::harness::{Backend, Gateway, send};

fn path(relative: &str) -> String {
    format!("{}/{relative}", env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let full = path(relative);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn yaml(relative: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn str_of(y: &Yaml) -> String {
    match y {
        Yaml::String(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .unwrap_or_else(|| panic!("not a list: {y:?}"))
        .iter()
        .map(str_of)
        .collect()
}

/// `fedgate [--config file] config check` with exactly `env` as its FEDGATE_* variables.
fn config_check(config_file: Option<&std::path::Path>, env: &[(String, String)]) -> Output {
    let mut args = Vec::new();
    if let Some(file) = config_file {
        args.extend(["--config".to_string(), file.display().to_string()]);
    }
    args.extend(["config".to_string(), "check".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fedgate(env, &args).output().unwrap()
}

fn accepted(out: &Output) -> Config {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "config check refused: {stderr}");
    Config::from_toml(&String::from_utf8_lossy(&out.stdout)).expect("config check prints TOML")
}

fn sha256_hex(data: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data.as_bytes());
    data_encoding::HEXLOWER.encode(digest.as_ref())
}

#[test]
fn kubernetes_manifests_are_consistent() {
    let docs = yaml("deploy/kubernetes/fedgate.yaml");
    let by_kind = |kind: &str| -> &Yaml {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(kind))
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    assert!(
        !docs.iter().any(|d| d["kind"].as_str() == Some("Secret")),
        "no Secret is declared: re-applying the file would empty it (create them out of band)"
    );

    // The ConfigMap's name carries its content's hash, so an edit rolls the pods.
    let config_map = by_kind("ConfigMap");
    let toml = config_map["data"]["fedgate.toml"].as_str().unwrap();
    let expected_name = format!("fedgate-config-{}", &sha256_hex(toml)[..10]);
    assert_eq!(
        config_map["metadata"]["name"].as_str(),
        Some(expected_name.as_str()),
        "rename the ConfigMap (and the volume that mounts it) after editing it"
    );
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("fedgate.toml");
    std::fs::write(&config_file, toml).unwrap();

    let deployment = by_kind("Deployment");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"].as_i64(), Some(2));
    assert_eq!(
        spec["strategy"]["rollingUpdate"]["maxUnavailable"].as_i64(),
        Some(0)
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault"),
        "the restricted Pod Security Standard requires it"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let spread = pod["topologySpreadConstraints"].as_vec().unwrap();
    assert!(spread.len() >= 2);
    for constraint in spread {
        assert_eq!(
            constraint["labelSelector"]["matchLabels"]["app"].as_str(),
            Some("fedgate")
        );
    }

    let container = &pod["containers"][0];
    let init = &pod["initContainers"][0];
    let image = container["image"].as_str().unwrap();
    let (_, tag) = image.rsplit_once(':').expect("the image has a tag");
    assert_eq!(
        tag,
        env!("CARGO_PKG_VERSION"),
        "a pinned image tag, the package's version"
    );
    assert_eq!(init["image"].as_str(), Some(image));
    assert_eq!(
        strings(&init["args"]),
        ["migrate"],
        "the one migration step"
    );
    assert_eq!(
        strings(&container["args"]),
        ["serve", "--no-migrate"],
        "serve never migrates here"
    );
    assert_eq!(init["env"], container["env"], "both see the same database");
    for c in [container, init] {
        let security = &c["securityContext"];
        assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
        assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
        assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    }
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );

    // The environment the pods get, with the Secret references filled in, passes `config check`.
    let mut vars = Vec::new();
    let mut config_path = None;
    for env in container["env"].as_vec().unwrap() {
        let name = env["name"].as_str().unwrap().to_string();
        let value = match name.as_str() {
            "FEDGATE_CONFIG" => {
                config_path = Some(env["value"].as_str().unwrap().to_string());
                continue;
            }
            "FEDGATE_STORAGE_DATABASE_URL" => {
                "postgres://fedgate:pw@postgres/fedgate?sslmode=verify-full".to_string()
            }
            "FEDGATE_STORAGE_REDIS_URL" => "rediss://redis:6380".to_string(),
            _ => str_of(&env["value"]),
        };
        vars.push((name, value));
    }
    let check = config_check(Some(&config_file), &vars);
    let config = accepted(&check);
    assert!(
        check.stderr.is_empty(),
        "no warning: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(config.log.format, "json");
    assert!(!config.storage.redis_url.is_empty(), "replicas share Redis");
    let ports: Vec<i64> = container["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(|p| p["containerPort"].as_i64())
        .collect();
    assert!(ports.contains(&i64::from(config.server.listen.port())));
    assert!(ports.contains(&i64::from(config.server.metrics_addr().unwrap().port())));

    // Shutdown fits the grace period: preStop, then the drain window, then in-flight requests.
    let pre_stop = strings(&container["lifecycle"]["preStop"]["exec"]["command"]);
    assert_eq!(pre_stop[0], "sleep");
    let pre_stop: u64 = pre_stop[1].parse().unwrap();
    let in_flight = ServeOptions::default().grace_period.as_secs();
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap() as u64;
    assert!(
        grace > pre_stop + config.server.drain_seconds + in_flight,
        "terminationGracePeriodSeconds {grace} leaves no time to finish requests"
    );

    // Mounts: the ConfigMap on FEDGATE_CONFIG's directory, the keys Secret on keys.dir.
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
    assert_eq!(
        format!("{}/fedgate.toml", mount_of("config")),
        config_path.unwrap()
    );
    let volumes = pod["volumes"].as_vec().unwrap();
    let config_volume = volumes
        .iter()
        .find(|v| v["name"].as_str() == Some("config"))
        .unwrap();
    assert_eq!(
        config_volume["configMap"]["name"].as_str(),
        config_map["metadata"]["name"].as_str()
    );
    let keys = volumes
        .iter()
        .find(|v| v["name"].as_str() == Some("keys"))
        .unwrap();
    assert_eq!(keys["secret"]["secretName"].as_str(), Some("fedgate-keys"));
    let header = read("deploy/kubernetes/fedgate.yaml");
    assert!(
        header.contains("kubectl create secret generic fedgate-keys"),
        "the file says how to create the keys Secret"
    );

    let budget = by_kind("PodDisruptionBudget");
    assert_eq!(
        budget["spec"]["selector"]["matchLabels"]["app"].as_str(),
        Some("fedgate")
    );
    assert!(budget["spec"]["maxUnavailable"].as_i64().unwrap() < 2);

    let service = by_kind("Service");
    assert_eq!(service["spec"]["selector"]["app"].as_str(), Some("fedgate"));
    let service_ports: Vec<String> = service["spec"]["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|p| str_of(&p["name"]))
        .collect();

    let monitor = &yaml("deploy/kubernetes/servicemonitor.yaml")[0];
    assert_eq!(monitor["kind"].as_str(), Some("ServiceMonitor"));
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"]["app"],
        service["metadata"]["labels"]["app"]
    );
    for endpoint in monitor["spec"]["endpoints"].as_vec().unwrap() {
        assert!(service_ports.contains(&str_of(&endpoint["port"])));
        assert_eq!(endpoint["path"].as_str(), Some("/metrics"));
    }

    let ingress = &yaml("deploy/kubernetes/ingress.yaml")[0];
    let public = url::Url::parse(&config.server.public_url).unwrap();
    let rule = &ingress["spec"]["rules"][0];
    assert_eq!(
        rule["host"].as_str(),
        public.host_str(),
        "public_url's host"
    );
    assert_eq!(
        strings(&ingress["spec"]["tls"][0]["hosts"]),
        [public.host_str().unwrap()]
    );
    let backend = &rule["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], service["metadata"]["name"]);
    assert!(service_ports.contains(&str_of(&backend["port"]["name"])));
}

/// The image's own configuration file, with `env`, through `config check`.
fn image_config_check(env: &[(String, String)]) -> Output {
    config_check(Some(path("deploy/container/fedgate.toml").as_ref()), env)
}

#[test]
fn compose_services_agree_with_the_configuration() {
    let doc = &yaml("deploy/compose.yaml")[0];
    let services = doc["services"].as_hash().unwrap();
    let names: Vec<String> = services.keys().map(str_of).collect();
    for needed in ["postgres", "redis", "migrate", "fedgate", "registry"] {
        assert!(names.iter().any(|n| n == needed), "service {needed}");
    }
    let env: Vec<(String, String)> = doc["services"]["fedgate"]["environment"]
        .as_hash()
        .expect("fedgate's environment")
        .iter()
        .map(|(k, v)| (str_of(k), str_of(v)))
        .collect();
    // The services run the image, so its configuration file applies under the environment.
    let check = image_config_check(&env);
    let config = accepted(&check);
    let warned = String::from_utf8_lossy(&check.stderr);
    assert!(
        warned.contains("warning: server.public_url http://localhost:8080 is a loopback URL"),
        "the local demo's loopback public_url is flagged, not refused: {warned}"
    );
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
    // From the environment itself: `config check` masks the password.
    let db_url = env
        .iter()
        .find(|(k, _)| k == "FEDGATE_STORAGE_DATABASE_URL")
        .map(|(_, v)| url::Url::parse(v).unwrap())
        .unwrap();
    assert_eq!(postgres["POSTGRES_USER"].as_str(), Some(db_url.username()));
    assert_eq!(postgres["POSTGRES_PASSWORD"].as_str(), db_url.password());

    // Redis keeps replay records across restarts and never evicts them (the replicas test
    // `replay_records_survive_a_redis_restart_with_the_compose_settings` runs these flags).
    let redis = strings(&doc["services"]["redis"]["command"]).join(" ");
    assert!(redis.contains("--appendonly yes"), "{redis}");
    assert!(
        redis.contains("--appendfsync everysec") || redis.contains("--appendfsync always"),
        "{redis}"
    );
    assert!(redis.contains("--maxmemory-policy noeviction"), "{redis}");
    assert!(strings(&doc["services"]["redis"]["volumes"])[0].ends_with(":/data"));
    let grace = str_of(&doc["services"]["fedgate"]["stop_grace_period"]);
    let grace: u64 = grace.trim_end_matches('s').parse().unwrap();
    assert!(grace > config.server.drain_seconds + ServeOptions::default().grace_period.as_secs());

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
    assert_eq!(strings(&doc["services"]["migrate"]["command"]), ["migrate"]);
    assert_eq!(
        strings(&doc["services"]["fedgate"]["command"]),
        ["serve", "--no-migrate"]
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
fn the_image_reads_its_configuration_file_and_nothing_overrides_it() {
    let containerfile = read("deploy/Containerfile");
    let mut env = Vec::new();
    let mut copied = Vec::new();
    for line in containerfile.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("ENV ") {
            env.extend(rest.split_whitespace().map(|kv| {
                let (k, v) = kv.trim_end_matches('\\').split_once('=').unwrap();
                (k.to_string(), v.to_string())
            }));
        }
        if let Some(rest) = line.strip_prefix("COPY ")
            && !rest.starts_with("--from")
        {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            copied.push((parts[0].to_string(), parts[1].to_string()));
        }
    }
    let config_path = env
        .iter()
        .find(|(k, _)| k == "FEDGATE_CONFIG")
        .map(|(_, v)| v.clone())
        .expect("the image names its configuration file");
    assert_eq!(
        env.iter()
            .filter(|(k, _)| k.starts_with("FEDGATE_"))
            .count(),
        1,
        "no baked FEDGATE_ variable overrides a mounted file: {env:?}"
    );
    let (source, _) = copied
        .iter()
        .find(|(_, target)| *target == config_path)
        .expect("the file FEDGATE_CONFIG names is copied into the image");
    assert_eq!(source, "deploy/container/fedgate.toml");
    assert!(containerfile.contains("VOLUME [\"/var/lib/fedgate\"]"));
    assert!(containerfile.contains("CARGO_PROFILE_RELEASE_STRIP=symbols"));

    // Without a public_url the image refuses to start (its listener is 0.0.0.0) ...
    let refused = image_config_check(&[]);
    assert_eq!(refused.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("server.public_url"));
    // ... and with one it serves on every interface, keys and database in the volume.
    let config = accepted(&image_config_check(&[(
        "FEDGATE_SERVER_PUBLIC_URL".into(),
        "https://fedgate.example.com".into(),
    )]));
    assert!(config.server.listen.ip().is_unspecified());
    assert!(config.keys.dir.starts_with("/var/lib/fedgate"));
    assert!(
        config
            .storage
            .database_url
            .starts_with("sqlite:///var/lib/fedgate/")
    );

    let ignored = read(".dockerignore");
    for pattern in ["target/", ".git/", "**/keys/", "**/storage.key", "**/*.p8"] {
        assert!(
            ignored.lines().any(|l| l.trim() == pattern),
            ".dockerignore lacks {pattern}"
        );
    }
}

#[test]
fn the_systemd_unit_is_hardened_and_migrates_before_serving() {
    let unit = read("deploy/fedgate.service");
    let values = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        values("ExecStartPre"),
        ["/usr/local/bin/fedgate migrate"],
        "the one migration step"
    );
    assert_eq!(
        values("ExecStart"),
        ["/usr/local/bin/fedgate serve --no-migrate"]
    );
    assert_eq!(
        values("Environment"),
        ["FEDGATE_CONFIG=/etc/fedgate/fedgate.toml"]
    );
    assert_eq!(
        values("RestartPreventExitStatus"),
        ["64"],
        "no restart loop on a bad configuration"
    );
    let files: usize = values("LimitNOFILE")[0].parse().unwrap();
    assert!(
        files > ServeOptions::default().max_connections + 1024,
        "LimitNOFILE {files} is not above the connection cap"
    );
    // The file the install comment copies to /etc/fedgate passes `config check`.
    accepted(&config_check(
        Some(path("config/fedgate.toml").as_ref()),
        &[],
    ));

    let analyze = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(path("deploy/fedgate.service"))
        .output();
    let Ok(analyze) = analyze else {
        println!("SKIPPED: systemd-analyze is not installed; the unit's exposure was not rated");
        return;
    };
    let text = String::from_utf8_lossy(&analyze.stdout).into_owned()
        + &String::from_utf8_lossy(&analyze.stderr);
    let Some(line) = text.lines().find(|l| l.contains("Overall exposure level")) else {
        println!(
            "SKIPPED: systemd-analyze cannot rate units offline here (systemd < 250?): {text}"
        );
        return;
    };
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score: {line}"));
    println!("systemd-analyze security: {}", line.trim());
    assert!(score <= 2.0, "{line}\n{text}");
}

/// Metric names (`fedgate_...`) in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("fedgate_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

/// Every `expr` of the Grafana dashboard, wherever it is nested.
fn dashboard_exprs(value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                        found.push(s.clone())
                    }
                    _ => dashboard_exprs(v, found),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, found)),
        _ => {}
    }
}

/// GitHub-style heading anchors of a Markdown file.
fn anchors(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|h| {
            h.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_rules_and_dashboard_name_metrics_that_exist() {
    // Traffic, so every labelled metric has a sample on /metrics.
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |_| {}).await;
    gw.federated_robot(
        "acme",
        "ci",
        json!([{"issuer": issuer.url, "subject": "repo:octo-org/octo-repo:*",
                "audiences": ["https://github.com/octo-org"]}]),
    )
    .await;
    let jwt = issuer.token(&issuer.claims("github-actions", SystemClock.unix()));
    assert_eq!(gw.exchange("acme+ci", &jwt).await.status, 200);
    assert_eq!(gw.exchange("acme+ci", &jwt).await.status, 401, "a replay");
    let auth = send(gw.client.get(format!("{}/v2/auth?service=x", gw.url))).await;
    assert!((400..500).contains(&auth.status), "{}", auth.status);
    let page = gw.metrics().await;
    let exported: BTreeSet<String> = page
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();

    let operations = anchors(&read("docs/operations.md"));
    let rules = &yaml("deploy/prometheus/alerts.yaml")[0];
    let mut named = BTreeSet::new();
    let mut alerts = 0;
    for group in rules["groups"].as_vec().unwrap() {
        for rule in group["rules"].as_vec().unwrap() {
            alerts += 1;
            let alert = rule["alert"].as_str().expect("alerting rules only");
            let expr = rule["expr"].as_str().unwrap();
            assert!(
                rule["labels"]["severity"].as_str().is_some(),
                "{alert} has a severity"
            );
            let runbook = rule["annotations"]["runbook"].as_str().unwrap();
            let anchor = runbook
                .strip_prefix("docs/operations.md#")
                .unwrap_or_else(|| panic!("{alert}: runbook {runbook}"));
            assert!(
                operations.contains(anchor),
                "{alert}: docs/operations.md has no section #{anchor}"
            );
            named.extend(metric_names(expr));
        }
    }
    assert!(alerts >= 6, "{alerts} alerts");
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/fedgate.json")).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard["panels"], &mut exprs);
    dashboard_exprs(&dashboard["templating"], &mut exprs);
    assert!(exprs.len() >= 7, "{exprs:?}");
    for expr in &exprs {
        named.extend(metric_names(expr));
    }
    let missing: Vec<_> = named.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "alerts or dashboard name metrics /metrics does not export: {missing:?}\n{page}"
    );
    for family in [
        "fedgate_http_requests_total",
        "fedgate_exchanges_total",
        "fedgate_jwks_fetches_total",
        "fedgate_registry_tokens_total",
    ] {
        assert!(named.contains(family), "{family} is watched");
    }

    // promtool (Debian's prometheus package; scripts/test unpacks it) checks the rules file.
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_string());
    match std::process::Command::new(&promtool)
        .args(["check", "rules"])
        .arg(path("deploy/prometheus/alerts.yaml"))
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "promtool check rules: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => println!(
            "SKIPPED: promtool not found (set PROMTOOL or run scripts/test); alerts.yaml was checked as YAML only"
        ),
    }
}
