//! `umpire eval`: a policy's judges over recorded spans, as a CI gate.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use umpire_testkit::judge::JudgeServer;

fn policy(dir: &Path, judge_url: &str) -> std::path::PathBuf {
    let path = dir.join("policy.yaml");
    std::fs::write(
        &path,
        format!(
            r#"
apiVersion: umpire.dev/v1alpha1
kind: EvalPolicy
metadata: {{name: golden, namespace: ci}}
spec:
  projectRef: {{name: bot}}
  select: {{kinds: [LLM]}}
  judges:
    - {{name: valid-json, json: {{}}}}
    - {{name: no-errors, errorStatus: {{}}}}
    - name: grounded
      llm: {{template: groundedness, endpoint: "{judge_url}", model: judge-7b, maxRetries: 0}}
"#
        ),
    )
    .unwrap();
    path
}

/// One judge's aggregate in `umpire eval --format json`'s report.
fn judge_report<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["judges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["judge"] == name)
        .unwrap()
}

/// Runs `umpire eval --format json` with `policy` (YAML) on the recording; the report.
async fn eval_json(policy: String) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, policy).unwrap();
    let path = path.to_str().unwrap().to_owned();
    let (code, json) =
        tokio::task::spawn_blocking(move || eval(&["--policy", &path, "--format", "json"]))
            .await
            .unwrap();
    assert_eq!(code, Some(0), "{json}");
    serde_json::from_str(&json).unwrap()
}

fn eval(args: &[&str]) -> (Option<i32>, String) {
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/otlp/openinference-00.pb");
    let output = Command::new(env!("CARGO_BIN_EXE_umpire"))
        .arg("eval")
        .arg("--spans")
        .arg(fixtures)
        .args(args)
        .env("UMPIRE_JUDGE_API_KEY", "sk-ci-key")
        // all-MiniLM-L6-v2 as .ci/setup links it (loaded only by policies that need it).
        .env(
            "UMPIRE_EMBEDDING_MODEL",
            std::env::var("UMPIRE_TEST_EMBEDDING_MODEL")
                .unwrap_or_else(|_| ".venv/models/all-MiniLM-L6-v2".into()),
        )
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prints_per_judge_results_and_gates_on_pass_rates() {
    let judge = JudgeServer::start().await.unwrap();
    judge.require_key("sk-ci-key");
    judge.set_verdict(|request| {
        if request.prompt().contains("90 days") {
            "ungrounded".into()
        } else {
            "grounded".into()
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path(), &judge.url());
    let policy = policy.to_str().unwrap();

    let (code, table) = tokio::task::spawn_blocking({
        let policy = policy.to_owned();
        move || eval(&["--policy", &policy])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{table}");
    assert!(
        table.contains("policy golden: 36 spans read, 12 selected"),
        "{table}"
    );
    let grounded = table.lines().find(|l| l.starts_with("grounded")).unwrap();
    // 12 LLM spans: 8 with an output (5 contradict the documents), 4 without.
    assert_eq!(
        grounded.split_whitespace().collect::<Vec<_>>(),
        ["grounded", "llm", "12", "8", "37.5%", "0.375", "4", "0"]
    );
    assert!(table.contains("error missing_field: 4"));

    let junit_path = dir.path().join("junit.xml");
    let (code, json) = tokio::task::spawn_blocking({
        let policy = policy.to_owned();
        let junit = junit_path.to_str().unwrap().to_owned();
        move || {
            eval(&[
                "--policy",
                &policy,
                "--format",
                "json",
                "--fail-under",
                "0.3",
                "--min-pass-rate",
                "grounded=0.5",
                "--junit",
                &junit,
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1), "{json}");
    let report: Value = serde_json::from_str(&json).unwrap();
    let failures: Vec<&str> = report["gateFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(
        failures,
        [
            "valid-json: pass rate 0.125 < 0.3",
            "grounded: pass rate 0.375 < 0.5"
        ]
    );
    let no_errors = judge_report(&report, "no-errors");
    assert_eq!(
        (no_errors["scored"].as_u64(), no_errors["passed"].as_u64()),
        (Some(12), Some(9))
    );

    // Every span's verdicts, each naming its span: 12 spans × 3 judges, agreeing with the
    // aggregates.
    let verdicts = report["verdicts"].as_array().unwrap();
    assert_eq!(verdicts.len(), 36);
    let of = |judge: &str, result: &str| {
        verdicts
            .iter()
            .filter(|v| v["judge"] == judge && v["result"] == result)
            .count()
    };
    assert_eq!((of("grounded", "pass"), of("grounded", "fail")), (3, 5));
    assert_eq!(of("grounded", "error"), 4);
    assert_eq!((of("no-errors", "pass"), of("no-errors", "fail")), (9, 3));
    let failed = verdicts
        .iter()
        .find(|v| v["judge"] == "grounded" && v["result"] == "fail")
        .unwrap();
    assert_eq!(failed["traceId"].as_str().unwrap().len(), 32);
    assert_eq!(failed["spanId"].as_str().unwrap().len(), 16);
    assert_eq!(failed["label"], "ungrounded");
    let errored = verdicts.iter().find(|v| v["result"] == "error").unwrap();
    assert_eq!(errored["errorKind"], "missing_field");

    // The same verdicts as JUnit XML: a suite per judge, a case per span.
    let junit = std::fs::read_to_string(&junit_path).unwrap();
    assert!(
        junit.contains(r#"<testsuites name="umpire eval golden" tests="36" skipped="0" failures="15" errors="8">"#),
        "{junit}"
    );
    assert!(
        junit.contains(
            r#"<testsuite name="golden/grounded" tests="12" skipped="0" errors="4" failures="5">"#
        ),
        "{junit}"
    );
    assert_eq!(junit.matches("<testcase ").count(), 36);
    assert_eq!(junit.matches("<failure ").count(), 15, "{junit}");
    assert!(junit.contains(r#"<error message="#) && junit.contains(r#"type="missing_field""#));
    assert!(junit.contains(&format!(
        "[{}-{}]",
        failed["traceId"].as_str().unwrap(),
        failed["spanId"].as_str().unwrap()
    )));

    let (code, _) = tokio::task::spawn_blocking({
        let policy = policy.to_owned();
        move || eval(&["--policy", &policy, "--fail-under", "0.1"])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0));
    assert!(
        judge
            .requests()
            .iter()
            .all(|r| r.headers["authorization"] == "Bearer sk-ci-key")
    );
}

#[test]
fn refuses_invalid_policies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "apiVersion: umpire.dev/v1alpha1\nkind: EvalPolicy\nmetadata: {name: p}\nspec:\n  projectRef: {name: b}\n  judges: [{name: x}]\n").unwrap();
    let (code, output) = eval(&["--policy", path.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        output.contains("a judge needs exactly one kind"),
        "{output}"
    );
}

/// `--export`: a CI run's traces and verdicts go to the targets of the production
/// TraceProject (headers from `--secret-dir`; an outcome target takes only the traces it
/// would select) and to an ad-hoc `--export-otlp` endpoint — real OTLP servers receive them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ci_run_lands_at_the_production_export_targets() {
    use std::collections::{BTreeMap, BTreeSet};
    use umpire_testkit::otlp::OtlpReceiver;

    let judge = JudgeServer::start().await.unwrap();
    judge.set_verdict(|_| "grounded".into());
    let (all, failures, ad_hoc) = (
        OtlpReceiver::start().await.unwrap(),
        OtlpReceiver::start().await.unwrap(),
        OtlpReceiver::start().await.unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path(), &judge.url());
    std::fs::create_dir_all(dir.path().join("secrets/vendor")).unwrap();
    std::fs::write(dir.path().join("secrets/vendor/api-key"), "ci-export-key").unwrap();
    let project = dir.path().join("project.yaml");
    std::fs::write(
        &project,
        format!(
            r#"
apiVersion: umpire.dev/v1alpha1
kind: TraceProject
metadata: {{name: bot, namespace: ci}}
spec:
  export:
    - name: all
      otlp:
        endpoint: {all}
        protocol: httpJson
        headers: [{{name: X-Api-Key, valueFrom: {{name: vendor, key: api-key}}}}]
    - name: failures
      otlp: {{endpoint: "{failures}", protocol: grpc}}
      outcome: {{judges: [valid-json]}}
"#,
            all = all.http_url(),
            failures = failures.grpc_url(),
        ),
    )
    .unwrap();
    let (code, output) = tokio::task::spawn_blocking({
        let (policy, project, secrets, url) = (
            policy.display().to_string(),
            project.display().to_string(),
            dir.path().join("secrets").display().to_string(),
            ad_hoc.http_url(),
        );
        move || {
            eval(&[
                "--policy",
                &policy,
                "--format",
                "json",
                "--export",
                &project,
                "--export-otlp",
                &url,
                "--secret-dir",
                &secrets,
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{output}");
    let json_end = output.rfind('}').unwrap();
    let report: Value = serde_json::from_str(&output[..=json_end]).unwrap();
    assert!(output.contains("exported to all"), "{output}");
    let verdicts = report["verdicts"].as_array().unwrap();

    // Everything read (36 spans of the recorded fixture) reaches `all` — as OTLP/JSON — with
    // the key.
    assert!(
        all.headers()
            .iter()
            .all(|h| h["content-type"] == "application/json")
    );
    let spans = all.spans();
    assert_eq!(spans.len(), report["spansRead"].as_u64().unwrap() as usize);
    assert!(
        all.headers()
            .iter()
            .all(|h| h["x-api-key"] == "ci-export-key")
    );
    // One gen_ai.evaluation.result per verdict given (skipped judges send nothing).
    let given = verdicts.iter().filter(|v| v["result"] != "skipped").count();
    assert_eq!(all.log_records().len(), given);

    // `failures` gets exactly the traces in which valid-json failed or errored, whole.
    let wanted: BTreeSet<String> = verdicts
        .iter()
        .filter(|v| v["judge"] == "valid-json" && (v["result"] == "fail" || v["result"] == "error"))
        .map(|v| v["traceId"].as_str().unwrap().to_owned())
        .collect();
    assert!(!wanted.is_empty());
    let hex = |id: &[u8]| id.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut per_trace: BTreeMap<String, usize> = BTreeMap::new();
    for span in &spans {
        *per_trace.entry(hex(&span.trace_id)).or_default() += 1;
    }
    let got = failures.spans();
    let got_traces: BTreeSet<String> = got.iter().map(|s| hex(&s.trace_id)).collect();
    assert_eq!(got_traces, wanted);
    assert_eq!(
        got.len(),
        wanted.iter().map(|t| per_trace[t]).sum::<usize>()
    );
    assert!(
        failures
            .log_records()
            .iter()
            .all(|r| wanted.contains(&hex(&r.trace_id)))
    );

    // The ad-hoc endpoint: every span, and one evaluation span per judged span.
    let ad_hoc_spans = ad_hoc.spans();
    let evaluation_spans = ad_hoc_spans
        .iter()
        .filter(|s| s.name == "gen_ai.evaluation")
        .count();
    assert_eq!(ad_hoc_spans.len() - evaluation_spans, spans.len());
    assert_eq!(
        evaluation_spans,
        report["spansSelected"].as_u64().unwrap() as usize
    );
}

/// A `pii` judge from an EvalPolicy through `umpire eval`: on the OpenLLMetry recording the
/// three replies giving the support address and phone number fail (hand-checked, see
/// `judges_on_fixtures.rs`), and nothing the command prints contains those values.
#[test]
fn a_pii_judge_names_kinds_and_never_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(
        &path,
        r#"
apiVersion: umpire.dev/v1alpha1
kind: EvalPolicy
metadata: {name: privacy, namespace: ci}
spec:
  projectRef: {name: bot}
  select: {kinds: [LLM]}
  judges:
    - name: no-pii
      pii: {fields: [output, messages, toolArguments]}
    - name: no-cards
      pii: {fields: [output], kinds: [paymentCard, iban]}
"#,
    )
    .unwrap();
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/otlp/openllmetry-00.pb");
    let output = Command::new(env!("CARGO_BIN_EXE_umpire"))
        .args(["eval", "--format", "json", "--policy"])
        .arg(&path)
        .arg("--spans")
        .arg(fixtures)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let no_pii = judge_report(&report, "no-pii");
    let scored = no_pii["scored"].as_u64().unwrap();
    assert_eq!(scored - no_pii["passed"].as_u64().unwrap(), 3, "{no_pii}");
    let no_cards = judge_report(&report, "no-cards");
    assert_eq!(no_cards["scored"], no_cards["passed"], "{no_cards}");
    let everything = stdout + &String::from_utf8_lossy(&output.stderr);
    assert!(
        everything.contains("found email ×1, phone ×1 in output, messages"),
        "{everything}"
    );
    for value in ["support@example.com", "415 555 0100"] {
        assert!(!everything.contains(value), "{value} printed");
    }
}

/// `promptInjection` both ways on the OpenInference recording (support questions, a refund
/// policy: no injection): the code judge passes every selected span; the built-in LLM
/// template sends the judge the request and the retrieved documents, asks for `injection`
/// or `benign`, and maps the answer to the verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_injection_by_catalogue_and_by_llm_template() {
    let judge = JudgeServer::start().await.unwrap();
    judge.set_verdict(|request| {
        if request.prompt().contains("30 days") {
            "injection".into()
        } else {
            "benign".into()
        }
    });
    let report = eval_json(format!(
        r#"
apiVersion: umpire.dev/v1alpha1
kind: EvalPolicy
metadata: {{name: guard, namespace: ci}}
spec:
  projectRef: {{name: bot}}
  select: {{kinds: [LLM]}}
  judges:
    - name: injection-patterns
      promptInjection: {{fields: [input, context, messages]}}
    - name: injection-llm
      llm: {{template: promptInjection, endpoint: "{}", model: judge-7b, maxRetries: 0}}
"#,
        judge.url()
    ))
    .await;
    let patterns = judge_report(&report, "injection-patterns");
    assert_eq!(patterns["scored"].as_u64(), Some(12), "{patterns}");
    assert_eq!(patterns["passed"].as_u64(), Some(12), "{patterns}");
    let llm = judge_report(&report, "injection-llm");
    let requests = judge.requests();
    assert!(!requests.is_empty());
    let prompt = requests[0].prompt();
    assert!(
        prompt.contains("[User request]")
            && prompt.contains("[Documents and tool results the assistant read]"),
        "{prompt}"
    );
    let flagged = requests
        .iter()
        .filter(|r| r.prompt().contains("30 days"))
        .count() as u64;
    assert!(flagged > 0, "no prompt carried the refund document");
    assert_eq!(
        llm["scored"].as_u64().unwrap() - llm["passed"].as_u64().unwrap(),
        flagged,
        "{llm}"
    );
}

/// Retrieval rating on the OpenInference recording's 12 retriever spans (3 documents each):
/// the judge server stands in for a model that finds a document relevant when it answers
/// the query (the refund rule for refund questions, the used-items rule for returning a used
/// item, the support address for whom to contact). Values worked by hand, k = 5:
/// - "What is your refund policy?" ×4: [1, 0, 0] → precision 1/3, MRR 1, NDCG 1;
/// - "Can I return a used item?": [0, 1, 0] → MRR 1/2, NDCG 1/log2 3 = 0.6309;
/// - "Who do I contact for help?": [0, 0, 1] → MRR 1/3, NDCG 1/2;
/// - the other 6 (weather, json, errors): no relevant document → 0 everywhere.
///
/// Passing on MRR ≥ 0.5: 5 of 12.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrieval_rating_scores_each_document_and_the_ranking() {
    let judge = JudgeServer::start().await.unwrap();
    judge.set_verdict(|request| {
        let prompt = request.prompt();
        let (query, document) = prompt
            .split_once("[Document]")
            .expect("one document per request");
        let relevant = (query.contains("refund policy") && document.contains("Refunds"))
            || (query.contains("used item") && document.contains("Used items"))
            || (query.contains("contact") && document.contains("Support:"));
        if relevant { "relevant" } else { "unrelated" }.into()
    });
    let report = eval_json(format!(
        r#"
apiVersion: umpire.dev/v1alpha1
kind: EvalPolicy
metadata: {{name: rag, namespace: ci}}
spec:
  projectRef: {{name: bot}}
  select: {{kinds: [RETRIEVER]}}
  judges:
    - name: retrieval
      llm:
        template: documentRelevance
        endpoint: "{}"
        model: judge-7b
        maxRetries: 0
        pricing: {{inputPerMillionTokens: 1.0, outputPerMillionTokens: 2.0}}
        retrieval: {{k: 5, passOn: mrr, min: 0.5}}
"#,
        judge.url()
    ))
    .await;
    let summary = judge_report(&report, "retrieval");
    assert_eq!(
        (summary["scored"].as_u64(), summary["passed"].as_u64()),
        (Some(12), Some(5)),
        "{summary}"
    );
    assert_eq!(judge.requests().len(), 36, "one request per document");
    // Means over the 12 spans: precision (4 + 1 + 1) × 1/3 / 12 = 1/6; MRR (4 + 0.5 + 1/3)
    // / 12 = 0.402778; NDCG (4 + 0.630930 + 0.5) / 12 = 0.427577.
    let means = &summary["meanMeasurements"];
    assert!(
        (means["precisionAtK"].as_f64().unwrap() - 1.0 / 6.0).abs() < 1e-6,
        "{means}"
    );
    assert!(
        (means["mrr"].as_f64().unwrap() - 0.402_778).abs() < 1e-6,
        "{means}"
    );
    assert!(
        (means["ndcgAtK"].as_f64().unwrap() - 0.427_577).abs() < 1e-6,
        "{means}"
    );
    let mut measured: Vec<(f64, f64, f64)> = report["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let m = &v["measurements"];
            let round = |key: &str| (m[key].as_f64().unwrap() * 1e4).round() / 1e4;
            (round("precisionAtK"), round("mrr"), round("ndcgAtK"))
        })
        .collect();
    measured.sort_by(|a, b| b.partial_cmp(a).unwrap());
    let third = (1.0f64 / 3.0 * 1e4).round() / 1e4;
    let mut want = vec![(third, 1.0, 1.0); 4];
    want.push((third, 0.5, 0.6309));
    want.push((third, third, 0.5));
    want.extend([(0.0, 0.0, 0.0); 6]);
    assert_eq!(measured, want);
}

/// The embedding judge on the recording's 12 CHAIN spans (6 distinct questions), against
/// two reference questions. Expected similarities computed independently with
/// sentence-transformers 6.2.0 (`encode(normalize_embeddings=True)`, same weights): refund
/// policy 0.5600 (reference 1), used item 0.5084 (1), contact 0.5763 (2), weather −0.0003
/// (2; scored 0), json 0.1129 (2), error 0.1313 (1).
#[tokio::test]
async fn embedding_similarity_to_references_matches_sentence_transformers() {
    let report = eval_json(
        r#"
apiVersion: umpire.dev/v1alpha1
kind: EvalPolicy
metadata: {name: topics, namespace: ci}
spec:
  projectRef: {name: bot}
  select: {kinds: [CHAIN]}
  judges:
    - name: support-question
      embedding:
        field: input
        references: ["How do I get my money back after buying something?", "Where can I ask a person for support?"]
        min: 0.5
"#
        .into(),
    )
    .await;
    let summary = judge_report(&report, "support-question");
    // refund ×4, used item, contact pass; weather, json ×2, error ×3 fail.
    assert_eq!(
        (summary["scored"].as_u64(), summary["passed"].as_u64()),
        (Some(12), Some(6)),
        "{summary}"
    );
    let mut measured: Vec<(f64, f64)> = report["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let m = &v["measurements"];
            (
                m["similarity"].as_f64().unwrap(),
                m["closestReference"].as_f64().unwrap(),
            )
        })
        .collect();
    measured.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut want = vec![(0.5763, 2.0)];
    want.extend([(0.5600, 1.0); 4]);
    want.push((0.5084, 1.0));
    want.extend([(0.1313, 1.0); 3]);
    want.extend([(0.1129, 2.0); 2]);
    want.push((-0.0003, 2.0));
    for ((got, got_ref), (expected, expected_ref)) in measured.iter().zip(&want) {
        assert!(
            (got - expected).abs() < 1e-3 && got_ref == expected_ref,
            "{measured:?} vs {want:?}"
        );
    }
    assert_eq!(measured.len(), want.len());
}
