//! What the evaluator knows about a span's trace: retrieved documents (the context a
//! groundedness judge needs usually sits on a sibling retriever span) and the agent loop.

use std::collections::HashMap;

use crate::span::{AiSpanKind, RetrievedDocument, Span};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceContext {
    /// Documents retrieved anywhere in the trace, in arrival order (bounded).
    pub documents: Vec<RetrievedDocument>,
    pub spans: u64,
    pub llm_calls: u64,
    /// Tool calls the model requested, by (tool, arguments).
    requested: HashMap<(String, String), u64>,
    /// Tool executions (TOOL / execute_tool spans), by (tool, arguments).
    executed: HashMap<(String, String), u64>,
    /// Why the trace is known to be incomplete (`root_missing`, `buffer_full`, ...): a
    /// trace-level judge then reports `incomplete_trace` instead of judging a fragment.
    /// `None` for a whole trace, and for a span judged on its own.
    pub incomplete: Option<String>,
}

/// Documents kept per trace: enough for any judge prompt, bounded for memory.
const MAX_DOCUMENTS: usize = 64;

impl TraceContext {
    pub fn from_spans<'a>(spans: impl IntoIterator<Item = &'a Span>) -> Self {
        let mut context = Self::default();
        for span in spans {
            context.add(span);
        }
        context
    }

    pub fn add(&mut self, span: &Span) {
        self.spans += 1;
        let ai = &span.ai;
        if ai.kind == Some(AiSpanKind::Llm) {
            self.llm_calls += 1;
        }
        for document in &ai.documents {
            if self.documents.len() < MAX_DOCUMENTS {
                self.documents.push(document.clone());
            }
        }
        if let Some(tool) = &ai.tool {
            *self
                .executed
                .entry(key(&tool.name, tool.arguments.as_deref()))
                .or_default() += 1;
        }
        for call in &ai.tool_calls {
            *self
                .requested
                .entry(key(&call.name, call.arguments.as_deref()))
                .or_default() += 1;
        }
    }

    /// Agent frameworks record tool executions as spans; bare LLM instrumentation records only
    /// the model's requests. Executions are used when the trace has any, so one call is not
    /// counted twice.
    fn calls(&self) -> &HashMap<(String, String), u64> {
        if self.executed.is_empty() {
            &self.requested
        } else {
            &self.executed
        }
    }

    pub fn tool_calls(&self) -> u64 {
        self.calls().values().sum()
    }

    /// Most calls of one tool with identical arguments (a stuck loop).
    pub fn max_repeated_tool_calls(&self) -> u64 {
        self.calls().values().copied().max().unwrap_or(0)
    }
}

fn key(name: &str, arguments: Option<&str>) -> (String, String) {
    (name.to_owned(), arguments.unwrap_or_default().to_owned())
}
