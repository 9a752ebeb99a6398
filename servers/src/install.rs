//! Servers from PyPI, installed with pip into `target/tools/<name>/` on first use.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use crate::ServerError;

/// Serializes installs within a process (one test binary's tests, say).
static INSTALL: Mutex<()> = Mutex::new(());

/// Where installed servers live: the workspace's `target/tools/`.
pub fn tools_dir() -> PathBuf {
    // This crate sits one level below the workspace root.
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .parent()
        .map_or(crate_dir.clone(), PathBuf::from)
        .join("target")
        .join("tools")
}

/// Installs `packages` into `target/tools/<name>/` unless a finished install is there (its
/// `.installed` marker, written last, so an interrupted install is redone), and returns the
/// directory: the packages' `PYTHONPATH`.
pub fn pip_install(name: &str, packages: &[&str]) -> Result<PathBuf, ServerError> {
    // A panic while holding it left nothing half-done that the marker does not cover.
    let _guard = INSTALL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = tools_dir().join(name);
    let marker = dir.join(".installed");
    if marker.exists() {
        return Ok(dir);
    }
    let failed = |reason: String| ServerError::Install {
        packages: packages.join(" "),
        dir: dir.clone(),
        reason,
    };
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
        .map_err(|e| failed(format!("python3 does not run: {e}")))?;
    if !out.status.success() {
        return Err(failed(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    std::fs::write(&marker, packages.join("\n")).map_err(|source| ServerError::Io {
        what: "writing the install marker",
        path: marker.clone(),
        source,
    })?;
    Ok(dir)
}
