//! Reading the model's verdict from its reply, whatever shape the reply took.

use serde_json::Value;

/// Finds the label in a reply: a JSON object (whole reply, or embedded e.g. in a code fence)
/// with `label` (or `verdict`/`answer`/`choice`), else exactly one label named as a word.
pub fn parse_verdict(reply: &str, labels: &[String]) -> Option<(String, Option<String>)> {
    let from_json = |value: &Value| -> Option<(String, Option<String>)> {
        let raw = ["label", "verdict", "answer", "choice"]
            .iter()
            .find_map(|k| value.get(*k)?.as_str())?;
        let label = match_label(raw, labels)?;
        let explanation = ["explanation", "reason", "reasoning"]
            .iter()
            .find_map(|k| value.get(*k)?.as_str())
            .map(str::to_owned);
        Some((label, explanation))
    };
    let trimmed = reply.trim();
    if let Ok(value) = serde_json::from_str::<Value>(trimmed)
        && let Some(found) = from_json(&value)
    {
        return Some(found);
    }
    if let (Some(start), Some(end)) = (trimmed.find('{'), trimmed.rfind('}'))
        && start < end
        && let Ok(value) = serde_json::from_str::<Value>(&trimmed[start..=end])
        && let Some(found) = from_json(&value)
    {
        return Some(found);
    }
    let words: Vec<String> = trimmed
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase().replace('-', "_"))
        .collect();
    let named: Vec<&String> = labels
        .iter()
        .filter(|label| words.iter().any(|w| w == &label.to_lowercase()))
        .collect();
    match named.as_slice() {
        [only] => Some(((*only).clone(), Some(trimmed.to_owned()))),
        _ => None,
    }
}

fn match_label(raw: &str, labels: &[String]) -> Option<String> {
    let normalised = raw
        .trim()
        .trim_matches(|c: char| c == '"' || c == '\'' || c == '.' || c == '`')
        .to_lowercase()
        .replace([' ', '-'], "_");
    labels
        .iter()
        .find(|l| l.to_lowercase() == normalised)
        .cloned()
}
