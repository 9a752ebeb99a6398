//! latency-lab's `--json` report: one entry per mode, with the fields machines read.

use std::process::Command;

/// Runs latency-lab as `command` says, checks that it succeeded, and returns what it printed.
fn run_lab(command: &mut Command) -> String {
    let out = command.output().expect("latency-lab runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The `--json` report at `path`.
fn read_report(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("report written"))
        .expect("valid JSON")
}

#[test]
fn json_report_and_chart_have_one_entry_per_mode() {
    let path = std::env::temp_dir().join(format!("latency-lab-{}.json", std::process::id()));
    let chart = path.with_extension("svg");
    run_lab(
        Command::new(env!("CARGO_BIN_EXE_latency-lab"))
            .args(["--source", "memory", "--modes", "continuous,asap,20ms"])
            .args(["--rates", "20000"])
            .args([
                "--duration",
                "0.5",
                "--warmup",
                "0.1",
                "--runs",
                "1",
                "--no-baseline",
            ])
            .args(["--workers", "2", "--idle", "backoff", "--json"])
            .arg(&path)
            .arg("--plot")
            .arg(&chart),
    );
    let doc = read_report(&path);
    let modes = doc["modes"].as_array().expect("modes");
    let names: Vec<(&str, &serde_json::Value)> = modes
        .iter()
        .map(|m| (m["mode"].as_str().unwrap(), &m["trigger"]))
        .collect();
    assert_eq!(
        names,
        [
            ("continuous", &serde_json::Value::Null),
            ("micro_batch", &serde_json::json!("as_fast_as_possible")),
            ("micro_batch", &serde_json::json!("processing_time_20ms")),
        ]
    );
    for m in modes {
        // Every scheduled record of the measured half second is accounted for.
        assert_eq!(m["samples"], 10_000, "{m}");
        assert_eq!(m["rate"], 20_000.0);
        let p = |k: &str| m[k].as_f64().unwrap();
        assert!(
            p("p50_us") <= p("p90_us") && p("p90_us") <= p("p99_us"),
            "{m}"
        );
        assert!(
            p("p99_us") <= p("p999_us") && p("p9999_us") <= p("max_us"),
            "{m}"
        );
    }
    // A 20 ms trigger makes the median record wait for it: far above continuous.
    assert!(modes[2]["p50_us"].as_f64().unwrap() > 1_000.0);
    // Micro-batches without a checkpoint store: their batches, no checkpoint sizes.
    assert!(modes[0].get("epochs").is_none(), "{}", modes[0]);
    for m in &modes[1..] {
        let epochs = &m["epochs"];
        assert_eq!(epochs["kind"], "batches", "{m}");
        assert!(epochs["completed"].as_u64().unwrap() > 0, "{m}");
        assert!(epochs.get("full").is_none(), "{m}");
    }
    assert_eq!(doc["settings"]["workers"], 2);
    let svg = std::fs::read_to_string(&chart).expect("chart written");
    assert!(svg.starts_with("<svg"));
    assert_eq!(svg.matches("<polyline").count(), 3, "one line per mode");
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&chart);
}

/// The Kafka path on the embedded cluster, at two workers over two partitions, in both modes:
/// every record produced in the measured window comes back as a result and is measured once,
/// and the floor row (the same two hops with bare clients) comes first, measured in full.
#[test]
fn kafka_path_measures_every_record_in_both_modes() {
    let path = std::env::temp_dir().join(format!("latency-lab-kafka-{}.json", std::process::id()));
    let stdout = run_lab(
        Command::new(env!("CARGO_BIN_EXE_latency-lab"))
            .args(["--source", "kafka"])
            .args([
                "--modes",
                "continuous,micro-batch",
                "--trigger",
                "asap,50ms",
            ])
            .args(["--rates", "2000", "--duration", "1", "--warmup", "0.5"])
            .args([
                "--runs",
                "1",
                "--workers",
                "2",
                "--partitions",
                "2",
                "--json",
            ])
            .arg(&path),
    );
    assert!(stdout.contains("EMBEDDED"), "says which broker: {stdout}");
    assert!(
        stdout.contains("idle auto: park"),
        "a Kafka job parks by default: {stdout}"
    );
    assert!(!stdout.contains("WARNING"), "no result missing: {stdout}");
    let doc = read_report(&path);
    assert_eq!(doc["source"], "embedded-kafka");
    assert_eq!(doc["settings"]["pacing"], "sleep");
    assert_eq!(doc["settings"]["fetch_wait_max_ms"], 1);
    let modes = doc["modes"].as_array().expect("modes");
    let rows: Vec<(&str, &serde_json::Value)> = modes
        .iter()
        .map(|m| (m["mode"].as_str().unwrap_or_default(), &m["trigger"]))
        .collect();
    assert_eq!(
        rows,
        [
            ("floor: kafka relay", &serde_json::Value::Null),
            ("continuous", &serde_json::Value::Null),
            ("micro_batch", &serde_json::json!("as_fast_as_possible")),
            ("micro_batch", &serde_json::json!("processing_time_50ms")),
        ]
    );
    for m in modes {
        // 1 s at 2,000 records/s after the warm-up: every one measured, none twice.
        assert_eq!(m["samples"], 2_000, "{m}");
    }
    let modes = &modes[1..];
    // A 50 ms trigger: the median record waits for it, far above continuous.
    assert!(modes[2]["p50_us"].as_f64().unwrap() > modes[0]["p50_us"].as_f64().unwrap());
    let _ = std::fs::remove_file(&path);
}

#[test]
fn the_floor_rows_come_first_in_the_same_run_and_the_ring_hop_has_every_record() {
    let path = std::env::temp_dir().join(format!("latency-lab-floors-{}.json", std::process::id()));
    run_lab(
        Command::new(env!("CARGO_BIN_EXE_latency-lab"))
            .args([
                "--source",
                "memory",
                "--modes",
                "continuous",
                "--rates",
                "20000",
            ])
            .args(["--duration", "0.5", "--warmup", "0.1", "--runs", "1"])
            .args(["--workers", "2", "--idle", "backoff", "--json"])
            .arg(&path),
    );
    let doc = read_report(&path);
    let modes = doc["modes"].as_array().expect("modes");
    let names: Vec<&str> = modes.iter().filter_map(|m| m["mode"].as_str()).collect();
    assert_eq!(names, ["baseline", "floor: ring hop", "continuous"]);
    // 20,000 records/s for 0.5 s measured: every one crossed the ring mesh.
    let samples = modes[1]["samples"].as_u64().expect("samples");
    assert!((9_000..=11_000).contains(&samples), "{samples} samples");
    let _ = std::fs::remove_file(&path);
}

/// The default, both paths: memory first, then the embedded Kafka, each ending in one summary
/// line of continuous against micro-batch with the ratio; latency columns carry their unit.
#[test]
fn both_paths_end_with_one_ratio_line_each() {
    let path = std::env::temp_dir().join(format!("latency-lab-both-{}.json", std::process::id()));
    let stdout = run_lab(
        Command::new(env!("CARGO_BIN_EXE_latency-lab"))
            .args(["--modes", "continuous,micro-batch", "--trigger", "asap"])
            .args(["--rates", "2000", "--duration", "0.5", "--warmup", "0.2"])
            .args(["--runs", "1", "--workers", "2", "--no-baseline", "--json"])
            .arg(&path),
    );
    let memory = stdout.find("== path: memory").expect("memory path first");
    let kafka = stdout
        .find("== path: kafka (embedded)")
        .expect("then Kafka");
    assert!(memory < kafka);
    assert!(
        stdout.contains("p50 us") && stdout.contains("p99.9 us"),
        "{stdout}"
    );
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("rec/s: continuous p50"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].trim_start().starts_with("memory, 2000 rec/s"));
    assert!(lines[1]
        .trim_start()
        .starts_with("kafka (embedded), 2000 rec/s"));
    for l in &lines {
        assert!(
            l.contains("micro-batch asap p50") && l.contains("x) / p99"),
            "{l}"
        );
    }
    let doc = read_report(&path);
    assert_eq!(doc["source"], "both");
    let paths: Vec<&serde_json::Value> = doc["modes"]
        .as_array()
        .expect("modes")
        .iter()
        .map(|m| &m["path"])
        .collect();
    assert_eq!(
        paths,
        [
            &serde_json::json!("memory"),
            &serde_json::json!("memory"),
            &serde_json::json!("kafka (embedded)"),
            &serde_json::json!("kafka (embedded)"),
        ]
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn exactly_once_is_refused_on_the_embedded_mock_which_shows_uncommitted_results() {
    let out = Command::new(env!("CARGO_BIN_EXE_latency-lab"))
        .args(["--source", "kafka", "--exactly-once", "--runs", "1"])
        .output()
        .expect("latency-lab runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused: {stderr}");
    assert!(
        stderr.contains("--broker noida"),
        "says what to use instead: {stderr}"
    );
}

#[test]
fn exactly_once_results_become_visible_at_their_checkpoint_on_a_separate_broker() {
    let path = std::env::temp_dir().join(format!("latency-lab-eos-{}.json", std::process::id()));
    let stdout = run_lab(
        Command::new(env!("CARGO_BIN_EXE_latency-lab"))
            .args(["--source", "kafka", "--broker", "noida", "--exactly-once"])
            .args(["--checkpoint-interval", "200ms", "--modes", "continuous"])
            .args(["--rates", "1000", "--duration", "1", "--warmup", "0.5"])
            .args(["--runs", "1", "--no-baseline", "--json"])
            .arg(&path),
    );
    assert!(!stdout.contains("WARNING"), "no result missing: {stdout}");
    assert!(
        stdout.contains("checkpoints:") && stdout.contains("sink commit"),
        "says where the slowest checkpoint spent its time: {stdout}"
    );
    let doc = read_report(&path);
    assert_eq!(doc["source"], "noida-kafka");
    let modes = doc["modes"].as_array().expect("modes");
    assert_eq!(modes.len(), 1, "{modes:?}");
    let continuous = &modes[0];
    assert_eq!(continuous["samples"], 1_000, "every result read once");
    // A result is read only once the checkpoint after it commits: with 200 ms between
    // checkpoints the median one waits about half of that. Continuous results without a
    // transaction are read within a few milliseconds.
    let p50 = continuous["p50_us"].as_f64().expect("p50");
    assert!(
        p50 > 40_000.0,
        "read_committed results were read {p50} us after they were due, before their commit"
    );
    // The checkpoints in the report: the first is full, the later ones store what changed
    // (`--full-every` 10), and the slowest says where its time went.
    let epochs = &continuous["epochs"];
    assert_eq!(epochs["kind"], "checkpoints", "{epochs}");
    assert!(epochs["completed"].as_u64().unwrap() >= 3, "{epochs}");
    for kind in ["full", "incremental"] {
        assert!(epochs[kind]["count"].as_u64().expect(kind) >= 1, "{epochs}");
        assert!(
            epochs[kind]["median_bytes"].as_u64().expect(kind) > 0,
            "{epochs}"
        );
    }
    let slowest = |k: &str| epochs["slowest"][k].as_f64().expect(k);
    assert!(
        slowest("barriers_ms") + slowest("sink_commit_ms") <= slowest("duration_ms"),
        "{epochs}"
    );
    let _ = std::fs::remove_file(&path);
}
