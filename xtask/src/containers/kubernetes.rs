//! deploy/kubernetes, where no cluster runs: each overlay rendered by kustomize (kubectl's), its
//! built-in objects validated against Kubernetes 1.32's schemas (kubernetes-validate) and its
//! custom ones against the vendored CRDs' schemas (check-jsonschema); the alert rules checked and
//! unit-tested by promtool. The tests below hold the rendered objects to docker/compose.yml's
//! limits and to the replicas' shutdown timing.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml_ng::Value;
use xshell::{Cmd, Shell, cmd};

/// The overlays, each a directory with a kustomization.
pub const OVERLAYS: [&str; 2] =
    ["deploy/kubernetes/overlays/contest", "deploy/kubernetes/overlays/scale-out"];
const CRDS: &str = "deploy/kubernetes/crds";
/// The Kubernetes release whose schemas the built-in objects must match.
const KUBERNETES_VERSION: &str = "1.32.0";
const ALERT_RULES: &str = "deploy/observability/alerts.yaml";
const ALERT_TESTS: &str = "deploy/observability/alerts.test.yaml";

/// The overlay's objects as kustomize renders them. The contest overlay reads
/// docker/postgresql.conf, outside its directory, hence the load restrictor.
pub fn render(sh: &Shell, overlay: &str) -> Result<String> {
    Ok(render_command(sh, overlay).read()?)
}

fn render_command<'a>(sh: &'a Shell, overlay: &str) -> Cmd<'a> {
    cmd!(sh, "kubectl kustomize --load-restrictor LoadRestrictionsNone {overlay}")
}

pub fn objects(rendered: &str) -> Result<Vec<Value>> {
    serde_yaml_ng::Deserializer::from_str(rendered)
        .map(|document| Ok(Value::deserialize(document)?))
        .filter(|object| !matches!(object, Ok(Value::Null)))
        .collect()
}

/// The checks of `cargo xtask check-delivery` for deploy/: rendering, and the validators'
/// commands over files in `scratch`, written here from each rendering split by schema.
pub fn delivery_checks<'a>(
    sh: &'a Shell,
    scratch: &Path,
) -> Result<Vec<(&'static str, Vec<Cmd<'a>>)>> {
    let schemas = crd_schemas(sh)?;
    let rendering = (
        "Kubernetes overlays render (kubectl kustomize)",
        OVERLAYS.iter().map(|overlay| render_command(sh, overlay)).collect(),
    );
    let mut built_in = Vec::new();
    let mut custom = Vec::new();
    for overlay in OVERLAYS {
        let Ok(rendered) = render(sh, overlay) else {
            // Nothing to validate: the rendering check reports kustomize's error.
            return Ok(vec![rendering]);
        };
        let name = overlay.rsplit('/').next().expect("a path");
        let mut others = Vec::new();
        for object in objects(&rendered)? {
            let kind = type_of(&object);
            match schemas.iter().find(|(schema_kind, _)| *schema_kind == kind) {
                Some((_, schema)) => {
                    let stem = format!(
                        "{name}-{}-{}",
                        kind.1,
                        object["metadata"]["name"].as_str().unwrap_or("unnamed")
                    );
                    let (object_file, schema_file) = (
                        scratch.join(format!("{stem}.json")),
                        scratch.join(format!("{stem}.schema.json")),
                    );
                    sh.write_file(&object_file, serde_json::to_string(&object)?)?;
                    sh.write_file(&schema_file, serde_json::to_string(schema)?)?;
                    let check = cmd!(sh, "check-jsonschema --schemafile {schema_file}");
                    custom.push(check.arg(object_file));
                }
                None => others.push(object),
            }
        }
        let file = scratch.join(format!("{name}.yaml"));
        let documents: Vec<String> =
            others.iter().map(serde_yaml_ng::to_string).collect::<Result<_, _>>()?;
        sh.write_file(&file, documents.join("---\n"))?;
        // kubernetes-validate passes, with a warning, an object whose kind it has no schema for.
        const VALIDATE: &str = r#"out=$(kubernetes-validate --strict --quiet -k "$1" "$2" 2>&1); status=$?; printf '%s\n' "$out"; [ "$status" -eq 0 ] && ! printf '%s' "$out" | grep -q "find schema""#;
        built_in.push(cmd!(sh, "sh -c {VALIDATE} validate {KUBERNETES_VERSION} {file}"));
    }
    let rules = scratch.join("rules.yaml");
    let rule_file: Value = serde_yaml_ng::from_str(&sh.read_file(ALERT_RULES)?)?;
    sh.write_file(&rules, serde_yaml_ng::to_string(&rule_file["spec"])?)?;
    let tests = scratch.join("alerts.test.yaml");
    sh.copy_file(ALERT_TESTS, &tests)?;
    Ok(vec![
        rendering,
        ("Kubernetes objects match the 1.32 schemas (kubernetes-validate)", built_in),
        ("custom objects match their vendored CRDs (check-jsonschema)", custom),
        (
            "alert rules (promtool check rules, promtool test rules)",
            vec![cmd!(sh, "promtool check rules {rules}"), cmd!(sh, "promtool test rules {tests}")],
        ),
    ])
}

/// An object's apiVersion and kind.
fn type_of(object: &Value) -> (String, String) {
    let field = |name: &str| object[name].as_str().unwrap_or_default().to_owned();
    (field("apiVersion"), field("kind"))
}

/// For each version of each vendored CRD, its type and a JSON schema: the CRD's
/// openAPIV3Schema, closed to fields it does not name, as the API server's pruning would
/// silently drop them (a misspelt field would otherwise pass).
fn crd_schemas(sh: &Shell) -> Result<Vec<((String, String), Json)>> {
    let mut schemas = Vec::new();
    for file in sh.read_dir(CRDS)? {
        if file.extension().is_none_or(|extension| extension != "yaml") {
            continue;
        }
        let crd: Json = serde_yaml_ng::from_str(&sh.read_file(&file)?)
            .with_context(|| file.display().to_string())?;
        let spec = &crd["spec"];
        let group = spec["group"].as_str().context("a CRD without spec.group")?;
        let kind = spec["names"]["kind"].as_str().context("a CRD without spec.names.kind")?;
        for version in spec["versions"].as_array().context("a CRD without versions")? {
            let name = version["name"].as_str().context("a version without a name")?;
            let mut schema = version["schema"]["openAPIV3Schema"].clone();
            ensure!(schema.is_object(), "{}: {name} has no openAPIV3Schema", file.display());
            close(&mut schema);
            schemas.push(((format!("{group}/{name}"), kind.to_owned()), schema));
        }
    }
    ensure!(!schemas.is_empty(), "no CRDs in {CRDS}");
    Ok(schemas)
}

/// Forbids, in every object schema that lists its properties, the properties it does not list,
/// unless it keeps unknown fields on purpose (`x-kubernetes-preserve-unknown-fields`).
fn close(schema: &mut Json) {
    let Json::Object(fields) = schema else { return };
    let preserves = fields.get("x-kubernetes-preserve-unknown-fields") == Some(&Json::Bool(true));
    if fields.contains_key("properties")
        && !fields.contains_key("additionalProperties")
        && !preserves
    {
        fields.insert("additionalProperties".to_owned(), Json::Bool(false));
    }
    if let Some(Json::String(pattern)) = fields.get_mut("pattern") {
        *pattern = without_case_flag(pattern);
    }
    for value in fields.values_mut() {
        match value {
            Json::Array(items) => items.iter_mut().for_each(close),
            _ => close(value),
        }
    }
}

/// A Go pattern's case-insensitive flag, `(?i)`, which ECMAScript's patterns (JSON Schema's) do
/// not have, spelt out: each letter outside a class matches either case.
fn without_case_flag(pattern: &str) -> String {
    let Some((before, after)) = pattern.split_once("(?i)") else { return pattern.to_owned() };
    let (mut spelt, mut escaped, mut in_class) = (before.to_owned(), false, false);
    for c in after.chars() {
        match c {
            _ if escaped => {
                escaped = false;
                spelt.push(c);
            }
            '\\' => {
                escaped = true;
                spelt.push(c);
            }
            '[' | ']' => {
                in_class = c == '[';
                spelt.push(c);
            }
            _ if c.is_ascii_alphabetic() && !in_class => {
                spelt.extend(['[', c.to_ascii_lowercase(), c.to_ascii_uppercase(), ']']);
            }
            _ => spelt.push(c),
        }
    }
    spelt
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{Limits, Topology};
    use crate::workspace::repo_root;

    fn rendered(overlay: &str) -> Vec<Value> {
        let sh = Shell::new().unwrap();
        sh.change_dir(repo_root());
        objects(&render(&sh, overlay).unwrap()).unwrap()
    }

    fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
        objects.iter().filter(|object| object["kind"].as_str() == Some(kind)).collect()
    }

    /// Millicores of a CPU quantity (`400m`, `1`, `0.5`).
    fn millicores(quantity: &Value) -> u64 {
        let text = quantity.as_str().map(str::to_owned).unwrap_or_else(|| {
            quantity.as_f64().map(|cpus| cpus.to_string()).expect("a CPU quantity")
        });
        match text.strip_suffix('m') {
            Some(millis) => millis.parse().unwrap(),
            None => (text.parse::<f64>().unwrap() * 1000.0).round() as u64,
        }
    }

    /// Bytes of a binary memory quantity (`512Mi`, `2Gi`).
    fn bytes(quantity: &Value) -> u64 {
        let text = quantity.as_str().expect("a memory quantity");
        let (number, shift) = [("Ki", 10), ("Mi", 20), ("Gi", 30)]
            .iter()
            .find_map(|(unit, shift)| Some((text.strip_suffix(unit)?, *shift)))
            .unwrap_or_else(|| panic!("{text:?}: limits here are in Ki, Mi or Gi"));
        number.parse::<u64>().unwrap() << shift
    }

    /// The container's requests and its limits, which must be equal: a replica gets on
    /// Kubernetes neither more nor less than in compose.
    fn guaranteed(container: &Value) -> Limits {
        let resources = &container["resources"];
        let of = |side: &str| Limits {
            cpus: millicores(&resources[side]["cpu"]) as f64 / 1000.0,
            memory_bytes: bytes(&resources[side]["memory"]),
        };
        assert_eq!(of("requests"), of("limits"), "{}", container["name"].as_str().unwrap());
        of("limits")
    }

    fn containers(workload: &Value) -> &Vec<Value> {
        workload["spec"]["template"]["spec"]["containers"].as_sequence().unwrap()
    }

    fn env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
        let entries = container["env"].as_sequence()?;
        entries.iter().find(|entry| entry["name"].as_str() == Some(name))?["value"].as_str()
    }

    #[test]
    fn the_contest_overlay_has_the_compose_files_replicas_and_limits() {
        let topology = Topology::load(&repo_root()).unwrap();
        let objects = rendered(OVERLAYS[0]);
        let [api] = of_kind(&objects, "Deployment")[..] else { panic!("one Deployment") };
        let replicas = api["spec"]["replicas"].as_u64().unwrap();
        assert_eq!(replicas as usize, topology.replicas.len());
        let [database] = of_kind(&objects, "StatefulSet")[..] else { panic!("one StatefulSet") };
        assert_eq!(
            guaranteed(&containers(database)[0]),
            topology.limits(&topology.database).unwrap()
        );
    }

    #[test]
    fn every_overlays_replicas_have_the_compose_files_limits() {
        let topology = Topology::load(&repo_root()).unwrap();
        for overlay in OVERLAYS {
            let objects = rendered(overlay);
            for api in of_kind(&objects, "Deployment") {
                for (replica, _) in &topology.replicas {
                    let limits = topology.limits(replica).unwrap();
                    assert_eq!(guaranteed(&containers(api)[0]), limits, "{overlay}, {replica}");
                }
            }
        }
    }

    /// Kubernetes kills a pod the grace period after it starts stopping it, preStop pause
    /// included; the replica needs the pause, then DRAIN_MS, then up to SHUTDOWN_GRACE_MS.
    #[test]
    fn the_grace_period_covers_the_pause_the_drain_and_the_shutdown_grace() {
        for overlay in OVERLAYS {
            let objects = rendered(overlay);
            for api in of_kind(&objects, "Deployment") {
                let pod = &api["spec"]["template"]["spec"];
                let grace_ms = pod["terminationGracePeriodSeconds"].as_u64().unwrap() * 1000;
                let container = &containers(api)[0];
                let pause = &container["lifecycle"]["preStop"]["sleep"]["seconds"];
                let pause_ms = pause.as_u64().expect("a preStop pause") * 1000;
                let setting = |name| -> u64 {
                    env(container, name)
                        .unwrap_or_else(|| panic!("{overlay}: {name} unset"))
                        .parse()
                        .unwrap()
                };
                let needed = pause_ms + setting("DRAIN_MS") + setting("SHUTDOWN_GRACE_MS");
                assert!(grace_ms >= needed, "{overlay}: {grace_ms} ms of grace, {needed} needed");
            }
        }
    }

    /// The replicas serve /metrics on METRICS_PORT alone, and the only Service with that port
    /// is headless: no virtual IP, node port or load balancer carries it.
    #[test]
    fn the_metrics_port_is_on_no_public_service() {
        for overlay in OVERLAYS {
            let objects = rendered(overlay);
            let [api] = of_kind(&objects, "Deployment")[..] else { panic!("one Deployment") };
            let container = &containers(api)[0];
            let metrics_port: u64 =
                env(container, "METRICS_PORT").expect("METRICS_PORT").parse().unwrap();
            let ports = container["ports"].as_sequence().unwrap();
            let port_named = |name: &str| {
                ports
                    .iter()
                    .find(|port| port["name"].as_str() == Some(name))
                    .map(|port| port["containerPort"].as_u64().unwrap())
            };
            assert_eq!(port_named("metrics"), Some(metrics_port), "{overlay}");
            assert_ne!(port_named("http"), Some(metrics_port), "{overlay}");
            let mut scraped = false;
            for service in of_kind(&objects, "Service") {
                let spec = &service["spec"];
                let carries_metrics = spec["ports"].as_sequence().unwrap().iter().any(|port| {
                    port["targetPort"].as_str() == Some("metrics")
                        || port["targetPort"].as_u64() == Some(metrics_port)
                        || (port["targetPort"].is_null()
                            && port["port"].as_u64() == Some(metrics_port))
                });
                if carries_metrics {
                    let name = service["metadata"]["name"].as_str().unwrap();
                    assert_eq!(spec["clusterIP"].as_str(), Some("None"), "{overlay}: {name}");
                    assert!(spec["type"].is_null() || spec["type"].as_str() == Some("ClusterIP"));
                    scraped = true;
                }
            }
            assert!(scraped, "{overlay}: no Service for the ServiceMonitor");
            assert!(of_kind(&objects, "Ingress").is_empty(), "{overlay}: an Ingress to check");
        }
    }

    #[test]
    fn go_case_insensitive_patterns_are_spelt_out() {
        assert_eq!(
            without_case_flag("^(?i)(abort|warn)?$"),
            "^([aA][bB][oO][rR][tT]|[wW][aA][rR][nN])?$"
        );
        assert_eq!(without_case_flag(r"^(?i)\d[a-z]x$"), r"^\d[a-z][xX]$");
        assert_eq!(without_case_flag("^[A-Z]+$"), "^[A-Z]+$");
    }

    #[test]
    fn closed_schemas_refuse_unnamed_fields() {
        let mut schema = serde_json::json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {"a": {"type": "string"}}},
                "extra": {"type": "object", "properties": {}, "x-kubernetes-preserve-unknown-fields": true},
                "map": {"type": "object", "additionalProperties": {"type": "string"}}
            }
        });
        close(&mut schema);
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["properties"]["spec"]["additionalProperties"], false);
        assert!(schema["properties"]["extra"].get("additionalProperties").is_none());
        assert_eq!(schema["properties"]["map"]["additionalProperties"]["type"], "string");
    }
}
