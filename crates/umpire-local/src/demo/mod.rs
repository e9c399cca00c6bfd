//! `umpire local --demo`: built-in manifests (a TraceProject and two EvalPolicies with code
//! judges and an LLM judge), traffic over real OTLP, a stand-in judge when no LLM key is set,
//! and a scripted incident — the retriever serves a stale index after ~20 s, groundedness
//! drops, a page fires; the index recovers, the page resolves.

pub mod judge;
pub mod traffic;

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use umpire_core::alert::notification::Action;

use crate::view::{Board, LocalEvent, ProjectStats};
use judge::StandInJudge;
use traffic::{AGENT_EVERY, Phase, RAG_EVERY, RagAnswers, Traffic};

const MANIFESTS: &str = include_str!("manifests.yaml");
/// The rule the incident trips.
pub const DEMO_RULE: &str = "grounded-drop";
const INCIDENT_AT: Duration = Duration::from_secs(20);
/// The incident lasts at least until here, and until the page has fired.
const RECOVER_AT: Duration = Duration::from_secs(35);
const GIVE_UP_AFTER: Duration = Duration::from_secs(150);

pub struct Demo {
    /// What runs here (the judge endpoint may be the stand-in).
    pub runnable_yaml: String,
    /// What to copy into a repository (a real judge endpoint and its Secret).
    pub published_yaml: String,
    /// `stand-in judge at …` or the real endpoint.
    pub judge: String,
    _stand_in: Option<StandInJudge>,
}

impl Demo {
    /// Starts the stand-in judge unless `UMPIRE_JUDGE_API_KEY` is set, in which case the
    /// LLM judge calls `UMPIRE_DEMO_JUDGE_ENDPOINT` (default OpenAI) with
    /// `UMPIRE_DEMO_JUDGE_MODEL` (default gpt-4o-mini).
    pub async fn prepare() -> Result<Self, String> {
        let published = fill(
            "https://api.openai.com/v1",
            "gpt-4o-mini",
            "        apiKeySecretRef: {name: openai, key: api-key}\n",
        );
        if std::env::var_os("UMPIRE_JUDGE_API_KEY").is_some() {
            let endpoint = std::env::var("UMPIRE_DEMO_JUDGE_ENDPOINT")
                .unwrap_or_else(|_| "https://api.openai.com/v1".into());
            let model =
                std::env::var("UMPIRE_DEMO_JUDGE_MODEL").unwrap_or_else(|_| "gpt-4o-mini".into());
            return Ok(Self {
                runnable_yaml: fill(&endpoint, &model, ""),
                published_yaml: published,
                judge: format!("{model} at {endpoint} (key from UMPIRE_JUDGE_API_KEY)"),
                _stand_in: None,
            });
        }
        let stand_in = StandInJudge::start()
            .await
            .map_err(|e| format!("starting the stand-in judge: {e}"))?;
        Ok(Self {
            runnable_yaml: fill(&stand_in.base_url, "umpire-demo-stand-in", ""),
            published_yaml: published,
            judge: format!(
                "STAND-IN judge at {} (word overlap, not a model; set UMPIRE_JUDGE_API_KEY to use a real one)",
                stand_in.base_url
            ),
            _stand_in: Some(stand_in),
        })
    }

    /// Sends traffic and plays the incident; true once its page has fired and resolved.
    pub fn start(
        &self,
        project: &ProjectStats,
        board: Board,
        shutdown: CancellationToken,
    ) -> JoinHandle<bool> {
        let (grpc, http) = (project.grpc.clone(), project.http.clone());
        let judge = self.judge.clone();
        tokio::spawn(async move {
            let say = |board: &Board, message: String| {
                board.record_event(LocalEvent::Demo {
                    at_seconds: board.seconds(),
                    message,
                })
            };
            let mut traffic = match Traffic::connect(&grpc, &http).await {
                Ok(traffic) => traffic,
                Err(e) => {
                    say(&board, e);
                    return false;
                }
            };
            say(&board, format!("judge: {judge}"));
            say(
                &board,
                format!(
                    "traffic: a RAG answer (OpenInference) every {}ms and an agent turn (GenAI) every {}ms, over OTLP gRPC and HTTP; the incident starts at {}s",
                    RAG_EVERY.as_millis(),
                    AGENT_EVERY.as_millis(),
                    INCIDENT_AT.as_secs()
                ),
            );
            play(&mut traffic, &board, &shutdown, say).await
        })
    }
}

async fn play(
    traffic: &mut Traffic,
    board: &Board,
    shutdown: &CancellationToken,
    say: impl Fn(&Board, String),
) -> bool {
    let started = Instant::now();
    let mut phase = Phase::Healthy;
    let mut incident_seen = false;
    let mut last_error = String::new();
    let mut interval = tokio::time::interval(RAG_EVERY);
    let agent_every = (AGENT_EVERY.as_millis() / RAG_EVERY.as_millis()).max(1) as u64;
    let mut tick = 0u64;
    let mut answers = RagAnswers::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = interval.tick() => {}
        }
        let elapsed = started.elapsed();
        if phase == Phase::Healthy && !incident_seen && elapsed >= INCIDENT_AT {
            phase = Phase::StaleIndex;
            incident_seen = true;
            say(board, "INCIDENT: the retriever serves a stale index — answers are no longer grounded in the documents".into());
        }
        if phase == Phase::StaleIndex && elapsed >= RECOVER_AT && fired(board) {
            phase = Phase::Healthy;
            say(
                board,
                "RECOVERY: the index is rebuilt — answers are grounded again".into(),
            );
        }
        if incident_seen && resolved(board) {
            say(board, "the page resolved: demo complete".into());
            return true;
        }
        if elapsed > GIVE_UP_AFTER {
            say(
                board,
                format!(
                    "no page fired and resolved within {}s",
                    GIVE_UP_AFTER.as_secs()
                ),
            );
            return false;
        }
        let mut send = vec![answers.next(phase)];
        if tick.is_multiple_of(agent_every) {
            send.push(traffic::agent_trace());
        }
        tick += 1;
        for spans in send {
            if let Err(e) = traffic.send(spans).await
                && e != last_error
            {
                say(
                    board,
                    format!("sending failed (retrying with the next trace): {e}"),
                );
                last_error = e;
            }
        }
    }
}

fn fired(board: &Board) -> bool {
    board
        .policies()
        .iter()
        .flat_map(|p| p.alerts.iter())
        .any(|a| a.rule == DEMO_RULE && a.fired > 0)
}

fn resolved(board: &Board) -> bool {
    board.recent_notifications().iter().any(|n| {
        n.rule == DEMO_RULE && n.action == Action::Resolve && !n.outcome.starts_with("retrying")
    })
}

fn fill(endpoint: &str, model: &str, key_line: &str) -> String {
    MANIFESTS
        .replace("__JUDGE_ENDPOINT__", endpoint)
        .replace("__JUDGE_MODEL__", model)
        .replace("__JUDGE_KEY__", key_line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::LocalResources;

    #[test]
    fn the_demo_manifests_are_valid_as_published_and_as_run() {
        let published = fill(
            "https://api.openai.com/v1",
            "gpt-4o-mini",
            "        apiKeySecretRef: {name: openai, key: api-key}\n",
        );
        let resources = LocalResources::from_yaml(&published).unwrap();
        assert_eq!((resources.projects.len(), resources.policies.len()), (1, 2));
        LocalResources::from_yaml(&fill("http://127.0.0.1:9/v1", "stand-in", "")).unwrap();
    }
}
