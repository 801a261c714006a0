//! `--json FILE`: the whole run as one JSON document, written when the run
//! ends. docs/results.md documents every field; a test here keeps the two
//! in step.

use super::file::ReportFile;
use crate::results::{counts, RunReport, Verdict};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use std::path::PathBuf;

/// The `schema` field: bumped when a field changes meaning or goes away
/// (adding one is compatible).
pub const SCHEMA: &str = "ktest-results/1";

/// Counts per verdict, every verdict present, in `Verdict::ALL` order.
struct Counts(Vec<(Verdict, usize)>);

impl Serialize for Counts {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (v, n) in &self.0 {
            m.serialize_entry(v.name(), n)?;
        }
        m.end()
    }
}

/// The document: the report's own fields between the schema and the
/// counts.
#[derive(Serialize)]
struct Document<'a> {
    schema: &'static str,
    #[serde(flatten)]
    report: &'a RunReport,
    counts: Counts,
}

/// The run as the JSON document `--json` writes (pretty-printed, ending in
/// a newline). Fails only on a path that is not UTF-8, which JSON cannot
/// hold.
pub fn to_json(report: &RunReport) -> std::result::Result<String, serde_json::Error> {
    let doc = Document {
        schema: SCHEMA,
        report,
        counts: Counts(counts(report.tests.iter().flat_map(|t| &t.subtests))),
    };
    let mut s = serde_json::to_string_pretty(&doc)?;
    s.push('\n');
    Ok(s)
}

/// The `--json FILE` reporter.
pub fn reporter(path: PathBuf) -> ReportFile {
    ReportFile::new(path, "JSON report", |r| {
        to_json(r).map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::run_report;
    use serde_json::Value;
    use std::collections::BTreeSet;

    const DOC: &str = include_str!("../../docs/results.md");

    /// The field paths docs/results.md documents: the first code span of
    /// each table row in its "JSON" section.
    fn documented_fields() -> BTreeSet<String> {
        let section = DOC
            .split("\n## ")
            .find(|s| s.starts_with("JSON"))
            .expect("docs/results.md has a \"## JSON\" section");
        section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .map(|l| l.split('`').next().unwrap_or_default().to_string())
            .collect()
    }

    /// Every field path in `v` (`tests[].subtests[].name`). A subtest's
    /// `children` are subtests again: their fields are the subtest's, so
    /// they map onto the same paths.
    fn emitted_fields(v: &Value, path: &str, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    out.insert(p.clone());
                    match (k.as_str(), v) {
                        ("children", Value::Array(items)) => {
                            for i in items {
                                emitted_fields(i, path, out);
                            }
                        }
                        _ => emitted_fields(v, &p, out),
                    }
                }
            }
            Value::Array(items) => {
                for i in items {
                    emitted_fields(i, &format!("{path}[]"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn the_documented_schema_is_exactly_what_is_emitted() {
        // The fixture fills every optional field, so every key appears.
        let json: Value = serde_json::from_str(&to_json(&run_report()).unwrap()).unwrap();
        let mut emitted = BTreeSet::new();
        emitted_fields(&json, "", &mut emitted);
        let documented = documented_fields();
        let undocumented: Vec<_> = emitted.difference(&documented).collect();
        let stale: Vec<_> = documented.difference(&emitted).collect();
        assert!(
            undocumented.is_empty() && stale.is_empty(),
            "docs/results.md and the JSON differ:\n  emitted, not documented: {undocumented:?}\n  documented, not emitted: {stale:?}"
        );
        // The walk did see nested cases, findings and the kernel.
        for f in [
            "tests[].subtests[].children",
            "tests[].subtests[].findings[].excerpt",
            "kernel.build_hash",
            "counts.notrun",
        ] {
            assert!(emitted.contains(f), "{f}");
        }
    }

    #[test]
    fn the_document_leads_with_its_schema_and_counts_every_verdict() {
        let text = to_json(&run_report()).unwrap();
        assert!(text.starts_with("{\n  \"schema\": \"ktest-results/1\",\n  \"run_id\""));
        assert!(text.ends_with("}\n"));
        let json: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json["counts"],
            serde_json::json!({"pass": 1, "skip": 1, "fail": 3, "timeout": 1, "crash": 1, "notrun": 1})
        );
        // In Verdict::ALL order, as summaries list them.
        assert!(text.contains(
            "\"counts\": {\n    \"pass\": 1,\n    \"skip\": 1,\n    \"fail\": 3,\n    \"timeout\": 1,\n    \"crash\": 1,\n    \"notrun\": 1\n  }"
        ));
        let sub = &json["tests"][0]["subtests"][3];
        assert_eq!(sub["name"], "kunit");
        assert_eq!(sub["verdict"], "fail");
        assert_eq!(sub["duration_ms"], 3200);
        assert_eq!(sub["children"][0]["children"][2]["verdict"], "fail");
        assert_eq!(json["tests"][0]["subtests"][7]["log"], Value::Null);
    }

    #[test]
    fn the_report_reads_back_unchanged() {
        let report = run_report();
        let back: RunReport = serde_json::from_str(&to_json(&report).unwrap()).unwrap();
        assert_eq!(back, report);
    }
}
