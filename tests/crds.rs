//! The committed CRDs are exactly what the Rust types generate, and carry what the API server
//! and kubectl need: CEL rules, the status subresource, printer columns, short names.

#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn crds_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds")
}

#[test]
fn committed_crds_match_the_rust_types() {
    let mut stale = Vec::new();
    for crd in umpire_api::crd::all() {
        let path = crds_dir().join(umpire_api::crd::file_name(&crd));
        let generated = umpire_api::crd::to_yaml(&crd).unwrap();
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != generated {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "out of date: {stale:?}; run `cargo run -p umpire -- crdgen --out crds`"
    );
    let files = std::fs::read_dir(crds_dir()).unwrap().count();
    assert_eq!(
        files,
        umpire_api::crd::all().len(),
        "crds/ holds a file no type generates"
    );
}

#[test]
fn the_charts_crd_templates_match_the_rust_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/umpire/templates/crds");
    for crd in umpire_api::crd::all() {
        let path = dir.join(umpire_api::crd::file_name(&crd));
        let generated = umpire_api::crd::to_chart_template(&crd).unwrap();
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is out of date; run `cargo run -p umpire -- crdgen --chart charts/umpire`",
            path.display()
        );
    }
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        files,
        umpire_api::crd::all().len(),
        "a chart CRD no type generates"
    );
}

#[test]
fn crdgen_writes_the_committed_files_and_check_detects_drift() {
    let out = tempfile::tempdir().unwrap();
    let umpire = env!("CARGO_BIN_EXE_umpire");
    let status = Command::new(umpire)
        .args(["crdgen", "--out"])
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success());
    for crd in umpire_api::crd::all() {
        let name = umpire_api::crd::file_name(&crd);
        let written = std::fs::read_to_string(out.path().join(&name)).unwrap();
        let committed = std::fs::read_to_string(crds_dir().join(&name)).unwrap();
        assert_eq!(written, committed, "{name}");
    }
    let check = |dir: &Path| {
        Command::new(umpire)
            .args(["crdgen", "--check", "--out"])
            .arg(dir)
            .output()
            .unwrap()
    };
    assert!(check(out.path()).status.success());
    let tampered = out.path().join("evalpolicies.umpire.dev.yaml");
    let text = std::fs::read_to_string(&tampered)
        .unwrap()
        .replace("shortNames:\n    - ep", "shortNames:\n    - xx");
    std::fs::write(&tampered, text).unwrap();
    let output = check(out.path());
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("-    - xx"));
}

fn load(name: &str) -> Value {
    let text = std::fs::read_to_string(crds_dir().join(name)).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn count_rules(schema: &Value) -> usize {
    let own = schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let children: usize = match schema {
        Value::Object(map) => map.values().map(count_rules).sum(),
        Value::Array(items) => items.iter().map(count_rules).sum(),
        _ => 0,
    };
    own + children
}

#[test]
fn crds_carry_cel_rules_status_printer_columns_and_short_names() {
    for (file, short_name, columns) in [
        (
            "traceprojects.umpire.dev.yaml",
            "tp",
            vec!["Ready", "OTLP-gRPC", "Age"],
        ),
        (
            "evalpolicies.umpire.dev.yaml",
            "ep",
            vec!["Ready", "Project", "Judges", "Firing", "Age"],
        ),
    ] {
        let crd = load(file);
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["group"], "umpire.dev");
        assert_eq!(crd["spec"]["names"]["shortNames"][0], short_name);
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert!(
            version["subresources"]["status"].is_object(),
            "{file}: status subresource"
        );
        let names: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        for column in columns {
            assert!(
                names.contains(&column),
                "{file}: column {column} in {names:?}"
            );
        }
        // No column may read a counter that changes every few seconds.
        for column in version["additionalPrinterColumns"].as_array().unwrap() {
            let path = column["jsonPath"].as_str().unwrap();
            assert!(
                !path.contains("judgeStats") && !path.contains("passRate"),
                "{file}: churny column {path}"
            );
        }
        let rules = count_rules(&version["schema"]["openAPIV3Schema"]);
        assert!(rules >= 5, "{file}: only {rules} CEL rules");
    }
}

#[test]
fn committed_reference_matches_the_crds() {
    let path = crds_dir().join("../docs/reference.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = umpire_api::reference::markdown(&umpire_api::crd::all());
    assert!(
        committed == generated,
        "docs/reference.md is out of date; run `cargo run -p umpire -- crdgen --reference docs/reference.md`"
    );
    for field in [
        "spec.judges[].llm.template",
        "spec.alerts[].condition.regression.confidence",
        "spec.sampling.policies[].and",
    ] {
        assert!(
            generated.contains(&format!("`{field}`")),
            "{field} missing from the reference"
        );
    }
}

/// The CRD's lookback limit (window + baseline) is the score stream's retention: a new alert
/// leader rebuilds windows from it.
#[test]
fn the_alert_lookback_limit_is_the_scores_retention() {
    let crd = umpire_api::crd::all()
        .into_iter()
        .map(|crd| serde_json::to_string(&crd).unwrap())
        .find(|json| json.contains("EvalPolicy"))
        .unwrap();
    let hours = umpire_nats::topology::SCORES_MAX_AGE.as_secs() / 3600;
    assert!(
        crd.contains(&format!("<= duration('{hours}h')")),
        "the CRD does not bound window + baseline by {hours}h"
    );
}
