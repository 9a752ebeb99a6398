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

#[test]
fn an_over_long_line_becomes_a_dead_letter_with_its_first_bytes_and_reading_goes_on() {
    let dir = std::env::temp_dir().join(format!("rill-long-lines-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // An 8 MiB line without a newline in the middle of a file: it must be neither buffered
    // whole nor handed on.
    let mut content = b"short one\n".to_vec();
    content.extend(std::iter::repeat_n(b'x', 8 << 20));
    content.extend_from_slice(b"\nshort two\r\n");
    std::fs::write(dir.join("big.txt"), &content).expect("write");
    let job = Job::new("long-lines");
    let letters = CollectSink::<DeadLetter>::default();
    let lines = CollectSink::default();
    job.dead_letter(letters.clone());
    job.source(FileLines::new([dir.join("big.txt")]).max_line_bytes(4096))
        .map(|l: FileLine| (l.line, l.bytes))
        .sink(lines.clone());
    common::finish(job.run(Config::default().with_workers(1)).expect("starts"))
        .expect("the long line does not fail the run");
    assert_eq!(
        lines.take(),
        vec![(1, b"short one".to_vec()), (3, b"short two".to_vec())]
    );
    let letters = letters.take();
    assert_eq!(letters.len(), 1);
    assert_eq!(&*letters[0].stage, "files");
    assert_eq!(letters[0].origin.as_ref().map(|o| o.offset), Some(2));
    assert_eq!(letters[0].value.as_deref(), Some(&[b'x'; 1024][..]));
    assert!(
        letters[0]
            .error
            .contains("line 2 is 8388608 bytes, longer than the limit of 4096 bytes"),
        "{}",
        letters[0].error
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
