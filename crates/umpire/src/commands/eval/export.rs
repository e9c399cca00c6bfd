//! `umpire eval --export FILE` / `--export-otlp URL`: the run's traces and every verdict go
//! to the export targets production uses (a TraceProject's `spec.export`) or to an OTLP
//! endpoint, so a CI run's judged spans land in Phoenix or Langfuse next to production's.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;
use umpire_api::trace_project::{ExportTarget, TraceProjectSpec};
use umpire_contract::document::manifest_parts;
use umpire_contract::validation::validate_project_manifest;
use umpire_core::score::SpanEvaluation;
use umpire_core::span::Span;
use umpire_nats::topology::ProjectNames;
use umpire_runtime::secrets::MountedSecrets;

/// The targets of each TraceProject in `files`, then one per `--export-otlp` URL.
pub fn targets(files: &[PathBuf], urls: &[String]) -> anyhow::Result<Vec<ExportTarget>> {
    let mut targets = Vec::new();
    for file in files {
        targets.extend(project_targets(file)?);
    }
    for (n, url) in urls.iter().enumerate() {
        targets.push(umpire_export::ad_hoc_target(
            &format!("otlp-{}", n + 1),
            url,
        ));
    }
    Ok(targets)
}

fn project_targets(path: &Path) -> anyhow::Result<Vec<ExportTarget>> {
    let mut found = Vec::new();
    for document in umpire_api::manifest::read_documents(path)? {
        let document = document?;
        if document.object.get("kind").and_then(Value::as_str) != Some("TraceProject") {
            continue;
        }
        validate_project_manifest(&document.object).map_err(|lines| {
            anyhow::anyhow!("{}: the TraceProject is invalid:\n{lines}", path.display())
        })?;
        let (_, name, spec): (_, _, TraceProjectSpec) =
            manifest_parts(&document.object).map_err(anyhow::Error::msg)?;
        let targets = spec.export.unwrap_or_default();
        if targets.is_empty() {
            bail!(
                "{}: TraceProject {name} has no spec.export targets",
                path.display()
            );
        }
        found.extend(targets);
    }
    if found.is_empty() {
        bail!("{} holds no TraceProject", path.display());
    }
    Ok(found)
}

/// Sends to every target in turn; prints what each took (stderr, so `--format json` stays
/// one document on stdout). Fails on the first target that does not take the run.
pub async fn export(
    targets: &[ExportTarget],
    secret_dir: Option<PathBuf>,
    names: &ProjectNames,
    spans: &[Span],
    evaluations: &[SpanEvaluation],
) -> anyhow::Result<()> {
    for target in targets {
        let delivered = umpire_export::send_once(
            target,
            MountedSecrets::new(secret_dir.clone()),
            names,
            spans,
            evaluations,
        )
        .await
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("exporting to {} ({})", target.name, target.otlp.endpoint))?;
        eprintln!(
            "exported to {} ({}): {} traces, {} spans, {} evaluations",
            target.name,
            target.otlp.endpoint,
            delivered.traces,
            delivered.spans,
            delivered.evaluations
        );
    }
    Ok(())
}
