//! What the tests that run a Python peer (a client nobody here wrote) share: whether its
//! packages import, and running its script from `tests/interop` with a time limit. Without
//! the packages a test fails when `CI` is set, otherwise it prints a notice and skips
//! (scripts/setup installs them).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Longest a peer script may run.
const LIMIT: Duration = Duration::from_secs(120);

/// Whether `python3 -c "import {imports}"` works; `what` names the packages in the notice.
pub fn available(what: &str, imports: &str) -> bool {
    let importable = Command::new("python3").args(["-c", &format!("import {imports}")]).output().is_ok_and(|o| o.status.success());
    if importable {
        return true;
    }
    let problem = format!("python3 with {what} is not installed (run scripts/setup)");
    if std::env::var_os("CI").is_some() {
        panic!("the {what} interoperability test cannot run: {problem}");
    }
    eprintln!("NOTICE: skipping the {what} interoperability test: {problem}");
    false
}

/// `python3 tests/interop/{script}`, killed if the test ends first; add the arguments.
pub fn script(script: &str) -> tokio::process::Command {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("tests/interop").join(script);
    let mut command = tokio::process::Command::new("python3");
    command.arg(path).kill_on_drop(true);
    command
}

/// Runs `command` (from [`script`]) and returns its standard output; fails the test, with
/// both outputs, when it fails or outlives [`LIMIT`].
pub async fn output(mut command: tokio::process::Command, script: &str) -> String {
    let output = tokio::time::timeout(LIMIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {} s", LIMIT.as_secs()))
        .unwrap_or_else(|error| panic!("{script} could not start: {error}"));
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{script} failed ({}):\n{stdout}\n{stderr}", output.status);
    stdout.into_owned()
}
