//! The Python tools the install tests drive: Helm 4's SDK (helm-python-sdk), kubernetes-validate
//! and hadolint, from the virtualenv `.ci/setup` creates (`.venv/`, or `UMPIRE_TOOLS_VENV`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// `bin/<tool>` of the tools' virtualenv.
pub fn venv_tool(tool: &str) -> PathBuf {
    let venv = std::env::var_os("UMPIRE_TOOLS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv"));
    let path = venv.join("bin").join(tool);
    assert!(
        path.exists(),
        "{} is missing: the install tests need Helm's SDK, kubernetes-validate and hadolint; \
         run `bash .ci/setup` (it creates .venv/), or point UMPIRE_TOOLS_VENV at a virtualenv \
         that has them",
        path.display()
    );
    path
}

/// `tests/tools/helm.py ARGS…` with the virtualenv's Python.
pub fn helm(args: &[&str]) -> Output {
    Command::new(venv_tool("python"))
        .arg(repo().join("tests/tools/helm.py"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("running tests/tools/helm.py")
}

/// The chart rendered with these values files (relative to the repository), as
/// `helm template` prints it; panics with Helm's message when rendering fails.
pub fn render_chart(values: &[&Path]) -> String {
    let mut args = vec!["template".to_owned(), "charts/umpire".to_owned()];
    for file in values {
        args.push("-f".into());
        args.push(file.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = helm(&args);
    assert!(
        out.status.success(),
        "helm template failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 manifests")
}

/// The documents of a multi-document YAML stream.
pub fn documents(yaml: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|doc| serde_json::Value::deserialize(doc).ok())
        .filter(|v| !v.is_null())
        .collect()
}
