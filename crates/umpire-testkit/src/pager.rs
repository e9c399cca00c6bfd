//! A PagerDuty Events API v2 stand-in: `POST /v2/enqueue` validates events as the real API
//! documents (400 `invalid event` with the reasons; 202 `success` with the dedup key), can
//! answer 429 / 5xx on demand, and records every accepted event. `POST /hook` accepts any
//! JSON and records it with its headers (for webhook routes).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// An event the receiver accepted (or a webhook call it recorded).
#[derive(Debug, Clone)]
pub struct Received {
    pub at: SystemTime,
    pub headers: HashMap<String, String>,
    /// The raw body (for signature checks).
    pub raw: Vec<u8>,
    pub body: Value,
}

impl Received {
    pub fn action(&self) -> &str {
        self.body["event_action"].as_str().unwrap_or_default()
    }

    pub fn dedup_key(&self) -> &str {
        self.body["dedup_key"].as_str().unwrap_or_default()
    }
}

#[derive(Default)]
struct PagerState {
    /// Statuses answered before normal handling, one per request.
    script: Mutex<VecDeque<u16>>,
    events: Mutex<Vec<Received>>,
    hooks: Mutex<Vec<Received>>,
    /// Every request's answer, in order (status codes).
    answers: Mutex<Vec<u16>>,
    rejected: Mutex<Vec<(Value, Vec<String>)>>,
}

pub struct PagerDutyReceiver {
    addr: SocketAddr,
    state: Arc<PagerState>,
    task: JoinHandle<()>,
}

impl PagerDutyReceiver {
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(std::net::IpAddr::from([127, 0, 0, 1])).await
    }

    /// Listens on `listen` (e.g. a pod network's gateway, for pods in their own network
    /// namespaces) instead of loopback.
    pub async fn start_on(listen: std::net::IpAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind((listen, 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(PagerState::default());
        let app = Router::new()
            .route("/v2/enqueue", post(enqueue))
            .route("/hook", post(hook))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, state, task })
    }

    /// The Events API URL to configure (`…/v2/enqueue`).
    pub fn events_url(&self) -> String {
        format!("http://{}/v2/enqueue", self.addr)
    }

    pub fn hook_url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Answer the next requests with these statuses (e.g. `[429, 500, 503]`) before
    /// behaving normally again.
    pub fn fail_next(&self, statuses: &[u16]) {
        lock(&self.state.script).extend(statuses.iter().copied());
    }

    /// Accepted events, in arrival order.
    pub fn events(&self) -> Vec<Received> {
        lock(&self.state.events).clone()
    }

    /// The accepted events' actions (`trigger`, `resolve`…), in arrival order.
    pub fn actions(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e.action().to_owned())
            .collect()
    }

    pub fn hooks(&self) -> Vec<Received> {
        lock(&self.state.hooks).clone()
    }

    /// The status of every answer given, in order.
    pub fn answers(&self) -> Vec<u16> {
        lock(&self.state.answers).clone()
    }

    /// Events refused with 400, with the reasons.
    pub fn rejected(&self) -> Vec<(Value, Vec<String>)> {
        lock(&self.state.rejected).clone()
    }
}

impl Drop for PagerDutyReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn header_map(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

fn answer(state: &PagerState, status: StatusCode, body: Value) -> Response {
    lock(&state.answers).push(status.as_u16());
    (status, axum::Json(body)).into_response()
}

async fn enqueue(State(state): State<Arc<PagerState>>, headers: HeaderMap, raw: Bytes) -> Response {
    let scripted = lock(&state.script).pop_front();
    if let Some(code) = scripted {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = if code == 429 {
            json!({"status": "throttle event", "message": "Requests for this service are arriving too quickly. Please retry later."})
        } else {
            json!({"status": "error", "message": "scripted failure"})
        };
        return answer(&state, status, body);
    }
    let body: Value = match serde_json::from_slice(&raw) {
        Ok(body) => body,
        Err(e) => {
            return answer(
                &state,
                StatusCode::BAD_REQUEST,
                json!({"status": "invalid event", "message": "Event object is invalid", "errors": [format!("body is not JSON: {e}")]}),
            );
        }
    };
    let errors = validate_event(&body);
    if !errors.is_empty() {
        lock(&state.rejected).push((body, errors.clone()));
        return answer(
            &state,
            StatusCode::BAD_REQUEST,
            json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}),
        );
    }
    let dedup_key = body["dedup_key"].as_str().unwrap_or_default().to_owned();
    lock(&state.events).push(Received {
        at: SystemTime::now(),
        headers: header_map(&headers),
        raw: raw.to_vec(),
        body,
    });
    answer(
        &state,
        StatusCode::ACCEPTED,
        json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key}),
    )
}

async fn hook(State(state): State<Arc<PagerState>>, headers: HeaderMap, raw: Bytes) -> Response {
    if let Some(code) = lock(&state.script).pop_front() {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return answer(&state, status, json!({"error": "scripted failure"}));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&raw) else {
        return answer(
            &state,
            StatusCode::BAD_REQUEST,
            json!({"error": "not JSON"}),
        );
    };
    lock(&state.hooks).push(Received {
        at: SystemTime::now(),
        headers: header_map(&headers),
        raw: raw.to_vec(),
        body,
    });
    answer(&state, StatusCode::OK, json!({"ok": true}))
}

const SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];
const ACTIONS: [&str; 3] = ["trigger", "acknowledge", "resolve"];

/// The Events API v2 rules, as documented.
pub fn validate_event(event: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(object) = event.as_object() else {
        return vec!["the event must be a JSON object".into()];
    };
    match object.get("routing_key").and_then(Value::as_str) {
        Some(key) if !key.is_empty() => {}
        _ => errors.push("'routing_key' is missing or blank".into()),
    }
    let action = object.get("event_action").and_then(Value::as_str);
    if !action.is_some_and(|a| ACTIONS.contains(&a)) {
        errors.push("'event_action' must be one of trigger, acknowledge, resolve".into());
    }
    match object.get("dedup_key") {
        None if action != Some("trigger") => {
            errors.push("'dedup_key' is required to acknowledge or resolve".into())
        }
        None => {}
        Some(Value::String(key)) if key.chars().count() <= 255 && !key.is_empty() => {}
        Some(_) => errors.push("'dedup_key' must be a string of 1 to 255 characters".into()),
    }
    if action == Some("trigger") {
        let Some(payload) = object.get("payload").and_then(Value::as_object) else {
            errors.push("'payload' is required for trigger events".into());
            return errors;
        };
        match payload.get("summary").and_then(Value::as_str) {
            Some(s) if !s.is_empty() && s.chars().count() <= 1024 => {}
            _ => errors.push("'payload.summary' must be a string of 1 to 1024 characters".into()),
        }
        match payload.get("source").and_then(Value::as_str) {
            Some(s) if !s.is_empty() => {}
            _ => errors.push("'payload.source' is missing or blank".into()),
        }
        if !payload
            .get("severity")
            .and_then(Value::as_str)
            .is_some_and(|s| SEVERITIES.contains(&s))
        {
            errors.push("'payload.severity' must be one of critical, error, warning, info".into());
        }
        if let Some(timestamp) = payload.get("timestamp")
            && !timestamp.as_str().is_some_and(looks_like_iso8601)
        {
            errors.push("'payload.timestamp' must be an ISO 8601 timestamp".into());
        }
        for field in ["component", "group", "class"] {
            if payload.get(field).is_some_and(|v| !v.is_string()) {
                errors.push(format!("'payload.{field}' must be a string"));
            }
        }
    }
    if let Some(links) = object.get("links")
        && !links
            .as_array()
            .is_some_and(|l| l.iter().all(|l| l["href"].is_string()))
    {
        errors.push("'links' must be an array of objects with 'href'".into());
    }
    errors
}

/// `YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm)`.
fn looks_like_iso8601(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    digits(0..4)
        && bytes.get(4) == Some(&b'-')
        && digits(5..7)
        && bytes.get(7) == Some(&b'-')
        && digits(8..10)
        && bytes.get(10) == Some(&b'T')
        && digits(11..13)
        && bytes.get(13) == Some(&b':')
        && digits(14..16)
        && (text.ends_with('Z') || text[text.len().saturating_sub(6)..].starts_with(['+', '-']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_like_the_events_api() {
        let good = json!({"routing_key": "R0UT1NGKEY", "event_action": "trigger", "dedup_key": "a/b",
            "payload": {"summary": "x", "source": "umpire", "severity": "critical", "timestamp": "2026-11-22T05:00:00.123Z"}});
        assert!(
            validate_event(&good).is_empty(),
            "{:?}",
            validate_event(&good)
        );
        let resolve = json!({"routing_key": "k", "event_action": "resolve", "dedup_key": "a/b"});
        assert!(validate_event(&resolve).is_empty());
        let errors = validate_event(&json!({"routing_key": "", "event_action": "page"}));
        for needle in ["routing_key", "event_action", "dedup_key"] {
            assert!(
                errors.iter().any(|e| e.contains(needle)),
                "{needle}: {errors:?}"
            );
        }
        let bad_trigger = json!({"routing_key": "k", "event_action": "trigger", "dedup_key": "k".repeat(256),
            "payload": {"summary": "x".repeat(1025), "severity": "fatal", "timestamp": "yesterday", "class": 3}});
        let errors = validate_event(&bad_trigger);
        for needle in [
            "dedup_key",
            "summary",
            "source",
            "severity",
            "timestamp",
            "class",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(needle)),
                "{needle}: {errors:?}"
            );
        }
    }
}
