//! Hive-style partition paths (`dt=2026-11-30/hour=18`), which query engines (Spark, Trino,
//! DuckDB, Athena) read as columns and use to skip files.

use chrono::{DateTime, Utc};

/// Joins `key=value` segments into a partition path, escaping what Hive escapes in values
/// (`/`, `=`, `%`, `:`, control characters) as `%XX`.
///
/// ```
/// assert_eq!(rill_files::hive([("country", "de"), ("kind", "a/b")]), "country=de/kind=a%2Fb");
/// ```
pub fn hive<K, V, I>(segments: I) -> String
where
    K: AsRef<str>,
    V: AsRef<str>,
    I: IntoIterator<Item = (K, V)>,
{
    let mut out = String::new();
    for (key, value) in segments {
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(key.as_ref());
        out.push('=');
        for c in value.as_ref().chars() {
            if matches!(c, '/' | '=' | '%' | ':' | '\\' | '#' | '?') || c.is_control() {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            } else {
                out.push(c);
            }
        }
    }
    out
}

fn utc(ts_millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ts_millis).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The hour partition of a timestamp (milliseconds since the Unix epoch, UTC):
/// `dt=YYYY-MM-DD/hour=HH`.
///
/// ```
/// // 2026-11-30T18:05:00Z
/// assert_eq!(rill_files::hourly(1_796_061_900_000), "dt=2026-11-30/hour=18");
/// ```
pub fn hourly(ts_millis: i64) -> String {
    utc(ts_millis).format("dt=%Y-%m-%d/hour=%H").to_string()
}

/// The day partition of a timestamp (milliseconds since the Unix epoch, UTC): `dt=YYYY-MM-DD`.
///
/// ```
/// assert_eq!(rill_files::daily(0), "dt=1970-01-01");
/// ```
pub fn daily(ts_millis: i64) -> String {
    utc(ts_millis).format("dt=%Y-%m-%d").to_string()
}
