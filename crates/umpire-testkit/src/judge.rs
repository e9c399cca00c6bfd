//! An OpenAI-compatible judge server: `POST /v1/chat/completions`, with scriptable verdicts,
//! latency, failures (429 with `Retry-After`, 5xx, 400 for unsupported `response_format`), a
//! record of every request received, and the highest concurrency it saw.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One scripted answer, used before the default behaviour.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// 200 with this assistant message content.
    Reply(String),
    /// This status with a JSON error body (and `Retry-After` seconds when given).
    Status { code: u16, retry_after: Option<u64> },
    /// Wait, then answer normally.
    Delay(Duration),
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub headers: HashMap<String, String>,
    pub body: Value,
}

impl Recorded {
    /// The user message (the rendered prompt).
    pub fn prompt(&self) -> String {
        self.body["messages"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_owned()
    }

    pub fn response_format(&self) -> Option<String> {
        self.body["response_format"]["type"]
            .as_str()
            .map(str::to_owned)
    }
}

type Verdict = Arc<dyn Fn(&Recorded) -> String + Send + Sync>;

struct JudgeState {
    script: Mutex<VecDeque<Scripted>>,
    verdict: Mutex<Verdict>,
    rejected_formats: Mutex<Vec<String>>,
    latency: Mutex<Duration>,
    requests: Mutex<Vec<Recorded>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    expected_key: Mutex<Option<String>>,
}

pub struct JudgeServer {
    addr: SocketAddr,
    state: Arc<JudgeState>,
    task: JoinHandle<()>,
}

impl JudgeServer {
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(std::net::IpAddr::from([127, 0, 0, 1])).await
    }

    /// Listens on `listen` (e.g. a pod network's gateway, for pods in their own network
    /// namespaces) instead of loopback.
    pub async fn start_on(listen: std::net::IpAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind((listen, 0)).await?;
        let addr = listener.local_addr()?;
        let default_verdict: Verdict = Arc::new(|request: &Recorded| {
            // The first allowed label: from the structured-output enum, else the system prompt.
            request.body["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"]
                [0]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| "pass".into())
        });
        let state = Arc::new(JudgeState {
            script: Mutex::new(VecDeque::new()),
            verdict: Mutex::new(default_verdict),
            rejected_formats: Mutex::new(Vec::new()),
            latency: Mutex::new(Duration::ZERO),
            requests: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            expected_key: Mutex::new(None),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, state, task })
    }

    /// The base URL to configure as a judge `endpoint`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Decides the label of every unscripted request.
    pub fn set_verdict(&self, verdict: impl Fn(&Recorded) -> String + Send + Sync + 'static) {
        *lock(&self.state.verdict) = Arc::new(verdict);
    }

    pub fn push(&self, scripted: Scripted) {
        lock(&self.state.script).push_back(scripted);
    }

    /// Answers 400 to requests whose `response_format.type` is one of these.
    pub fn reject_formats(&self, formats: &[&str]) {
        *lock(&self.state.rejected_formats) = formats.iter().map(|f| (*f).to_owned()).collect();
    }

    pub fn set_latency(&self, latency: Duration) {
        *lock(&self.state.latency) = latency;
    }

    /// Requires `Authorization: Bearer <key>` (401 otherwise).
    pub fn require_key(&self, key: &str) {
        *lock(&self.state.expected_key) = Some(key.to_owned());
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state.requests).clone()
    }

    pub fn max_concurrency(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for JudgeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

struct InFlight<'a>(&'a JudgeState);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn complete(
    State(state): State<Arc<JudgeState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _guard = InFlight(&state);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let recorded = Recorded {
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect(),
        body: body.clone(),
    };
    lock(&state.requests).push(recorded.clone());

    let latency = *lock(&state.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let expected = lock(&state.expected_key).clone();
    if let Some(key) = expected
        && recorded.headers.get("authorization").map(String::as_str)
            != Some(format!("Bearer {key}").as_str())
    {
        return error(401, "invalid api key", None);
    }
    if let Some(format) = recorded.response_format()
        && lock(&state.rejected_formats).contains(&format)
    {
        return error(
            400,
            &format!("response_format {format} is not supported by this model"),
            None,
        );
    }
    loop {
        let next = lock(&state.script).pop_front();
        match next {
            Some(Scripted::Delay(delay)) => tokio::time::sleep(delay).await,
            Some(Scripted::Status { code, retry_after }) => {
                return error(code, "scripted failure", retry_after);
            }
            Some(Scripted::Reply(content)) => return reply(&content),
            None => {
                let verdict = lock(&state.verdict).clone();
                let label = verdict(&recorded);
                return reply(
                    &json!({"explanation": format!("judged {label}"), "label": label}).to_string(),
                );
            }
        }
    }
}

fn reply(content: &str) -> Response {
    let body = json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error(code: u16, message: &str, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": {"message": message}}).to_string(),
    )
        .into_response();
    if let Some(seconds) = retry_after
        && let Ok(value) = seconds.to_string().parse()
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}
