//! Golden-output tests of the examples: run the built example binary, compare with a file.

mod common;

use common::example_binary;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

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
fn wordcount_refuses_a_line_over_the_stdin_limit_with_a_clear_error() {
    let mut input = b"fine line\n".to_vec();
    input.extend(std::iter::repeat_n(b'w', 2 << 20));
    input.push(b'\n');
    let out = run_example("wordcount", &["--stdin", "--workers", "2"], &input);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2 is 2097152 bytes, longer than the limit of 1048576 bytes"),
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

/// Runs a Kafka example against an embedded Kafka: creates `topics`, starts the example with
/// `--brokers` and `args`, writes `input` (topic, key, value), reads `n` records of `output`,
/// stops the example with SIGTERM and checks it exits 0. Returns (key, value) strings.
fn run_kafka_example(
    name: &str,
    args: &[&str],
    topics: &[&str],
    input: &[(&str, &str, &str)],
    output: &str,
    n: usize,
) -> Vec<(String, String)> {
    let (_kafka, brokers, child) = start_on_kafka(name, topics, args);
    for (topic, key, value) in input {
        common::kafka::produce(
            &brokers,
            topic,
            &[(key.as_bytes().to_vec(), value.as_bytes().to_vec())],
        );
    }
    let records = common::kafka::read(&brokers, output, n, std::time::Duration::from_secs(60));
    // SIGTERM: the example stops its job gracefully and exits 0.
    common::stop_with_sigterm(child);
    records
        .into_iter()
        .map(|(k, v, _)| (text(k), text(v)))
        .collect()
}

#[test]
fn wordcount_on_kafka_emits_every_update_and_stops_cleanly_on_sigterm() {
    let updates = run_kafka_example(
        "wordcount",
        &[
            "--workers",
            "2",
            "--input",
            "input-text",
            "--output",
            "output-wordcount",
        ],
        &["input-text", "output-wordcount"],
        &[
            ("input-text", "1", "a b a"),
            ("input-text", "2", "b c"),
            ("input-text", "3", "a"),
        ],
        "output-wordcount",
        6,
    );
    let mut per_word: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (word, n) in updates {
        per_word.entry(word).or_default().push(n);
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

#[test]
fn the_kafka_demos_match_golden_output() {
    for name in [
        "relay",
        "union",
        "ad_clicks",
        "attribution",
        "sessions",
        "enrich",
        "user_profile",
    ] {
        let out = run_example(name, &[], b"");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = sorted_lines(&String::from_utf8(out.stdout).expect("UTF-8 output"));
        assert_eq!(
            got,
            sorted_lines(&golden(&format!("{name}.demo.expected.txt"))),
            "{name}"
        );
    }
}

#[test]
fn relay_on_kafka_starts_a_new_session_after_thirty_idle_minutes() {
    let minute = 60_000;
    let event = |user: &str, min: i64| {
        format!(
            r#"{{"user":"{user}","ts":{},"event":"view"}}"#,
            min * minute
        )
    };
    let (a, b, c) = (event("u7", 0), event("u7", 29), event("u7", 60));
    let out = run_kafka_example(
        "relay",
        &[],
        &["client-event", "client-event-sessionized"],
        &[
            ("client-event", "u7", &a),
            ("client-event", "u7", &b),
            ("client-event", "u7", &c),
        ],
        "client-event-sessionized",
        3,
    );
    let sessions: Vec<String> = out
        .iter()
        .map(|(user, json)| {
            assert_eq!(user, "u7", "keyed by user");
            let v: serde_json::Value = serde_json::from_str(json).expect("JSON output");
            assert_eq!(v["event"], "view", "the event's fields are kept");
            v["session_id"].as_str().expect("session id").to_string()
        })
        .collect();
    assert_eq!(sessions, ["u7-0", "u7-0", &format!("u7-{}", 60 * minute)]);
}

#[test]
fn union_on_kafka_converts_both_shapes_into_one() {
    let out = run_kafka_example(
        "union",
        &[],
        &[
            "client-event-web",
            "client-event-app",
            "client-event-unified",
        ],
        &[
            (
                "client-event-web",
                "u1",
                r#"{"userId":"u1","page":"/p","timestamp":5000}"#,
            ),
            (
                "client-event-app",
                "u2",
                r#"{"user":"u2","screen":"S","ts_sec":7}"#,
            ),
        ],
        "client-event-unified",
        2,
    );
    let mut got: Vec<serde_json::Value> = out
        .iter()
        .map(|(_, json)| serde_json::from_str(json).expect("JSON output"))
        .collect();
    got.sort_by_key(|v| v["user"].as_str().unwrap_or_default().to_string());
    assert_eq!(
        got,
        [
            serde_json::json!({"user": "u1", "source": "web", "view": "/p", "ts": 5000}),
            serde_json::json!({"user": "u2", "source": "app", "view": "S", "ts": 7000}),
        ]
    );
}

/// Starts an example on an embedded Kafka with `topics` (2 partitions each); returns it with
/// the brokers.
fn start_on_kafka(
    name: &str,
    topics: &[&str],
    args: &[&str],
) -> (
    rill::connectors::kafka::EmbeddedKafka,
    String,
    std::process::Child,
) {
    let kafka = rill::connectors::kafka::EmbeddedKafka::start().expect("mock cluster");
    for topic in topics {
        kafka.create_topic(topic, 2).expect("topic");
    }
    let brokers = kafka.bootstrap_servers();
    let child = Command::new(example_binary(name))
        .args(["--brokers", &brokers])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("example starts");
    (kafka, brokers, child)
}

/// Writes `late` (a record behind the watermark) and a value that is not JSON to `input`,
/// and checks that the first arrives on `late_topic` as it came, the second on `dlq`.
fn late_and_bad_records_go_to_their_topics(
    brokers: &str,
    [input, late_topic, dlq]: [&str; 3],
    late: (Vec<u8>, Vec<u8>),
) {
    let timeout = std::time::Duration::from_secs(60);
    common::kafka::produce(
        brokers,
        input,
        &[late.clone(), (b"k".to_vec(), b"{oops".to_vec())],
    );
    let late_out = common::kafka::read(brokers, late_topic, 1, timeout);
    assert_eq!(late_out.len(), 1, "one late record");
    assert_eq!(late_out[0].1.as_deref(), Some(late.1.as_slice()));
    let dead = common::kafka::read(brokers, dlq, 1, timeout);
    assert_eq!(dead.len(), 1, "one dead letter");
    assert_eq!(dead[0].1.as_deref(), Some(&b"{oops"[..]));
}

/// The first `n` records of `topic` (committed ones), as sorted (key, value) strings.
fn read_sorted(
    brokers: &str,
    topic: &str,
    n: usize,
    timeout: std::time::Duration,
) -> Vec<(String, String)> {
    let mut got: Vec<(String, String)> = common::kafka::read(brokers, topic, n, timeout)
        .into_iter()
        .map(|(k, v, _)| (text(k), text(v)))
        .collect();
    got.sort();
    got
}

fn text(b: Option<Vec<u8>>) -> String {
    String::from_utf8(b.unwrap_or_default()).expect("UTF-8")
}

#[test]
fn ad_clicks_on_kafka_emits_each_final_window_once_and_routes_late_and_bad_records() {
    let dir = std::env::temp_dir().join(format!(
        "rill-ad-clicks-{}-{}",
        std::process::id(),
        rill::time::now_nanos()
    ));
    let (_kafka, brokers, child) = start_on_kafka(
        "ad_clicks",
        &["clicks", "clicks-per-minute", "clicks-late", "clicks-dlq"],
        // No partition goes idle during the test: a worker whose consumer is assigned late
        // must not find its clicks behind a watermark the other partition moved.
        &[
            "--idle-timeout",
            "60s",
            "--checkpoint-interval",
            "200ms",
            "--checkpoint-dir",
            dir.to_str().expect("UTF-8 path"),
            "--exactly-once",
        ],
    );
    let click = |ad: &str, s: i64| {
        (
            ad.as_bytes().to_vec(),
            format!(
                r#"{{"ad_id":"{ad}","product_id":"p","ts":{},"x":1}}"#,
                s * 1_000
            )
            .into_bytes(),
        )
    };
    // Clicks at 1,000 s on every partition (ten keys cover both) move the watermark to
    // 990 s: the windows before it are final, [960 s, 1,020 s) is not.
    let mut clicks = vec![
        click("a1", 1),
        click("a2", 5),
        click("a1", 59),
        click("a1", 61),
    ];
    clicks.extend((0..10).map(|i| click(&format!("f{i}"), 1_000)));
    common::kafka::produce(&brokers, "clicks", &clicks);
    let timeout = std::time::Duration::from_secs(60);
    let got = read_sorted(&brokers, "clicks-per-minute", 3, timeout);
    assert_eq!(
        got,
        [
            (
                "a1".into(),
                r#"{"ad_id":"a1","window_start":0,"window_end":60000,"count":2}"#.into()
            ),
            (
                "a1".into(),
                r#"{"ad_id":"a1","window_start":60000,"window_end":120000,"count":1}"#.into()
            ),
            (
                "a2".into(),
                r#"{"ad_id":"a2","window_start":0,"window_end":60000,"count":1}"#.into()
            ),
        ]
    );
    // Now a click for a final window is late, kept as it came; a bad value is a dead letter.
    late_and_bad_records_go_to_their_topics(
        &brokers,
        ["clicks", "clicks-late", "clicks-dlq"],
        click("a1", 30),
    );
    common::stop_with_sigterm(child);
    // Nothing more was emitted: the open window waits (a stop is not the input's end).
    let all = common::kafka::read(
        &brokers,
        "clicks-per-minute",
        4,
        std::time::Duration::from_secs(3),
    );
    assert_eq!(all.len(), 3, "{all:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn attribution_on_kafka_joins_within_five_minutes_and_routes_late_and_bad_records() {
    let (_kafka, brokers, child) = start_on_kafka(
        "attribution",
        &[
            "impressions",
            "clicks",
            "attributed",
            "late-events",
            "attributed-dlq",
        ],
        &[
            "--impressions",
            "impressions",
            "--clicks",
            "clicks",
            "--output",
            "attributed",
            "--late",
            "late-events",
            // No partition goes idle during the test: see the ad_clicks test.
            "--idle-timeout",
            "60s",
            "--workers",
            "2",
        ],
    );
    let event = |ad: &str, s: i64| {
        (
            ad.as_bytes().to_vec(),
            format!(r#"{{"ad_id":"{ad}","product_id":"p","ts":{}}}"#, s * 1_000).into_bytes(),
        )
    };
    common::kafka::produce(
        &brokers,
        "impressions",
        &[event("a1", 100), event("a2", 100)],
    );
    common::kafka::produce(
        &brokers,
        "clicks",
        &[
            event("a1", 130),
            event("a1", 401),
            event("a2", 99),
            event("a2", 400),
        ],
    );
    let timeout = std::time::Duration::from_secs(60);
    let mut got: Vec<String> = common::kafka::read(&brokers, "attributed", 2, timeout)
        .into_iter()
        .map(|(_, v, _)| text(v))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            r#"{"ad_id":"a1","product_id":"p","impression_ts":100000,"click_ts":130000}"#,
            r#"{"ad_id":"a2","product_id":"p","impression_ts":100000,"click_ts":400000}"#,
        ]
    );
    // Both watermarks move far ahead on every partition (ten keys cover both); once the
    // far-future pairs are out, the watermark follows within its cadence, and then an
    // impression from long ago is too late. Sent again until one is seen late, so that a slow
    // machine delays the test instead of failing it.
    let future: Vec<_> = (0..10).map(|i| event(&format!("f{i}"), 5_000)).collect();
    common::kafka::produce(&brokers, "impressions", &future);
    common::kafka::produce(&brokers, "clicks", &future);
    let pairs = common::kafka::read(&brokers, "attributed", 12, timeout);
    assert_eq!(pairs.len(), 12, "the ten far-future pairs");
    common::kafka::produce(&brokers, "impressions", &[(b"k".to_vec(), b"[]".to_vec())]);
    let deadline = std::time::Instant::now() + timeout;
    let mut sent = Vec::new();
    let late_out = loop {
        let late = event(&format!("late{}", sent.len()), 200);
        common::kafka::produce(&brokers, "impressions", std::slice::from_ref(&late));
        sent.push(late.1);
        let out = common::kafka::read(
            &brokers,
            "late-events",
            1,
            std::time::Duration::from_secs(1),
        );
        if !out.is_empty() || std::time::Instant::now() > deadline {
            break out;
        }
    };
    assert_eq!(late_out.len(), 1, "a late impression");
    assert!(sent
        .iter()
        .any(|s| late_out[0].1.as_deref() == Some(s.as_slice())));
    let dead = common::kafka::read(&brokers, "attributed-dlq", 1, timeout);
    assert_eq!(dead.len(), 1, "one dead letter");
    assert_eq!(dead[0].1.as_deref(), Some(&b"[]"[..]));
    common::stop_with_sigterm(child);
    let all = common::kafka::read(
        &brokers,
        "attributed",
        13,
        std::time::Duration::from_secs(3),
    );
    assert_eq!(all.len(), 12, "nothing but the pairs: {all:?}");
}

fn example_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "rill-{name}-{}-{}",
        std::process::id(),
        rill::time::now_nanos()
    ))
}

#[test]
fn sessions_on_kafka_closes_each_session_when_the_watermark_passes_its_gap() {
    let dir = example_dir("sessions");
    let (_kafka, brokers, child) = start_on_kafka(
        "sessions",
        &[
            "client-event",
            "sessions",
            "client-event-late",
            "client-event-dlq",
        ],
        &[
            "--input",
            "client-event",
            "--output",
            "sessions",
            "--gap",
            "30m",
            "--idle-timeout",
            "60s",
            "--checkpoint-interval",
            "200ms",
            "--checkpoint-dir",
            dir.to_str().expect("UTF-8 path"),
            "--exactly-once",
        ],
    );
    let minute = 60_000;
    let event = |user: &str, m: i64| {
        (
            user.as_bytes().to_vec(),
            format!(
                r#"{{"user_id":"{user}","event":"click","ts":{}}}"#,
                m * minute
            )
            .into_bytes(),
        )
    };
    // Events at 100 min on every partition (ten users cover both) move the watermark past
    // u1's and u2's sessions plus the gap; theirs close, the ten stay open.
    let mut events = vec![
        event("u1", 0),
        event("u1", 5),
        event("u2", 10),
        event("u1", 29),
    ];
    events.extend((0..10).map(|i| event(&format!("f{i}"), 100)));
    common::kafka::produce(&brokers, "client-event", &events);
    let got = read_sorted(&brokers, "sessions", 2, std::time::Duration::from_secs(60));
    assert_eq!(
        got,
        [
            (
                "u1".into(),
                r#"{"user_id":"u1","session_start":0,"session_end":1740000,"events":3}"#.into()
            ),
            (
                "u2".into(),
                r#"{"user_id":"u2","session_start":600000,"session_end":600000,"events":1}"#.into()
            ),
        ]
    );
    // An event behind the watermark is late, kept as it came; a bad value is a dead letter.
    late_and_bad_records_go_to_their_topics(
        &brokers,
        ["client-event", "client-event-late", "client-event-dlq"],
        event("u3", 50),
    );
    common::stop_with_sigterm(child);
    let all = common::kafka::read(&brokers, "sessions", 3, std::time::Duration::from_secs(3));
    assert_eq!(
        all.len(),
        2,
        "open sessions wait in the checkpoint: {all:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn enrich_on_kafka_joins_with_the_table_current_when_each_event_is_processed() {
    let dir = example_dir("enrich");
    std::fs::create_dir_all(&dir).expect("dir");
    let products = dir.join("products.jsonl");
    std::fs::write(
        &products,
        "{\"product_id\":\"p1\",\"name\":\"kettle\",\"price\":25.5}\n",
    )
    .expect("write");
    let checkpoints = dir.join("checkpoints");
    let (_kafka, brokers, child) = start_on_kafka(
        "enrich",
        &["product-event", "enriched", "product-event-dlq"],
        &[
            "--input",
            "product-event",
            "--products",
            products.to_str().expect("UTF-8 path"),
            "--output",
            "enriched",
            "--refresh",
            "100ms",
            "--checkpoint-dir",
            checkpoints.to_str().expect("UTF-8 path"),
        ],
    );
    let event = |p: &str, ts: i64| {
        (
            p.as_bytes().to_vec(),
            format!(r#"{{"product_id":"{p}","user_id":"u1","ts":{ts}}}"#).into_bytes(),
        )
    };
    let timeout = std::time::Duration::from_secs(60);
    common::kafka::produce(&brokers, "product-event", &[event("p1", 1), event("p3", 2)]);
    let mut first: Vec<String> = common::kafka::read(&brokers, "enriched", 2, timeout)
        .into_iter()
        .map(|(_, v, _)| text(v))
        .collect();
    first.sort();
    assert_eq!(
        first,
        [
            r#"{"name":"kettle","price":25.5,"product_id":"p1","ts":1,"user_id":"u1"}"#,
            r#"{"name":null,"price":null,"product_id":"p3","ts":2,"user_id":"u1"}"#,
        ]
    );
    // A new version of the file, written in place: later events see it.
    std::fs::write(
        &products,
        "{\"product_id\":\"p1\",\"name\":\"kettle v2\",\"price\":27}\n\
         {\"product_id\":\"p3\",\"name\":\"mug\",\"price\":4}\n",
    )
    .expect("write");
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    common::kafka::produce(&brokers, "product-event", &[event("p1", 3), event("p3", 4)]);
    let all: Vec<String> = common::kafka::read(&brokers, "enriched", 4, timeout)
        .into_iter()
        .map(|(_, v, _)| text(v))
        .collect();
    for line in [
        r#"{"name":"kettle v2","price":27,"product_id":"p1","ts":3,"user_id":"u1"}"#,
        r#"{"name":"mug","price":4,"product_id":"p3","ts":4,"user_id":"u1"}"#,
    ] {
        assert!(all.iter().any(|l| l == line), "{line} missing from {all:?}");
    }
    let out = common::stop_with_sigterm(child);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("version 2, 2 rows"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn enrich_refuses_to_start_without_its_table() {
    let out = Command::new(example_binary("enrich"))
        .args([
            "--brokers",
            "127.0.0.1:9",
            "--products",
            "/nonexistent/products.jsonl",
        ])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("table `products`") && err.contains("/nonexistent/products.jsonl"),
        "{err}"
    );
}

#[test]
fn user_profile_on_kafka_writes_each_users_last_ten_events_in_time_order() {
    let dir = example_dir("user-profile");
    let (_kafka, brokers, child) = start_on_kafka(
        "user_profile",
        &["client-event", "user-profiles", "client-event-dlq"],
        &[
            "--input",
            "client-event",
            "--output",
            "user-profiles",
            "--checkpoint-dir",
            dir.to_str().expect("UTF-8 path"),
        ],
    );
    // Twelve events of u1, the last two out of order, and one of u2.
    let mut times: Vec<i64> = (1..=10).map(|i| i * 1_000).collect();
    times.extend([500, 10_500]);
    let mut events: Vec<(Vec<u8>, Vec<u8>)> = times
        .iter()
        .map(|ts| {
            (
                b"u1".to_vec(),
                format!(r#"{{"user_id":"u1","event":"e{ts}","ts":{ts}}}"#).into_bytes(),
            )
        })
        .collect();
    events.push((
        b"u2".to_vec(),
        br#"{"user_id":"u2","event":"open","ts":7}"#.to_vec(),
    ));
    common::kafka::produce(&brokers, "client-event", &events);
    let got = common::kafka::read(
        &brokers,
        "user-profiles",
        13,
        std::time::Duration::from_secs(60),
    );
    assert_eq!(got.len(), 13, "one profile per event");
    let last_u1 = got
        .iter()
        .rev()
        .find(|(k, _, _)| k.as_deref() == Some(&b"u1"[..]))
        .map(|(_, v, _)| text(v.clone()))
        .expect("u1's profiles");
    let profile: serde_json::Value = serde_json::from_str(&last_u1).expect("JSON");
    let ts: Vec<i64> = profile["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["ts"].as_i64().expect("ts"))
        .collect();
    // The newest ten by event time: 500 and 1,000 fell out.
    assert_eq!(
        ts,
        [2_000, 3_000, 4_000, 5_000, 6_000, 7_000, 8_000, 9_000, 10_000, 10_500]
    );
    common::stop_with_sigterm(child);
    let _ = std::fs::remove_dir_all(&dir);
}
