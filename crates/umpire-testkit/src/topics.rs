//! Varied user questions on two unrelated topics, for drift tests: customer support for an
//! online shop (the usual traffic) and cooking (the shift). Each question is assembled from
//! several independent parts, so a topic has hundreds of distinct phrasings and two samples
//! of it differ the way real traffic does, not by repeating one sentence.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Support,
    Cooking,
}

const SUPPORT_OPENERS: &[&str] = &[
    "Hi,",
    "Hello,",
    "Quick question:",
    "I need help —",
    "Sorry to bother you,",
    "",
];
const SUPPORT_ASKS: &[&str] = &[
    "how do I return",
    "can I get a refund for",
    "where is my order of",
    "why was I charged twice for",
    "can I exchange",
    "when will you ship",
    "how do I cancel my order for",
    "is there a warranty on",
];
const SUPPORT_ITEMS: &[&str] = &[
    "the running shoes",
    "a winter jacket",
    "the wireless headphones",
    "my new laptop bag",
    "two pairs of jeans",
    "the coffee grinder",
    "a gift card",
    "the kids' raincoat",
];
const SUPPORT_TAILS: &[&str] = &[
    "I bought last week?",
    "from order 4471?",
    "that arrived damaged?",
    "if I lost the receipt?",
    "before the end of the month?",
    "that I ordered online?",
];

const COOKING_OPENERS: &[&str] = &["Hey,", "Chef question:", "Help!", "Tonight's dinner:", ""];
const COOKING_ASKS: &[&str] = &[
    "how long should I roast",
    "what spices go well with",
    "can I marinate",
    "what's the best way to braise",
    "how do I keep from drying out",
    "which wine pairs with",
    "should I brine",
    "how thin should I slice",
];
const COOKING_ITEMS: &[&str] = &[
    "a whole chicken",
    "lamb shoulder",
    "salmon fillets",
    "butternut squash",
    "pork belly",
    "chickpeas and spinach",
    "a beef brisket",
    "mushroom risotto",
];
const COOKING_TAILS: &[&str] = &[
    "for a dinner party?",
    "in a cast-iron pan?",
    "overnight?",
    "at 180 degrees?",
    "for four people?",
    "without an oven?",
];

/// The `n`-th question of `topic`: consecutive `n` vary every part, and the parts' counts
/// are coprime-ish, so the first few hundred questions are all different.
pub fn question(topic: Topic, n: u64) -> String {
    let (openers, asks, items, tails) = match topic {
        Topic::Support => (SUPPORT_OPENERS, SUPPORT_ASKS, SUPPORT_ITEMS, SUPPORT_TAILS),
        Topic::Cooking => (COOKING_OPENERS, COOKING_ASKS, COOKING_ITEMS, COOKING_TAILS),
    };
    // A cheap integer hash spreads consecutive n over the combinations.
    let h = n.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17);
    let pick = |list: &[&'static str], shift: u32| list[((h >> shift) as usize) % list.len()];
    let opener = pick(openers, 0);
    let text = format!(
        "{opener} {} {} {}",
        pick(asks, 8),
        pick(items, 16),
        pick(tails, 24)
    );
    text.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_vary() {
        let distinct: std::collections::HashSet<String> =
            (0..200).map(|n| question(Topic::Support, n)).collect();
        assert!(distinct.len() > 150, "{}", distinct.len());
        assert!(question(Topic::Cooking, 3).ends_with('?'));
    }
}
