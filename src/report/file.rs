//! Reporters that write one file when the run ends (`--json`, `--junit`),
//! and how they write it.

use super::{Event, Reporter};
use crate::error::{Error, Result};
use crate::results::RunReport;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` so that a reader sees the old file or the
/// whole new one, never half: a temporary file beside it, then a rename.
/// `what` names the report in the error ("JSON report").
pub fn write_atomically(path: &Path, what: &str, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().ok_or_else(|| {
        Error::usage(format!(
            "{} is not a file name for the {what}",
            path.display()
        ))
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::infra(format!(
            "cannot write the {what} to {}: {e}\n  check that its directory exists and is writable",
            path.display()
        ))
    })
}

/// Renders a finished run as a file's text; the error says why not.
pub type Render = fn(&RunReport) -> std::result::Result<String, String>;

/// A reporter that writes `render`'s text to a file when the run ends.
pub struct ReportFile {
    path: PathBuf,
    what: &'static str,
    render: Render,
}

impl ReportFile {
    /// Writes the run to `path`, rendered by `render`; `what` names the
    /// report in errors ("JUnit report").
    pub fn new(path: PathBuf, what: &'static str, render: Render) -> Self {
        ReportFile { path, what, render }
    }
}

impl Reporter for ReportFile {
    fn event(&mut self, event: &Event) -> Result<()> {
        let Event::RunFinished { report } = event else {
            return Ok(());
        };
        let text = (self.render)(report).map_err(|e| {
            Error::infra(format!(
                "cannot write the {} to {}: {e}",
                self.what,
                self.path.display()
            ))
        })?;
        write_atomically(&self.path, self.what, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::run_report;

    fn render(r: &RunReport) -> std::result::Result<String, String> {
        Ok(format!("{}\n", r.run_id))
    }

    fn finished() -> Event {
        Event::RunFinished {
            report: run_report(),
        }
    }

    #[test]
    fn the_file_is_written_when_the_run_ends_whole_and_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.txt");
        std::fs::write(&path, "old").unwrap();
        let mut f = ReportFile::new(path.clone(), "test report", render);
        f.event(&Event::Note {
            job: None,
            text: "x".into(),
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        f.event(&finished()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "20260101-120000-ab12\n"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_unwritable_place_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/results.txt");
        let e = ReportFile::new(path.clone(), "test report", render)
            .event(&finished())
            .unwrap_err();
        assert_eq!(e.code, crate::error::Code::Infra);
        assert!(e.message.contains(&path.display().to_string()), "{e}");
        assert!(e.message.contains("the test report"), "{e}");
    }

    #[test]
    fn a_render_error_names_the_file_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.txt");
        let e = ReportFile::new(path.clone(), "test report", |_| Err("bad path".into()))
            .event(&finished())
            .unwrap_err();
        assert!(e.message.ends_with("r.txt: bad path"), "{e}");
        assert!(!path.exists());
    }

    #[test]
    fn a_bare_directory_is_not_a_file_name() {
        let e = write_atomically(Path::new("/"), "test report", b"x").unwrap_err();
        assert_eq!(e.code, crate::error::Code::Usage);
    }

    #[test]
    fn the_json_and_junit_reporters_write_their_documents() {
        let dir = tempfile::tempdir().unwrap();
        let report = run_report();
        type Make = fn(PathBuf) -> ReportFile;
        let cases: [(Make, String); 2] = [
            (
                crate::report::json::reporter,
                crate::report::json::to_json(&report).unwrap(),
            ),
            (
                crate::report::junit::reporter,
                crate::report::junit::to_junit(&report).to_string().unwrap(),
            ),
        ];
        for (i, (reporter, want)) in cases.into_iter().enumerate() {
            let path = dir.path().join(format!("report-{i}"));
            reporter(path.clone()).event(&finished()).unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), want);
        }
    }
}
