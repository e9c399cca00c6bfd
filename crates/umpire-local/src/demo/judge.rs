//! The demo's stand-in judge, used when no LLM key is configured: an OpenAI-compatible
//! `POST /v1/chat/completions` on loopback that judges the `groundedness` prompt by word
//! overlap — the share of the answer's words found in the reference documents — and the
//! `documentRelevance` prompt by whether the document shares any of the query's words. It is a
//! stand-in, labelled as one everywhere it shows; it exercises the real LLM-judge path
//! (HTTP, prompt rendering, label parsing, limits), not a model's judgement.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Answers whose words are at least this share in the documents count as grounded.
const GROUNDED_OVERLAP: f64 = 0.7;

pub struct StandInJudge {
    pub base_url: String,
    stop: CancellationToken,
}

impl StandInJudge {
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let app = Router::new().route("/v1/chat/completions", post(complete));
        let until = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { until.cancelled().await })
                .await;
        });
        Ok(Self {
            base_url: format!("http://{addr}/v1"),
            stop,
        })
    }
}

impl Drop for StandInJudge {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn complete(Json(request): Json<Value>) -> Response {
    let prompt = request["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default();
    let verdict = if let Some(overlap) = groundedness_overlap(prompt) {
        let label = if overlap >= GROUNDED_OVERLAP {
            "grounded"
        } else {
            "ungrounded"
        };
        json!({
            "label": label,
            "explanation": format!("stand-in judge: {:.0}% of the answer's words are in the documents", overlap * 100.0),
        })
    } else if let Some(shared) = document_relevance(prompt) {
        let label = if shared > 0 { "relevant" } else { "unrelated" };
        json!({
            "label": label,
            "explanation": format!("stand-in judge: {shared} of the query's words are in the document"),
        })
    } else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": "the demo's stand-in judge only judges the groundedness and documentRelevance templates"}})),
        )
            .into_response();
    };
    Json(json!({
        "id": "chatcmpl-umpire-demo",
        "object": "chat.completion",
        "model": request["model"],
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": verdict.to_string()}}],
        "usage": {"prompt_tokens": prompt.len() / 4, "completion_tokens": 24, "total_tokens": prompt.len() / 4 + 24},
    }))
    .into_response()
}

/// Words of 4+ letters cut to 5: a crude stem, so `returned` matches `return`.
fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 4)
        .map(|w| w.to_lowercase().chars().take(5).collect())
        .collect()
}

/// How many of the query's words (stemmed as above) occur in the document, for the
/// `documentRelevance` prompt.
pub(crate) fn document_relevance(prompt: &str) -> Option<usize> {
    let (_, rest) = prompt.split_once("[Query]\n")?;
    let (query, rest) = rest.split_once("\n\n[Document]\n")?;
    let document = rest.split("\n\nThe document is").next()?;
    let known = words(document);
    Some(words(query).iter().filter(|w| known.contains(*w)).count())
}

/// The share of the answer's words (4+ letters, compared on their first 5) that occur in the
/// reference documents.
pub(crate) fn groundedness_overlap(prompt: &str) -> Option<f64> {
    let (_, rest) = prompt.split_once("[Reference documents]\n")?;
    let (documents, rest) = rest.split_once("\n\n[Answer]\n")?;
    let answer = rest.split("\n\nAn answer is").next()?;
    let known = words(documents);
    let said = words(answer);
    if said.is_empty() {
        return Some(0.0);
    }
    Some(said.iter().filter(|w| known.contains(*w)).count() as f64 / said.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(documents: &str, answer: &str) -> String {
        format!(
            "x\n\n[Question]\nq?\n\n[Reference documents]\n{documents}\n\n[Answer]\n{answer}\n\nAn answer is `grounded` when …"
        )
    }

    #[test]
    fn overlap_tells_grounded_from_invented_answers() {
        let docs = "Returns are accepted within 30 days of delivery with the receipt.";
        let grounded = groundedness_overlap(&prompt(
            docs,
            "Returns are accepted within 30 days of delivery.",
        ))
        .unwrap();
        let invented = groundedness_overlap(&prompt(
            docs,
            "Refunds arrive instantly through cryptocurrency wallets.",
        ))
        .unwrap();
        assert!(grounded >= GROUNDED_OVERLAP, "{grounded}");
        assert!(invented < GROUNDED_OVERLAP, "{invented}");
        assert_eq!(groundedness_overlap("no markers"), None);
    }

    #[test]
    fn relevance_asks_whether_the_document_speaks_of_the_query() {
        let prompt = |query: &str, document: &str| {
            format!(
                "x\n\n[Query]\n{query}\n\n[Document]\n{document}\n\nThe document is `relevant` when …"
            )
        };
        let returns = "Returns policy: clothing can be returned within 30 days of delivery.";
        let stale = "Catalogue 2019: spring collection of linen shirts and canvas sneakers.";
        let question = "How long do I have to return a jacket?";
        assert!(document_relevance(&prompt(question, returns)).unwrap() > 0);
        assert_eq!(document_relevance(&prompt(question, stale)), Some(0));
        assert_eq!(document_relevance("no markers"), None);
    }
}
