//! Word count, the seed pattern: lines in, `<word> <count>` out.
//!
//! ```text
//! cargo run --release --example wordcount -- --stdin < book.txt
//! ```
//!
//! Splits each line on Unicode whitespace (no case folding, no punctuation stripping), counts
//! words with `key_by` + `count` across all workers, and when the input ends prints one line
//! per distinct word, in no particular order. Without `--stdin` it counts a short demo text.
//! (The Kafka form, `--brokers/--input/--output`, comes with the Kafka connectors.)

use clap::Parser;
use rill::prelude::*;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEMO: &str = "the quick brown fox jumps over the lazy dog\nthe dog sleeps";

/// Counts words.
#[derive(Debug, Parser)]
#[command(name = "wordcount", about = "Count words with rill")]
struct Args {
    /// Read lines from standard input until end of file.
    #[arg(long)]
    stdin: bool,
    /// Worker threads (default: available cores).
    #[arg(long)]
    workers: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let job = Job::new("wordcount");
    if args.stdin {
        count_words(job.source(StdinLines::new()));
    } else {
        eprintln!("no --stdin: counting a demo text");
        let lines: Vec<String> = DEMO.lines().map(str::to_owned).collect();
        count_words(job.source(MemorySource::new(lines)));
    }
    let mut config = Config::default();
    if let Some(workers) = args.workers {
        config = config.with_workers(workers);
    }
    job.run(config)?.await_termination()?;
    Ok(())
}

/// The word count pipeline, shared by both inputs.
fn count_words<B>(lines: Stream<B>)
where
    B: rill::engine::FlowBuilder<Out = String>,
{
    lines
        .flat_map(|line: String| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .key_by(|word: &String| word.clone())
        .count()
        .latest_per_key()
        .map(|(word, n): (String, u64)| format!("{word} {n}"))
        .sink(StdoutLines::new());
}
