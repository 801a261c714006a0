//! Running `TEST deps` on the host and turning its output into a `TestSpec`.

use crate::error::{Error, Result};
use crate::spec::{self, TestSpec};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long `deps` may take; it only prints a few lines.
const DEPS_TIME_LIMIT: Duration = Duration::from_secs(30);

/// Checks that `test` is an executable file, with a message saying how to
/// fix it otherwise.
pub fn check_executable(test: &Path) -> Result<()> {
    let meta =
        std::fs::metadata(test).map_err(|e| Error::usage(format!("{}: {e}", test.display())))?;
    if !meta.is_file() {
        return Err(Error::usage(format!(
            "{} is not a file; give the test script's path",
            test.display()
        )));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(Error::usage(format!(
            "{} is not executable; chmod +x it",
            test.display()
        )));
    }
    Ok(())
}

/// Runs `test deps` in the test's directory and parses what it declares.
pub fn read(test: &Path) -> Result<TestSpec> {
    check_executable(test)?;
    let dir = test.parent().unwrap_or(Path::new("/"));
    let shown = test.display();
    let mut child = Command::new(test)
        .arg("deps")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::usage(format!("{shown}: cannot run '{shown} deps': {e}")))?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| Error::infra(e.to_string()))? {
            break status;
        }
        if start.elapsed() > DEPS_TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::usage(format!(
                "{shown}: '{shown} deps' did not finish within {} s; deps mode must only print declarations and exit",
                DEPS_TIME_LIMIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let err = err_reader.join().unwrap_or_default();
    if !status.success() {
        let detail = err.trim();
        return Err(Error::usage(format!(
            "{shown}: '{shown} deps' failed ({status}){}{detail}\n  a test must handle its first argument 'deps' by printing KEY=VALUE lines and exiting 0",
            if detail.is_empty() { "" } else { ":\n  " }
        )));
    }
    spec::parse(&out).map_err(|e| Error::usage(format!("{shown}: deps: {e}")))
}
