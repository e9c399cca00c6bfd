//! The CPU work ingest does for each kept span before handing it to NATS — the buffered
//! encoding normalised into a domain span (`to_domain`, with its GenAI view) and written as
//! a span-stream record (`to_wire`) — on the ingest benchmark's traffic, without NATS or the
//! network. Meant to run under valgrind's callgrind, which counts instructions repeatably on
//! a noisy machine:
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/kept.%p \
//!     target/profiling/kept-span-cost --spans 20000
//! ```
//!
//! Run it at two sizes and divide the difference by the difference in spans: that leaves out
//! building the traffic, which is the same per span at both sizes but is not ingest's work
//! (compare with `--spans N --skip-work`).

use bytes::Bytes;
use clap::Parser;
use prost::Message;
use umpire_bench::kept::BUDGET;
use umpire_bench::traffic;
use umpire_otlp::buffered::decode_request;

#[derive(Parser)]
struct Args {
    /// Spans to normalise and encode (in requests of 512).
    #[arg(long, default_value_t = 20_000)]
    spans: usize,
    /// Build and split the traffic only, to subtract its cost.
    #[arg(long)]
    skip_work: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (mut spans, mut bytes, mut sequence) = (0usize, 0usize, 0u64);
    while spans < args.spans {
        let request = traffic::request(sequence, 512.min(args.spans - spans));
        sequence += 1;
        let batch = decode_request(Bytes::from(request.encode_to_vec()))?;
        for buffered in batch {
            let buffered = buffered?;
            spans += 1;
            if args.skip_work {
                continue;
            }
            let mut span = buffered.to_domain()?;
            bytes += span.to_wire(BUDGET)?.len();
        }
    }
    println!("{spans} spans, {bytes} bytes of span-stream records");
    Ok(())
}
