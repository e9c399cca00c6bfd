//! Header values built from text Umpire does not control — error messages, reasons — which
//! NATS refuses if they hold a line break (`async_nats` panics on `&str` conversion; the
//! task that was dead-lettering a message dies, and the message is redelivered for ever).

/// The longest reason a header carries; the rest is cut (with an ellipsis).
pub const MAX_REASON_CHARS: usize = 512;

/// `text` as one header line: line breaks and other control characters become spaces, and
/// it is cut to [`MAX_REASON_CHARS`].
pub fn reason_value(text: &str) -> String {
    let mut value: String = text
        .chars()
        .take(MAX_REASON_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(MAX_REASON_CHARS).is_some() {
        value.push('…');
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_line_reason_is_a_valid_header_value() {
        let reason = "expected `,` at line 1 column 5\n\n\t{\"a\":\r\n\t....^\n";
        let value = reason_value(reason);
        assert!(
            value.parse::<async_nats::HeaderValue>().is_ok(),
            "{value:?}"
        );
        assert!(value.starts_with("expected `,` at line 1 column 5"));
    }

    #[test]
    fn a_long_reason_is_cut() {
        let value = reason_value(&"é".repeat(2 * MAX_REASON_CHARS));
        assert_eq!(value.chars().count(), MAX_REASON_CHARS + 1);
        assert!(value.ends_with('…'));
        assert_eq!(reason_value("short"), "short");
    }
}
