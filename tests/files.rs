//! Bounded runs over files: every line once, bad lines to the dead-letter sink with their place.

mod common;

use rill::connectors::FileLine;
use rill::prelude::*;

#[test]
fn lines_of_several_files_are_read_once_and_bad_ones_become_dead_letters() {
    let dir = std::env::temp_dir().join(format!("rill-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let files = [
        ("a.txt", b"alpha beta\nbeta\n".to_vec()),
        ("b.txt", b"gamma\n\xff\xfe broken\nbeta".to_vec()),
        ("c.txt", b"".to_vec()),
    ];
    for (name, content) in &files {
        std::fs::write(dir.join(name), content).expect("write");
    }
    let job = Job::new("files");
    let letters = CollectSink::<DeadLetter>::default();
    let counts = CollectSink::default();
    job.dead_letter(letters.clone());
    job.source(FileLines::new(files.iter().map(|(n, _)| dir.join(n))))
        .decode(|l: &FileLine| std::str::from_utf8(&l.bytes).map(str::to_owned))
        .flat_map(|line: String| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .key_by(|w: &String| w.clone())
        .count()
        .latest_per_key()
        .sink(counts.clone());
    common::finish(job.run(Config::default().with_workers(2)).expect("starts"))
        .expect("bad lines do not fail the run");

    let mut counts = counts.take();
    counts.sort();
    let expected: Vec<(String, u64)> = [("alpha", 1), ("beta", 3), ("gamma", 1)]
        .iter()
        .map(|(w, n)| (w.to_string(), *n))
        .collect();
    assert_eq!(counts, expected);
    let letters = letters.take();
    assert_eq!(letters.len(), 1);
    let origin = letters[0].origin.as_ref().expect("origin");
    assert!(origin.stream.ends_with("b.txt"), "{origin}");
    assert_eq!(origin.offset, 2, "line number");
    assert_eq!(letters[0].value.as_deref(), Some(&b"\xff\xfe broken"[..]));
    assert!(letters[0].error.contains("utf-8"), "{}", letters[0].error);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
