//! Embeddings per CPU-second and peak memory of the sentence embedder, as the evaluator
//! runs it (batches of up to 32 texts on one thread; candle's kernels use every core).
//!
//! `cargo run --release -p umpire-embed --example embed-bench -- .venv/models/all-MiniLM-L6-v2`
//!
//! Texts: varied support and cooking questions (~15 tokens each), and
//! paragraphs of 12 of them (~180 tokens). CPU is the process's user + system time from
//! /proc/self/stat (all threads), model load excluded; memory is the peak RSS (VmHWM),
//! model included.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use umpire_core::embedding::TextEmbedder;
use umpire_embed::SentenceEmbedder;

/// Varied questions (~15 tokens): 8 × 8 × 6 combinations.
fn question(n: usize) -> String {
    const ASKS: [&str; 8] = [
        "how do I return",
        "can I get a refund for",
        "where is my order of",
        "why was I charged twice for",
        "how long should I roast",
        "what spices go well with",
        "can I marinate",
        "which wine pairs with",
    ];
    const ITEMS: [&str; 8] = [
        "the running shoes",
        "a winter jacket",
        "the wireless headphones",
        "two pairs of jeans",
        "a whole chicken",
        "lamb shoulder",
        "salmon fillets",
        "butternut squash",
    ];
    const TAILS: [&str; 6] = [
        "I bought last week?",
        "from order 4471?",
        "that arrived damaged?",
        "for a dinner party?",
        "in a cast-iron pan?",
        "overnight?",
    ];
    format!(
        "Hi, {} {} {}",
        ASKS[n % 8],
        ITEMS[(n / 8) % 8],
        TAILS[(n / 64) % 6]
    )
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the ')'.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<f64>()
        .unwrap()
        / 1024.0
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| ".venv/models/all-MiniLM-L6-v2".into());
    let embedder = SentenceEmbedder::load(std::path::Path::new(&dir)).unwrap();
    let short: Vec<String> = (0..2048).map(question).collect();
    let long: Vec<String> = (0..256)
        .map(|n| {
            (0..12)
                .map(|i| question(n * 12 + i))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    for (name, texts) in [
        ("short (~15 tokens)", &short),
        ("paragraphs (~180 tokens)", &long),
    ] {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (cpu, wall) = (cpu_seconds(), Instant::now());
        for batch in refs.chunks(32) {
            embedder.embed(batch).unwrap();
        }
        let (cpu, wall) = (cpu_seconds() - cpu, wall.elapsed().as_secs_f64());
        println!(
            "{name}: {} texts, {:.0} embeddings per CPU-second ({:.2} CPU-s), {:.0} per wall-second",
            texts.len(),
            texts.len() as f64 / cpu,
            cpu,
            texts.len() as f64 / wall
        );
    }
    println!("peak RSS {:.0} MiB (model loaded)", peak_rss_mib());
}
