//! Tests that need something from the host: run, or skip saying so, or,
//! under CI, fail.
//!
//! One file for the whole workspace: ktest's integration tests include it
//! from `tests/common/mod.rs`, ktest's unit tests from `src/main.rs` and
//! create-vm-image's tests from `rootfs-builder/tests/common/mod.rs`, each
//! with `#[path]`.

use std::io::Write as _;

/// Whether a test may go on: `true` if the prerequisite `what` is
/// `present`. When it is missing:
///
/// - under CI (`CI=true` or `CI=1`, as CI services set it, or
///   `KTEST_E2E=1`) the test panics, naming `what` and `how` to get it: a
///   CI run that skipped would report ok for something it never checked;
/// - elsewhere it prints `SKIPPED <test>: needs <what> (<how>)` and
///   returns `false`; the caller returns at once.
///
/// The line goes to `std::io::stderr()` directly, not through `eprintln!`:
/// libtest captures only the print macros (and shows what they printed only
/// for failing tests), while a direct write reaches the terminal, so a plain
/// `cargo test` shows every skip without `--nocapture`. libtest names each
/// test's thread after the test, which gives `<test>`.
pub fn require(present: bool, what: &str, how: &str) -> bool {
    if present {
        return true;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    assert!(
        !under_ci(),
        "{test} needs {what}: {how} (under CI=true or KTEST_E2E=1 a test may not skip)"
    );
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED {test}: needs {what} ({how})"
    );
    false
}

/// Whether this is a CI run, where nothing may be skipped.
fn under_ci() -> bool {
    let set = |var: &str, value: &str| {
        std::env::var(var).is_ok_and(|v| v.trim().eq_ignore_ascii_case(value))
    };
    set("CI", "true") || set("CI", "1") || set("KTEST_E2E", "1")
}
