//! Golden-output tests of the examples: run the built example binary, compare with a file.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The example binary cargo built next to this test (`cargo test` builds examples).
fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory")
        .join("examples");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run the whole test suite (`cargo test`), which builds the examples",
        path.display()
    );
    path
}

fn golden(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// Runs an example with `args`, feeding `input` on stdin and then closing it.
fn run_example(name: &str, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = Command::new(example_binary(name))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("example starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("feed input");
    // stdin is dropped here: end of input ends a bounded job.
    child.wait_with_output().expect("example runs")
}

#[test]
fn wordcount_stdin_matches_golden_output_at_several_worker_counts() {
    let input = golden("wordcount.input.txt");
    let expected = sorted_lines(&golden("wordcount.expected.txt"));
    for workers in ["1", "2", "4"] {
        let out = run_example(
            "wordcount",
            &["--stdin", "--workers", workers],
            input.as_bytes(),
        );
        assert!(
            out.status.success(),
            "exit {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let got = sorted_lines(&String::from_utf8(out.stdout).expect("UTF-8 output"));
        assert_eq!(got, expected, "{workers} workers");
    }
}

#[test]
fn wordcount_rejects_invalid_utf8_with_a_clear_error() {
    let out = run_example(
        "wordcount",
        &["--stdin", "--workers", "2"],
        b"fine line\nbad \xff byte\n",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stdin line 2 is not valid UTF-8"),
        "{stderr}"
    );
}

#[test]
fn wordcount_demo_counts_the_demo_text_on_an_embedded_kafka() {
    let out = run_example("wordcount", &["--workers", "2"], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = sorted_lines(&String::from_utf8(out.stdout).expect("UTF-8 output"));
    assert_eq!(got, sorted_lines(&golden("wordcount.demo.expected.txt")));
}

#[test]
fn wordcount_on_kafka_emits_every_update_and_stops_cleanly_on_sigterm() {
    use rill::connectors::kafka::EmbeddedKafka;

    let kafka = EmbeddedKafka::start().expect("mock cluster");
    kafka.create_topic("input-text", 2).expect("topic");
    kafka.create_topic("output-wordcount", 2).expect("topic");
    let brokers = kafka.bootstrap_servers();
    let child = Command::new(example_binary("wordcount"))
        .args(["--brokers", &brokers, "--workers", "2"])
        .args(["--input", "input-text", "--output", "output-wordcount"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("example starts");
    let lines = [("1", "a b a"), ("2", "b c"), ("3", "a")];
    let lines: Vec<(Vec<u8>, Vec<u8>)> = lines
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    common::kafka::produce(&brokers, "input-text", &lines);
    let updates = common::kafka::read(
        &brokers,
        "output-wordcount",
        6,
        std::time::Duration::from_secs(60),
    );
    // SIGTERM: the example stops the job gracefully and exits 0.
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let out = child.wait_with_output().expect("example exits");
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    let mut per_word: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (key, value, _) in updates {
        let word = String::from_utf8(key.expect("keyed by word")).expect("UTF-8 word");
        per_word
            .entry(word)
            .or_default()
            .push(String::from_utf8(value.expect("a count")).expect("UTF-8 count"));
    }
    let expected: std::collections::BTreeMap<String, Vec<String>> = [
        ("a", vec!["1", "2", "3"]),
        ("b", vec!["1", "2"]),
        ("c", vec!["1"]),
    ]
    .into_iter()
    .map(|(w, ns)| (w.to_string(), ns.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(
        per_word, expected,
        "update mode: every count of every word, in order"
    );
}
