//! Finding personal data and secrets in text: a pattern finds candidates, and a checksum or
//! a structural rule keeps only those that can be what they look like (a Luhn-valid card
//! number with a card network's prefix, an IBAN whose mod-97 check holds, an SSN outside the
//! never-issued ranges, a token with the entropy of a generated key). What a match *is*
//! never leaves this module: callers get kinds and counts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use regex::Regex;

/// A kind of personal data or secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PiiKind {
    Email,
    Phone,
    PaymentCard,
    Iban,
    UsSsn,
    Secret,
}

impl PiiKind {
    pub const ALL: [PiiKind; 6] = [
        Self::Email,
        Self::Phone,
        Self::PaymentCard,
        Self::Iban,
        Self::UsSsn,
        Self::Secret,
    ];

    /// The name used in EvalPolicies and verdicts.
    pub fn name(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
            Self::PaymentCard => "paymentCard",
            Self::Iban => "iban",
            Self::UsSsn => "usSsn",
            Self::Secret => "secret",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// How many distinct values of each kind `text` holds (the same address twice counts once).
pub fn find(text: &str, kinds: &[PiiKind]) -> BTreeMap<PiiKind, usize> {
    values(text, kinds)
        .into_iter()
        .map(|(kind, values)| (kind, values.len()))
        .collect()
}

/// The distinct values found per kind: for counting across fields, never to be shown.
pub(super) fn values(text: &str, kinds: &[PiiKind]) -> BTreeMap<PiiKind, BTreeSet<String>> {
    let mut found = BTreeMap::new();
    for kind in kinds {
        let values: BTreeSet<String> = match kind {
            PiiKind::Email => emails(text),
            PiiKind::Phone => phones(text),
            PiiKind::PaymentCard => cards(text),
            PiiKind::Iban => ibans(text),
            PiiKind::UsSsn => ssns(text),
            PiiKind::Secret => secrets(text),
        };
        if !values.is_empty() {
            found.insert(*kind, values);
        }
    }
    found
}

fn pattern(source: &str) -> Regex {
    // The patterns are constants of this module, covered by its tests.
    #[allow(clippy::expect_used)]
    Regex::new(source).expect("a built-in PII pattern compiles")
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r"(?i)\b[a-z0-9][a-z0-9._%+-]{0,63}@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}\b",
    )
});

fn emails(text: &str) -> BTreeSet<String> {
    EMAIL
        .find_iter(text)
        .map(|m| m.as_str().to_ascii_lowercase())
        .collect()
}

/// International numbers written with `+`, North American numbers with separators
/// (`(415) 555-0132`, `415.555.0132`), and European national numbers starting with 0 in
/// groups (`06 12 34 56 78`, `020 7946 0958`). Digit runs without separators are not
/// taken: in text they are far more often order numbers, amounts or ids.
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    pattern(concat!(
        r"(?:\+[1-9]\d{0,2}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,4}){1,4}\b)",
        r"|(?:(?:\b1[\s.-])?(?:\(\b[2-9]\d{2}\)\s?|\b[2-9]\d{2}[\s.-])[2-9]\d{2}[\s.-]\d{4}\b)",
        r"|(?:\b0\d(?:[\s.]\d{2}){4}\b)",
        r"|(?:\b0\d{2,4}[\s-]\d{3,4}[\s-]?\d{3,4}\b)",
    ))
});

fn phones(text: &str) -> BTreeSet<String> {
    PHONE
        .find_iter(text)
        .filter(|m| !inside_longer_number(text, m.start(), m.end()))
        .map(|m| digits(m.as_str()))
        .filter(|d| (8..=15).contains(&d.len()))
        .collect()
}

/// A match with digits right before or after it (glued, or one separator away) is part
/// of a longer number: an IBAN's groups, an amount, a card number.
fn inside_longer_number(text: &str, start: usize, end: usize) -> bool {
    let separator = |c: char| matches!(c, ' ' | '-' | '.' | ',' | '/');
    let mut before = text[..start].chars().rev();
    let mut after = text[end..].chars();
    let touches = |first: Option<char>, second: Option<char>| match first {
        Some(c) if c.is_ascii_digit() => true,
        Some(c) if separator(c) => second.is_some_and(|d| d.is_ascii_digit()),
        _ => false,
    };
    touches(before.next(), before.next()) || touches(after.next(), after.next())
}

fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

static CARD: LazyLock<Regex> = LazyLock::new(|| pattern(r"\b\d(?:[ -]?\d){12,18}\b"));

fn cards(text: &str) -> BTreeSet<String> {
    CARD.find_iter(text)
        .map(|m| digits(m.as_str()))
        .filter(|number| card_network(number) && luhn(number))
        .collect()
}

/// Whether the number has a card network's prefix and one of its lengths (Visa,
/// Mastercard, American Express, Discover, JCB, Diners Club, UnionPay).
fn card_network(number: &str) -> bool {
    let len = number.len();
    let prefix = |n: usize| number.get(..n).and_then(|p| p.parse::<u32>().ok());
    let (Some(p1), Some(p2), Some(p3), Some(p4)) = (prefix(1), prefix(2), prefix(3), prefix(4))
    else {
        return false;
    };
    (p1 == 4 && matches!(len, 13 | 16 | 19))
        || ((51..=55).contains(&p2) && len == 16)
        || ((2221..=2720).contains(&p4) && len == 16)
        || (matches!(p2, 34 | 37) && len == 15)
        || ((p4 == 6011 || (644..=649).contains(&p3) || p2 == 65) && (16..=19).contains(&len))
        || ((3528..=3589).contains(&p4) && (16..=19).contains(&len))
        || ((matches!(p2, 36 | 38) || (300..=305).contains(&p3)) && (14..=19).contains(&len))
        || (p2 == 62 && (16..=19).contains(&len))
}

/// The Luhn checksum every payment card number carries.
fn luhn(number: &str) -> bool {
    let mut sum = 0u32;
    for (i, c) in number.chars().rev().enumerate() {
        let Some(mut d) = c.to_digit(10) else {
            return false;
        };
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

static IBAN: LazyLock<Regex> = LazyLock::new(|| pattern(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"));

/// IBAN lengths by country (the IBAN registry), so a match that ran on into the next word
/// is cut where the IBAN ends.
const IBAN_LENGTHS: [(&str, usize); 54] = [
    ("AD", 24),
    ("AE", 23),
    ("AT", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("CH", 21),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("EE", 20),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IS", 26),
    ("IT", 27),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("ME", 22),
    ("MK", 19),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PL", 28),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("BR", 29),
];

fn ibans(text: &str) -> BTreeSet<String> {
    IBAN.find_iter(text)
        .filter_map(|m| {
            let compact: String = m.as_str().chars().filter(|c| *c != ' ').collect();
            let length = IBAN_LENGTHS
                .iter()
                .find(|(country, _)| compact.starts_with(country))
                .map(|(_, length)| *length)?;
            let iban = compact.get(..length)?;
            iban_checksum(iban).then(|| iban.to_owned())
        })
        .collect()
}

/// ISO 13616: move the first four characters to the end, letters to numbers (A = 10 …),
/// and the whole must be 1 modulo 97.
fn iban_checksum(iban: &str) -> bool {
    let (head, tail) = iban.split_at(4);
    let mut remainder = 0u32;
    for c in tail.chars().chain(head.chars()) {
        let Some(value) = c.to_digit(36) else {
            return false;
        };
        remainder = if value < 10 {
            (remainder * 10 + value) % 97
        } else {
            (remainder * 100 + value) % 97
        };
    }
    remainder == 1
}

static SSN: LazyLock<Regex> = LazyLock::new(|| pattern(r"\b(\d{3})([- ])(\d{2})([- ])(\d{4})\b"));

/// `AAA-GG-SSSS` (or with spaces, the same separator twice) outside the ranges never issued
/// (area 000, 666, 900–999; group 00; serial 0000).
fn ssns(text: &str) -> BTreeSet<String> {
    SSN.captures_iter(text)
        .filter(|c| {
            c.get(0)
                .is_some_and(|m| !inside_longer_number(text, m.start(), m.end()))
        })
        .filter_map(|c| {
            if c.get(2)?.as_str() != c.get(4)?.as_str() {
                return None;
            }
            let area: u32 = c.get(1)?.as_str().parse().ok()?;
            let group = c.get(3)?.as_str();
            let serial = c.get(5)?.as_str();
            let issued =
                area != 0 && area != 666 && area < 900 && group != "00" && serial != "0000";
            issued.then(|| c.get(0).map(|m| m.as_str().to_owned()))?
        })
        .collect()
}

/// Key shapes of common providers, each with a prefix that does not occur in prose.
static PROVIDER_KEYS: LazyLock<Regex> = LazyLock::new(|| {
    pattern(concat!(
        r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b", // AWS access key id
        r"|\bgh[pousr]_[A-Za-z0-9]{36,255}\b",      // GitHub tokens
        r"|\bgithub_pat_[A-Za-z0-9_]{22,255}\b",
        r"|\bglpat-[A-Za-z0-9_-]{20,}\b",                 // GitLab
        r"|\bxox[baprs]-[A-Za-z0-9-]{10,}\b",             // Slack
        r"|\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{24,}\b", // Stripe
        r"|\bsk-ant-[A-Za-z0-9_-]{20,}",                  // Anthropic
        r"|\bsk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,}",   // OpenAI
        r"|\bAIza[0-9A-Za-z_-]{35}\b",                    // Google API key
        r"|\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}\b", // SendGrid
        r"|\bhf_[A-Za-z0-9]{30,}\b",                      // Hugging Face
        r"|\bnpm_[A-Za-z0-9]{36}\b",                      // npm
        r"|-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----",
        r"|\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}", // JWT
    ))
});

/// A value assigned to a credential-like name: `api_key = "…"`, `password: …`.
static ASSIGNED: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r#"(?i)\b(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|token|passw(?:or)?d|pwd|client[_-]?secret)\b["']?\s*[:=]\s*["']?([^\s"',;]{8,})"#,
    )
});

/// A long token of mixed letters and digits: a generated key with no known prefix.
static TOKEN: LazyLock<Regex> = LazyLock::new(|| pattern(r"[A-Za-z0-9+/_=-]{32,}"));

fn secrets(text: &str) -> BTreeSet<String> {
    let mut found: BTreeSet<String> = PROVIDER_KEYS
        .find_iter(text)
        .map(|m| m.as_str().to_owned())
        .collect();
    for captures in ASSIGNED.captures_iter(text) {
        if let Some(value) = captures.get(1) {
            let value = value.as_str();
            // A placeholder is not a secret.
            if !is_placeholder(value) && entropy(value) >= 2.5 {
                found.insert(value.to_owned());
            }
        }
    }
    for token in TOKEN.find_iter(text) {
        let token = token
            .as_str()
            .trim_matches(|c| c == '-' || c == '_' || c == '=');
        if generated_looking(token) && !found.iter().any(|f| f.contains(token)) {
            found.insert(token.to_owned());
        }
    }
    found
}

fn is_placeholder(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    lower.starts_with('<')
        || lower.starts_with("${")
        || lower.starts_with("{{")
        || lower.contains("xxxx")
        || lower.contains("****")
        || [
            "your",
            "example",
            "changeme",
            "placeholder",
            "redacted",
            "dummy",
        ]
        .iter()
        .any(|word| lower.contains(word))
}

/// Upper- and lower-case letters and digits, and the entropy of random characters: not a
/// hex digest (no upper case), a UUID (hex) or a path of words.
fn generated_looking(token: &str) -> bool {
    token.len() >= 32
        && token.chars().any(|c| c.is_ascii_uppercase())
        && token.chars().any(|c| c.is_ascii_lowercase())
        && token.chars().filter(char::is_ascii_digit).count() >= 2
        && entropy(token) >= 4.0
}

/// Shannon entropy in bits per character.
fn entropy(text: &str) -> f64 {
    let mut counts = BTreeMap::new();
    for c in text.chars() {
        *counts.entry(c).or_insert(0usize) += 1;
    }
    let total = text.chars().count() as f64;
    counts
        .values()
        .map(|n| {
            let p = *n as f64 / total;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<&'static str> {
        find(text, &PiiKind::ALL).keys().map(|k| k.name()).collect()
    }

    #[test]
    fn checksums() {
        assert!(luhn("4111111111111111"));
        assert!(!luhn("4111111111111112"));
        assert!(luhn("378282246310005"));
        assert!(iban_checksum("GB82WEST12345698765432"));
        assert!(iban_checksum("DE89370400440532013000"));
        assert!(!iban_checksum("DE89370400440532013001"));
    }

    #[test]
    fn finds_each_kind_and_only_that() {
        assert_eq!(kinds("write to Ana.Silva@example.org please"), ["email"]);
        assert_eq!(kinds("call +44 20 7946 0958 or (415) 555-0132"), ["phone"]);
        assert_eq!(kinds("card 4111 1111 1111 1111 exp 12/29"), ["paymentCard"]);
        assert_eq!(kinds("IBAN: DE89 3704 0044 0532 0130 00."), ["iban"]);
        assert_eq!(kinds("SSN 123-45-6789"), ["usSsn"]);
        assert_eq!(kinds("key AKIAIOSFODNN7EXAMPLE here"), ["secret"]);
        assert_eq!(kinds("api_key = 'q8Zr2LmT0vBx93Kd'"), ["secret"]);
    }

    #[test]
    fn lookalikes_are_not_reported() {
        for text in [
            "order 4111 1111 1111 1112 shipped",  // Luhn fails
            "DE89 3704 0044 0532 0130 01",        // mod 97 fails
            "ticket 666-12-3456 and 900-12-3456", // never-issued SSN areas
            "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "id 123e4567-e89b-12d3-a456-426614174000 on 2024-05-17 at 10:30",
            "version 1.24.3, build 20240517, total 1,234,567.89",
            "api_key = <your-api-key>",
        ] {
            assert!(kinds(text).is_empty(), "{text}: {:?}", kinds(text));
        }
    }

    #[test]
    fn counts_distinct_values() {
        let found = find(
            "a@b.io, A@B.io and c@d.io",
            &[PiiKind::Email, PiiKind::Phone],
        );
        assert_eq!(found.get(&PiiKind::Email), Some(&2));
        assert_eq!(found.get(&PiiKind::Phone), None);
    }
}
