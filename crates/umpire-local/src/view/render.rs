//! Turning the [`Board`] into output: a table redrawn in place on a terminal, plain lines
//! when stdout is a file or pipe, or one JSON object per line (`--format json`).

use std::fmt::Write as _;
use std::io::Write;

use super::{AlertState, Board, LocalEvent, NotificationLine, PolicyStats, ProjectStats};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// A live table (the default on a terminal).
    Table,
    /// Log lines (the default otherwise).
    Plain,
    /// One JSON event per line.
    Json,
}

pub struct Renderer {
    format: OutputFormat,
    out: std::io::Stdout,
    /// The header of the table: what runs where.
    header: Vec<String>,
}

impl Renderer {
    pub fn new(format: OutputFormat) -> Self {
        Self {
            format,
            out: std::io::stdout(),
            header: Vec::new(),
        }
    }

    pub fn set_header(&mut self, lines: Vec<String>) {
        self.header = lines;
    }

    /// Writes events as they come (plain and JSON); the table shows them in place.
    pub fn events(&mut self, events: &[LocalEvent]) {
        let mut text = String::new();
        for event in events {
            match self.format {
                OutputFormat::Json => {
                    if let Ok(line) = serde_json::to_string(event) {
                        let _ = writeln!(text, "{line}");
                    }
                }
                OutputFormat::Plain => {
                    let _ = writeln!(text, "{}", plain(event));
                }
                OutputFormat::Table => {
                    if let LocalEvent::Demo { .. } | LocalEvent::Adapted(_) = event {
                        self.header.push(plain(event));
                    }
                }
            }
        }
        self.write(&text);
    }

    /// The periodic figures: redraws the table, or prints a stats event.
    pub fn figures(&mut self, board: &Board) {
        match self.format {
            OutputFormat::Table => {
                let table = table(board, &self.header);
                // Home the cursor and clear, then draw: one write, so no flicker.
                self.write(&format!("\x1b[H\x1b[2J{table}"));
            }
            OutputFormat::Plain | OutputFormat::Json => {
                let event = LocalEvent::Stats {
                    at_seconds: board.seconds(),
                    projects: board.projects(),
                    policies: board.policies(),
                };
                self.events(&[event]);
            }
        }
    }

    fn write(&mut self, text: &str) {
        if !text.is_empty() {
            let _ = self.out.write_all(text.as_bytes());
            let _ = self.out.flush();
        }
    }
}

fn ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

fn state_word(state: AlertState) -> &'static str {
    match state {
        AlertState::Ok => "ok",
        AlertState::Pending => "pending",
        AlertState::Firing => "FIRING",
    }
}

pub fn plain(event: &LocalEvent) -> String {
    match event {
        LocalEvent::Adapted(a) => format!("adapted  {} {}: {}", a.resource, a.field, a.message),
        LocalEvent::Started {
            nats,
            projects,
            policies,
        } => {
            let projects: Vec<String> = projects
                .iter()
                .map(|p| format!("{} (OTLP gRPC {}, HTTP {})", p.name, p.grpc, p.http))
                .collect();
            format!(
                "started  NATS {nats}; projects: {}; policies: {}",
                projects.join(", "),
                policies.join(", ")
            )
        }
        LocalEvent::Alert {
            at_seconds,
            policy,
            rule,
            state,
        } => format!(
            "{at_seconds:>6.1}s alert    {policy}/{rule} {}",
            state_word(*state)
        ),
        LocalEvent::Notification(n) => notification(n),
        LocalEvent::Stats {
            at_seconds,
            projects,
            policies,
        } => stats_line(*at_seconds, projects, policies),
        LocalEvent::Demo {
            at_seconds,
            message,
        } => format!("{at_seconds:>6.1}s demo     {message}"),
    }
}

fn notification(n: &NotificationLine) -> String {
    let action = match n.action {
        umpire_core::alert::notification::Action::Trigger => "trigger",
        umpire_core::alert::notification::Action::Resolve => "resolve",
    };
    let mut line = format!(
        "{:>6.1}s notify   {action} {}/{} via {}: {} — {}",
        n.at_seconds, n.policy, n.rule, n.route, n.outcome, n.summary
    );
    if let Some(body) = &n.body {
        let _ = write!(line, "\n         body: {body}");
    }
    line
}

fn stats_line(at_seconds: f64, projects: &[ProjectStats], policies: &[PolicyStats]) -> String {
    let mut parts = Vec::new();
    for p in projects {
        parts.push(format!(
            "{}: {} spans received, {} kept",
            p.name, p.spans_received, p.spans_kept
        ));
    }
    for policy in policies {
        for j in &policy.judges {
            parts.push(format!(
                "{}/{}: pass rate {} (n={}), mean {}, errors {}",
                policy.name,
                j.name,
                ratio(j.pass_rate()),
                j.scored(),
                ratio(j.mean()),
                j.errors
            ));
        }
    }
    format!("{at_seconds:>6.1}s stats    {}", parts.join("; "))
}

fn table(board: &Board, header: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "umpire local — {:.0}s — Ctrl-C stops\n",
        board.seconds()
    );
    for line in header {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "\n{:<28} {:>14} {:>12}   OTLP",
        "TRACE PROJECT", "SPANS IN", "KEPT"
    );
    for p in board.projects() {
        let _ = writeln!(
            out,
            "{:<28} {:>14} {:>12}   grpc {} http {}",
            p.name, p.spans_received, p.spans_kept, p.grpc, p.http
        );
    }
    let _ = writeln!(
        out,
        "\n{:<36} {:>8} {:>8} {:>8} {:>8} {:>10} {:>6}",
        "POLICY / JUDGE", "PASS", "FAIL", "ERRORS", "SKIPPED", "PASS RATE", "MEAN"
    );
    let policies = board.policies();
    for policy in &policies {
        for j in &policy.judges {
            let _ = writeln!(
                out,
                "{:<36} {:>8} {:>8} {:>8} {:>8} {:>10} {:>6}",
                format!("{}/{}", policy.name, j.name),
                j.passed,
                j.failed,
                j.errors,
                j.skipped,
                ratio(j.pass_rate()),
                ratio(j.mean())
            );
        }
    }
    let _ = writeln!(out, "\n{:<36} {:>8} {:>8}", "ALERT", "STATE", "FIRED");
    for policy in &policies {
        for a in &policy.alerts {
            let _ = writeln!(
                out,
                "{:<36} {:>8} {:>8}",
                format!("{}/{}", policy.name, a.rule),
                state_word(a.state),
                a.fired
            );
        }
    }
    let _ = writeln!(out, "\nNOTIFICATIONS");
    let recent = board.recent_notifications();
    if recent.is_empty() {
        let _ = writeln!(out, "  none yet");
    }
    for n in recent {
        // The body is in the plain and JSON output; the table keeps one line each.
        let line = notification(&n);
        let _ = writeln!(
            out,
            "  {}",
            line.lines().next().unwrap_or_default().trim_start()
        );
    }
    out
}
