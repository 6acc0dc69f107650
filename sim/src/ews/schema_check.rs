//! One way for every test to check captured EWS XML against Microsoft's schemas: the shared
//! validator (`../shared/spec/ews/validate/validate.sh`, which runs xmllint).
//!
//! Without the validator or xmllint the check is skipped with a notice on a developer's
//! machine, and fails under CI (the `CI` environment variable set), where `scripts/setup`
//! installs xmllint and the shared folder sits beside the repository.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Files per validator run (keeps command lines short).
const CHUNK: usize = 200;

/// The shared EWS spec folder beside this repository (`../shared/spec/ews`).
pub fn spec_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/spec/ews")
}

/// Why the check can't run here, if it can't.
fn missing_tools() -> Option<String> {
    let validator = spec_dir().join("validate/validate.sh");
    if !validator.is_file() {
        return Some(format!(
            "{} is missing (put the shared folder beside the repository)",
            validator.display()
        ));
    }
    let xmllint = Command::new("xmllint").arg("--version").output();
    if !xmllint.is_ok_and(|o| o.status.success()) {
        return Some("xmllint is not installed (run scripts/setup)".into());
    }
    None
}

/// True when the check can run; false (after a notice) when it can't outside CI.
///
/// # Panics
/// Under CI when the validator or xmllint is missing.
pub fn tools_available() -> bool {
    let Some(problem) = missing_tools() else {
        return true;
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "the EWS schema check cannot run: {problem}"
    );
    eprintln!("NOTICE: skipping the EWS schema check: {problem}");
    false
}

/// The `.xml` files of `dir` whose names contain `filter` (`""` for all), sorted.
pub fn captured_files(dir: &Path, filter: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.extension().is_some_and(|e| e == "xml") && name.contains(filter) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Validates `files`: `Ok(n)` when all `n` validate (`Ok(0)` when the tools are missing
/// outside CI), `Err` with the validator's report otherwise.
pub fn validate_files(files: &[PathBuf]) -> Result<usize, String> {
    if !tools_available() {
        return Ok(0);
    }
    let validator = spec_dir().join("validate/validate.sh");
    for chunk in files.chunks(CHUNK) {
        let output = Command::new("sh")
            .arg(&validator)
            .args(chunk)
            .output()
            .map_err(|e| format!("could not run {}: {e}", validator.display()))?;
        let report = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() || report.matches(" validates").count() != chunk.len() {
            return Err(format!("EWS XML fails the schemas:\n{report}"));
        }
    }
    Ok(files.len())
}

/// Validates the files of `dir` whose names contain `filter`, which must be at least
/// `at_least`; returns how many were checked (0 when skipped outside CI).
///
/// # Panics
/// When too few files were captured or one fails the schemas.
pub fn assert_captured_valid(dir: &Path, filter: &str, at_least: usize) -> usize {
    let files = captured_files(dir, filter)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    assert!(
        files.len() >= at_least,
        "expected at least {at_least} captured EWS files in {}, found {}",
        dir.display(),
        files.len()
    );
    validate_files(&files).unwrap_or_else(|report| panic!("{report}"))
}
