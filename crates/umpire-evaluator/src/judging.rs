//! A policy's judges, ready to run: code judges as they are, LLM judges behind clients and
//! limits. Used alike by the evaluator worker and by `umpire eval`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use umpire_runtime::egress::EgressPolicy;

use futures::future::join_all;
use umpire_api::compile::{JudgeImplementation, PolicyPlan};
use umpire_core::judge::embedding::{Comparison, EmbeddingJudge};
use umpire_core::judge::{CodeJudge, JudgeErrorKind, JudgeInput, Outcome, TraceContext};
use umpire_core::score::{JudgeScore, SpanEvaluation};
use umpire_core::span::Span;
use umpire_embed::EmbeddingBatcher;
use umpire_llm::{
    ApiKey, ClientSettings, LlmRunner, OpenAiClient, RunnerLimits, SharedCounters, SharedLimits,
};

use umpire_contract::references::MountedReferences;

#[derive(Debug, thiserror::Error)]
pub enum JudgeSetupError {
    #[error("judge {judge}: reading the API key: {source}")]
    ApiKey {
        judge: String,
        source: umpire_runtime::secrets::SecretError,
    },
    #[error("judge {judge}: {message}")]
    Client { judge: String, message: String },
    #[error(
        "judge {judge} compares sentence embeddings, but no embedding model is configured (the chart's `embeddings.model`, or `--embedding-model DIR`)"
    )]
    NoEmbeddingModel { judge: String },
    #[error("judge {judge}: embedding its references: {source}")]
    References {
        judge: String,
        source: umpire_core::embedding::EmbedFailure,
    },
}

enum Runnable {
    Code(Arc<dyn CodeJudge>),
    Llm(Box<LlmRunner<OpenAiClient>>),
    Embedding {
        judge: Arc<EmbeddingJudge>,
        /// The references' vectors, embedded once at start.
        references: Arc<Vec<Vec<f32>>>,
        batcher: EmbeddingBatcher,
    },
}

pub struct PolicyJudge {
    pub name: String,
    pub kind: &'static str,
    /// Judges the whole trace (agent loops, `{{context}}` templates).
    pub needs_trace: bool,
    runnable: Runnable,
}

/// One judge's result on one span.
#[derive(Debug, Clone)]
pub struct JudgeResult {
    pub judge: String,
    pub outcome: Outcome,
    pub latency_ms: f64,
}

/// The record of one judged span, as the evaluator stores it on the scores stream (and
/// `umpire eval --export` sends it): the span's ids, times, model, response id and group-by
/// values, and every judge's outcome, stamped with the time it was built.
pub fn span_evaluation(
    policy: &str,
    group_keys: &[String],
    span: &Span,
    results: Vec<JudgeResult>,
) -> SpanEvaluation {
    let scored_at_unix_nano = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    SpanEvaluation {
        id: SpanEvaluation::id_for(policy, &span.trace_id, &span.span_id),
        policy: policy.to_owned(),
        trace_id: span.trace_id,
        span_id: span.span_id,
        observed_at_unix_nano: span.end_time_unix_nano,
        scored_at_unix_nano,
        latency_ms: span.duration_ms(),
        time_to_first_token_ms: span.ai.time_to_first_token_ms,
        groups: group_keys
            .iter()
            .map(|key| (key.clone(), span.attribute_text(key).unwrap_or_default()))
            .collect::<BTreeMap<_, _>>(),
        model: span
            .ai
            .response_model
            .clone()
            .or_else(|| span.ai.request_model.clone()),
        response_id: span
            .attribute("gen_ai.response.id")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        embeddings: Default::default(),
        scores: results
            .into_iter()
            .map(|r| JudgeScore {
                judge: r.judge,
                outcome: r.outcome,
                judge_latency_ms: r.latency_ms,
            })
            .collect(),
    }
}

type AsyncRun<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = (usize, Outcome, std::time::Duration)> + Send + 'a>,
>;

impl PolicyJudge {
    /// The judge's outcome when it is decided inline: a code judge's, or a whole-trace
    /// judge's on an incomplete trace. None: it runs asynchronously (LLM, embeddings).
    fn inline_outcome(&self, input: &JudgeInput<'_>) -> Option<Outcome> {
        match (&self.runnable, &input.trace.incomplete) {
            (_, Some(reason)) if self.needs_trace => Some(Outcome::failed(
                JudgeErrorKind::IncompleteTrace,
                format!(
                    "the trace is incomplete ({reason}): not judged on {} of its spans",
                    input.trace.spans
                ),
            )),
            // A panicking judge is a bug, but it must not take the span (or the worker) down.
            (Runnable::Code(code), _) => Some(
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| code.evaluate(input)))
                    .unwrap_or_else(|_| {
                        Outcome::failed(JudgeErrorKind::Misconfigured, "the judge panicked")
                    }),
            ),
            _ => None,
        }
    }

    fn result(&self, outcome: Outcome, took: std::time::Duration) -> JudgeResult {
        JudgeResult {
            judge: self.name.clone(),
            outcome,
            latency_ms: took.as_secs_f64() * 1e3,
        }
    }
}

pub struct PolicyJudges {
    judges: Vec<PolicyJudge>,
}

impl PolicyJudges {
    /// Builds the judges. API keys come from the mounted Secrets (`references`) or, when a
    /// judge names no Secret, `default_key` (e.g. `UMPIRE_JUDGE_API_KEY` for local runs).
    /// With `shared`, LLM judges' requests per minute and daily token budgets are the
    /// policy's, shared by its replicas; without (`umpire eval`), each process gets an even
    /// share of them. `embeddings` runs the model of `embedding` judges.
    pub async fn new(
        plan: &PolicyPlan,
        references: &MountedReferences,
        default_key: Option<ApiKey>,
        egress: Option<&EgressPolicy>,
        shared: Option<Arc<dyn SharedCounters>>,
        embeddings: Option<&EmbeddingBatcher>,
    ) -> Result<Self, JudgeSetupError> {
        let mut judges = Vec::new();
        for planned in &plan.judges {
            let runnable = match &planned.implementation {
                JudgeImplementation::Code(judge) => Runnable::Code(judge.clone()),
                JudgeImplementation::Embedding(judge) => {
                    let batcher = embeddings.ok_or_else(|| JudgeSetupError::NoEmbeddingModel {
                        judge: planned.name.clone(),
                    })?;
                    let texts = match &judge.compare {
                        Comparison::References(texts) => texts.clone(),
                        Comparison::Field(_) => Vec::new(),
                    };
                    let vectors = if texts.is_empty() {
                        Vec::new()
                    } else {
                        batcher.embed(texts).await.map_err(|source| {
                            JudgeSetupError::References {
                                judge: planned.name.clone(),
                                source,
                            }
                        })?
                    };
                    Runnable::Embedding {
                        judge: judge.clone(),
                        references: Arc::new(vectors),
                        batcher: batcher.clone(),
                    }
                }
                JudgeImplementation::Llm { judge, endpoint } => {
                    let secrets = references.mounted_secrets();
                    let api_key = match (&endpoint.api_key, secrets.dir()) {
                        (Some(key), Some(_)) => {
                            // Read now so a missing key fails the start, then at every call
                            // (a rotated Secret applies without a restart).
                            secrets.read(&key.name, &key.key).map_err(|source| {
                                JudgeSetupError::ApiKey {
                                    judge: planned.name.clone(),
                                    source,
                                }
                            })?;
                            Some(ApiKey::mounted(secrets.clone(), &key.name, &key.key))
                        }
                        _ => default_key.clone(),
                    };
                    let mut settings = ClientSettings::new(endpoint.base_url.clone());
                    settings.api_key = api_key;
                    settings.timeout = endpoint.timeout;
                    settings.max_retries = endpoint.max_retries;
                    settings.egress = egress.cloned();
                    let client =
                        OpenAiClient::new(settings).map_err(|e| JudgeSetupError::Client {
                            judge: planned.name.clone(),
                            message: e.to_string(),
                        })?;
                    let shares = if shared.is_some() { 1 } else { plan.replicas };
                    let limits = RunnerLimits::share(
                        endpoint.max_concurrency,
                        endpoint.requests_per_minute,
                        endpoint.daily_token_budget,
                        shares,
                    );
                    let mut runner = LlmRunner::new(judge.clone(), client, limits);
                    let limited = endpoint.requests_per_minute.is_some()
                        || endpoint.daily_token_budget.is_some();
                    if let (Some(counters), true) = (&shared, limited) {
                        runner = runner.with_shared_limits(SharedLimits::new(
                            counters.clone(),
                            &planned.name,
                            endpoint.requests_per_minute,
                            endpoint.daily_token_budget,
                            plan.replicas,
                        ));
                    }
                    Runnable::Llm(Box::new(runner))
                }
            };
            judges.push(PolicyJudge {
                name: planned.name.clone(),
                kind: planned.kind,
                needs_trace: planned.needs_trace,
                runnable,
            });
        }
        Ok(Self { judges })
    }

    /// Whether an LLM judge has a limit its replicas share (requests per minute, tokens
    /// per day).
    pub fn has_shared_limits(plan: &PolicyPlan) -> bool {
        plan.judges.iter().any(|j| {
            matches!(&j.implementation, JudgeImplementation::Llm { endpoint, .. }
                if endpoint.requests_per_minute.is_some() || endpoint.daily_token_budget.is_some())
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.judges.iter().map(|j| j.name.as_str())
    }

    pub fn judges(&self) -> &[PolicyJudge] {
        &self.judges
    }

    /// Whether every judge runs inline (code judges only): such a policy's spans can be
    /// judged by [`Self::evaluate_inline`], without a future, a task or a judging slot each.
    pub fn all_inline(&self) -> bool {
        self.judges
            .iter()
            .all(|judge| matches!(judge.runnable, Runnable::Code(_)))
    }

    /// Runs every judge on the span when all run inline (see [`Self::all_inline`]); none
    /// otherwise. The same results as [`Self::evaluate`].
    pub fn evaluate_inline(&self, span: &Span, trace: &TraceContext) -> Option<Vec<JudgeResult>> {
        let input = JudgeInput { span, trace };
        self.judges
            .iter()
            .map(|judge| {
                let started = Instant::now();
                let outcome = judge.inline_outcome(&input)?;
                Some(judge.result(outcome, started.elapsed()))
            })
            .collect()
    }

    /// Runs every judge on the span: code judges inline, LLM judges concurrently. On an
    /// incomplete trace, judges of the whole trace report `incomplete_trace` instead.
    pub async fn evaluate(&self, span: &Span, trace: &TraceContext) -> Vec<JudgeResult> {
        let input = JudgeInput { span, trace };
        let mut results = Vec::with_capacity(self.judges.len());
        // LLM calls and embeddings are boxed: their futures are kilobytes, and a span task
        // that held them inline would copy them on every spawn and poll — most policies
        // have none.
        let mut llm_runs: Vec<AsyncRun<'_>> = Vec::new();
        for (index, judge) in self.judges.iter().enumerate() {
            let started = Instant::now();
            if let Some(outcome) = judge.inline_outcome(&input) {
                results.push((index, judge.result(outcome, started.elapsed())));
                continue;
            }
            match &judge.runnable {
                // Inline: judged above.
                Runnable::Code(_) => {}
                Runnable::Llm(runner) => {
                    let input = &input;
                    llm_runs.push(Box::pin(async move {
                        let outcome = runner.run(input).await;
                        (index, outcome, started.elapsed())
                    }));
                }
                Runnable::Embedding {
                    judge: embedding,
                    references,
                    batcher,
                } => {
                    let texts = match embedding.texts(&input) {
                        Ok(texts) => texts,
                        Err(outcome) => {
                            results.push((index, judge.result(outcome, started.elapsed())));
                            continue;
                        }
                    };
                    llm_runs.push(Box::pin(async move {
                        let outcome = match batcher.embed(texts).await {
                            Ok(mut vectors) if !vectors.is_empty() => {
                                let judged = vectors.remove(0);
                                let compared = if vectors.is_empty() {
                                    references.as_slice()
                                } else {
                                    vectors.as_slice()
                                };
                                embedding.verdict(&judged, compared)
                            }
                            Ok(_) => Outcome::failed(
                                JudgeErrorKind::Misconfigured,
                                "the embedding model returned no vectors",
                            ),
                            Err(failure) => {
                                Outcome::failed(JudgeErrorKind::Misconfigured, failure.to_string())
                            }
                        };
                        (index, outcome, started.elapsed())
                    }));
                }
            }
        }
        if !llm_runs.is_empty() {
            for (index, outcome, took) in join_all(llm_runs).await {
                results.push((index, self.judges[index].result(outcome, took)));
            }
            results.sort_by_key(|(index, _)| *index);
        }
        results.into_iter().map(|(_, result)| result).collect()
    }
}
