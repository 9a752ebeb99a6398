//! Test servers from PyPI, installed with pip into `target/tools/<name>/` on first use (no
//! system install, nothing fetched afterwards).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use rill::engine::sync::Lock;

/// Serializes installs between the tests of one binary (cargo runs binaries one at a time).
static INSTALL: Mutex<()> = Mutex::new(());

/// Installs `packages` into `target/tools/<name>/` unless a finished install is there (its
/// `.installed` marker, written last, so an interrupted install is redone), and returns the
/// directory: the packages' `PYTHONPATH`.
pub(crate) fn pip_install(name: &str, packages: &[&str]) -> PathBuf {
    let _guard = INSTALL.locked();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("tools")
        .join(name);
    let marker = dir.join(".installed");
    if marker.exists() {
        return dir;
    }
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args([
            "--no-warn-script-location",
            "--no-warn-conflicts",
            "--target",
        ])
        .arg(&dir)
        .args(packages)
        .output()
        .expect("python3 runs (needed to install the test servers)");
    assert!(
        out.status.success(),
        "installing {} into {} failed: {}",
        packages.join(" "),
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&marker, packages.join("\n")).expect("install marker");
    dir
}
