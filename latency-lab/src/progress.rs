//! Progress bars of the runs.

use std::time::Duration;

/// A progress bar for one run of `total`, on stderr and only on a terminal (indicatif draws
/// nothing otherwise), so the table on stdout stays clean for pipes and files.
pub(crate) fn progress_bar(label: String, total: Duration) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total.as_millis() as u64).with_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:40}] {elapsed}/{msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label);
    bar.set_message(format!("{:.0}s", total.as_secs_f64()));
    bar
}
