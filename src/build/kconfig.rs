//! Kconfig settings: reading `CONFIG_X=v` and `# CONFIG_X is not set`
//! lines, layering fragments over a base `.config`, and finding which
//! requested options did not survive `olddefconfig` and why.

use crate::kernel;
use crate::spec::KconfigOption;
use std::path::{Path, PathBuf};

/// One option as a `.config` line sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// Name without `CONFIG_`.
    pub name: String,
    /// The value as written after `=` (quotes kept); `None` is "is not set".
    pub value: Option<String>,
}

impl Setting {
    /// The `.config` line.
    pub fn line(&self) -> String {
        match &self.value {
            Some(v) => format!("CONFIG_{}={v}", self.name),
            None => format!("# CONFIG_{} is not set", self.name),
        }
    }

    /// What a test's `KCONFIG` entry asks `.config` to say: a bare name is
    /// `=y`, `=n` is "is not set", a string value gets the quotes Kconfig
    /// needs.
    pub fn from_option(o: &KconfigOption) -> Setting {
        let value = match o.value.as_deref() {
            None => Some("y".to_string()),
            Some("n") => None,
            Some(v) => Some(quote(v)),
        };
        Setting {
            name: o.name.clone(),
            value,
        }
    }

    /// The check this setting implies on the final `.config`: exactly this
    /// value ("is not set" is `n`).
    pub fn as_check(&self) -> KconfigOption {
        KconfigOption {
            name: self.name.clone(),
            value: Some(self.value.clone().unwrap_or_else(|| "n".into())),
        }
    }
}

/// Quotes a value unless Kconfig reads it bare: tristates, decimal and hex
/// numbers, and strings already quoted.
fn quote(v: &str) -> String {
    let tristate = matches!(v, "y" | "m" | "n");
    let digits = v.strip_prefix('-').unwrap_or(v);
    let decimal = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit());
    let hex = v
        .strip_prefix("0x")
        .or_else(|| v.strip_prefix("0X"))
        .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()));
    let quoted = v.len() >= 2 && v.starts_with('"') && v.ends_with('"');
    if tristate || decimal || hex || quoted {
        v.to_string()
    } else {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Reads one `.config` line: a setting, or `None` for blanks and comments.
pub fn parse_line(line: &str) -> Option<Setting> {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix("CONFIG_") {
        let (name, value) = rest.split_once('=')?;
        return valid_name(name).then(|| Setting {
            name: name.to_string(),
            value: Some(value.to_string()),
        });
    }
    let name = line
        .strip_prefix("# CONFIG_")?
        .strip_suffix(" is not set")?;
    valid_name(name).then(|| Setting {
        name: name.to_string(),
        value: None,
    })
}

/// Reads a fragment: settings, blank lines and `#` comments. Any other line
/// is an error naming its line number.
pub fn parse_fragment(text: &str) -> Result<Vec<Setting>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match parse_line(line) {
            Some(s) => out.push(s),
            None if line.trim().is_empty() || line.trim_start().starts_with('#') => {}
            None => return Err(format!("line {}: not a Kconfig setting: {line}", i + 1)),
        }
    }
    Ok(out)
}

/// Collapses layers into one list, later settings of a name replacing
/// earlier ones, in the order names first appear.
pub fn resolve(layers: &[&[Setting]]) -> Vec<Setting> {
    let mut out: Vec<Setting> = Vec::new();
    for s in layers.iter().flat_map(|l| l.iter()) {
        match out.iter_mut().find(|o| o.name == s.name) {
            Some(o) => o.value = s.value.clone(),
            None => out.push(s.clone()),
        }
    }
    out
}

/// The base `.config` text with `settings` applied: the base's lines for
/// the options the settings name are dropped and the settings appended, as
/// scripts/kconfig/merge_config.sh does. Appending matters for choices:
/// Kconfig keeps the last `=y` it reads among a choice's members, so an
/// override written in place could lose to a later member of the base.
/// `olddefconfig` then settles dependencies and new defaults.
pub fn merge(base: &str, settings: &[Setting]) -> String {
    let mut out = String::with_capacity(base.len() + settings.len() * 32);
    for line in base.lines() {
        let overridden =
            parse_line(line).is_some_and(|s| settings.iter().any(|o| o.name == s.name));
        if !overridden {
            out.push_str(line);
            out.push('\n');
        }
    }
    for s in settings {
        out.push_str(&s.line());
        out.push('\n');
    }
    out
}

/// Where a requested option came from, for the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// ktest's own fragment for the architecture (lib/kconfig/).
    Ktest,
    /// The test's `KCONFIG`.
    Test,
    /// A configuration variant's fragment (lib/kconfig/variant/).
    Variant(&'static str),
}

/// One option to check after `olddefconfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The option and the value it must have.
    pub option: KconfigOption,
    /// Who asked for it.
    pub origin: Origin,
}

/// Everything the final `.config` must satisfy: ktest's fragment, the
/// variants' over it, and the test's options over those (a later entry
/// replaces an earlier one for the same name). A bare test option is
/// satisfied by `y` or `m`.
pub fn requests(
    fragment: &[Setting],
    variants: &[(&'static str, Vec<Setting>)],
    test: &[KconfigOption],
) -> Vec<Request> {
    let mut out: Vec<Request> = fragment
        .iter()
        .map(|s| Request {
            option: s.as_check(),
            origin: Origin::Ktest,
        })
        .collect();
    for (name, settings) in variants {
        for s in settings {
            out.retain(|r| r.option.name != s.name);
            out.push(Request {
                option: s.as_check(),
                origin: Origin::Variant(name),
            });
        }
    }
    for o in test {
        out.retain(|r| r.option.name != o.name);
        out.push(Request {
            option: o.clone(),
            origin: Origin::Test,
        });
    }
    out
}

/// The requests the final `.config` text does not satisfy.
pub fn unsatisfied<'a>(config: &str, requests: &'a [Request]) -> Vec<&'a Request> {
    let have = kernel::parse_config(config);
    let options: Vec<KconfigOption> = requests.iter().map(|r| r.option.clone()).collect();
    let missing = kernel::missing_options(&have, &options);
    requests
        .iter()
        .filter(|r| missing.iter().any(|m| **m == r.option))
        .collect()
}

/// The 1-based line on which a Kconfig file's text defines `name`
/// (`config NAME` or `menuconfig NAME`).
pub fn defines(text: &str, name: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let mut words = l.split_whitespace();
            matches!(words.next(), Some("config" | "menuconfig"))
                && words.next() == Some(name)
                && words.next().is_none()
        })
        .map(|i| i + 1)
}

/// Finds where the source tree defines `name`: `(Kconfig file, line)`.
/// Only run when an option is missing, so a full walk is affordable.
pub fn find_definition(src: &Path, name: &str) -> Option<(PathBuf, usize)> {
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let fname = e.file_name();
            let fname = fname.to_string_lossy();
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                // Build output, VCS data and userspace tools hold no
                // kernel Kconfig.
                if !fname.starts_with('.') && fname != "tools" && fname != "Documentation" {
                    stack.push(path);
                }
            } else if fname.starts_with("Kconfig") {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    if let Some(line) = defines(&text, name) {
                        let rel = path.strip_prefix(src).unwrap_or(&path).to_path_buf();
                        return Some((rel, line));
                    }
                }
            }
        }
    }
    None
}

/// One line per unsatisfied request, saying why it failed and what to do.
/// `lookup` finds an option's definition (`find_definition` in practice).
pub fn explain(
    failed: &[&Request],
    config: &str,
    lookup: impl Fn(&str) -> Option<(PathBuf, usize)>,
) -> Vec<String> {
    let have = kernel::parse_config(config);
    failed
        .iter()
        .map(|r| {
            let o = &r.option;
            let who = match r.origin {
                Origin::Test => String::new(),
                Origin::Ktest => " (asked for by ktest's own fragment in lib/kconfig/)".into(),
                Origin::Variant(v) => {
                    format!(" (asked for by the {v} variant, lib/kconfig/variant/{v}.config)")
                }
            };
            match lookup(&o.name) {
                None => format!(
                    "{o}: no such option in this kernel tree (misspelt, or removed from this version){who}"
                ),
                Some((file, line)) => {
                    let now = match have.get(&o.name) {
                        Some(v) => format!("is {v}"),
                        None => "is not set".into(),
                    };
                    format!(
                        "{o}: {now} after olddefconfig: its dependencies are not met (see {}:{line}; add what it depends on){who}",
                        file.display()
                    )
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, value: Option<&str>) -> Setting {
        Setting {
            name: name.into(),
            value: value.map(String::from),
        }
    }

    fn o(name: &str, value: Option<&str>) -> KconfigOption {
        KconfigOption {
            name: name.into(),
            value: value.map(String::from),
        }
    }

    #[test]
    fn lines_round_trip() {
        for line in [
            "CONFIG_A=y",
            "# CONFIG_B is not set",
            "CONFIG_S=\"a b\"",
            "CONFIG_HZ=1000",
        ] {
            assert_eq!(parse_line(line).unwrap().line(), line);
        }
        assert_eq!(parse_line("# a comment"), None);
        assert_eq!(parse_line(""), None);
        assert_eq!(parse_line("CONFIG_=y"), None);
        assert_eq!(parse_line("CONFIG_A B=y"), None);
    }

    #[test]
    fn the_embedded_fragment_parses() {
        let f = parse_fragment(crate::arch::X86_64.fragment).unwrap();
        assert!(f.iter().any(|x| x == &s("VIRTIO_PCI", Some("y"))));
        assert!(f.iter().any(|x| x == &s("INPUT_MOUSE", None)));
        let e = parse_fragment("CONFIG_A=y\nBCACHE=y\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
    }

    #[test]
    fn test_options_become_settings() {
        assert_eq!(Setting::from_option(&o("A", None)), s("A", Some("y")));
        assert_eq!(Setting::from_option(&o("A", Some("n"))), s("A", None));
        assert_eq!(Setting::from_option(&o("A", Some("m"))), s("A", Some("m")));
        assert_eq!(
            Setting::from_option(&o("HZ", Some("1000"))),
            s("HZ", Some("1000"))
        );
        assert_eq!(
            Setting::from_option(&o("N", Some("-1"))),
            s("N", Some("-1"))
        );
        assert_eq!(
            Setting::from_option(&o("X", Some("0x1f"))),
            s("X", Some("0x1f"))
        );
        assert_eq!(
            Setting::from_option(&o("S", Some("-ktest"))),
            s("S", Some("\"-ktest\""))
        );
        assert_eq!(
            Setting::from_option(&o("S", Some("\"q\""))),
            s("S", Some("\"q\""))
        );
        assert_eq!(
            Setting::from_option(&o("S", Some("a\"b"))),
            s("S", Some("\"a\\\"b\""))
        );
    }

    #[test]
    fn later_layers_win() {
        let frag = [s("A", Some("y")), s("B", None), s("C", Some("y"))];
        let test = [s("B", Some("y")), s("D", Some("m")), s("A", Some("y"))];
        assert_eq!(
            resolve(&[&frag, &test]),
            vec![
                s("A", Some("y")),
                s("B", Some("y")),
                s("C", Some("y")),
                s("D", Some("m"))
            ]
        );
    }

    #[test]
    fn merge_drops_overridden_lines_and_appends() {
        let base = "#\n# top\n#\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=m\n";
        let merged = merge(base, &[s("B", Some("y")), s("C", None), s("D", Some("1"))]);
        assert_eq!(
            merged,
            "#\n# top\n#\nCONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_D=1\n"
        );
        // A choice member asked for comes after the base's chosen member,
        // so Kconfig (last =y wins) picks it.
        let base = "# CONFIG_KERNEL_GZIP is not set\nCONFIG_KERNEL_XZ=y\n";
        assert_eq!(
            merge(base, &[s("KERNEL_GZIP", Some("y"))]),
            "CONFIG_KERNEL_XZ=y\nCONFIG_KERNEL_GZIP=y\n"
        );
        assert_eq!(merge("", &[]), "");
    }

    #[test]
    fn a_variant_request_replaces_the_fragments_and_the_test_replaces_both() {
        let frag = [s("SLOB", Some("y")), s("A", Some("y"))];
        let variant = vec![s("SLOB", None), s("KASAN", Some("y"))];
        let req = requests(&frag, &[("kasan", variant)], &[o("KASAN", None)]);
        let got: Vec<(String, Origin)> = req
            .iter()
            .map(|r| (r.option.to_string(), r.origin))
            .collect();
        assert_eq!(
            got,
            [
                ("CONFIG_A=y".to_string(), Origin::Ktest),
                ("CONFIG_SLOB=n".to_string(), Origin::Variant("kasan")),
                ("CONFIG_KASAN".to_string(), Origin::Test),
            ]
        );
        let config = "CONFIG_A=y\nCONFIG_SLOB=y\nCONFIG_KASAN=y\n";
        let bad = unsatisfied(config, &req);
        let why = explain(&bad, config, |_| Some(("lib/Kconfig".into(), 3)));
        assert!(
            why[0].contains("asked for by the kasan variant, lib/kconfig/variant/kasan.config"),
            "{why:?}"
        );
    }

    #[test]
    fn requests_and_survival() {
        let frag = [s("A", Some("y")), s("M", None), s("B", Some("y"))];
        let test = [o("B", None), o("X", None), o("HZ", Some("100"))];
        let req = requests(&frag, &[], &test);
        let names: Vec<String> = req.iter().map(|r| r.option.to_string()).collect();
        assert_eq!(
            names,
            [
                "CONFIG_A=y",
                "CONFIG_M=n",
                "CONFIG_B",
                "CONFIG_X",
                "CONFIG_HZ=100"
            ]
        );
        let config = "CONFIG_A=y\n# CONFIG_M is not set\nCONFIG_B=m\nCONFIG_HZ=250\n";
        let bad: Vec<String> = unsatisfied(config, &req)
            .iter()
            .map(|r| r.option.to_string())
            .collect();
        assert_eq!(bad, ["CONFIG_X", "CONFIG_HZ=100"]);
        let config = "CONFIG_M=y\nCONFIG_B=y\nCONFIG_X=y\nCONFIG_HZ=100\n";
        let bad = unsatisfied(config, &req);
        assert_eq!(bad.len(), 2, "A unset and M set: {bad:?}");
        assert!(bad.iter().all(|r| r.origin == Origin::Ktest));
    }

    #[test]
    fn explanations_tell_misspelt_from_unmet() {
        let req = requests(&[], &[], &[o("BCACH", None), o("BCACHE", None)]);
        let failed: Vec<&Request> = req.iter().collect();
        let lines = explain(&failed, "CONFIG_A=y\n", |name| {
            (name == "BCACHE").then(|| (PathBuf::from("drivers/md/bcache/Kconfig"), 2))
        });
        assert!(
            lines[0].starts_with("CONFIG_BCACH: no such option"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].contains("CONFIG_BCACHE: is not set after olddefconfig")
                && lines[1].contains("drivers/md/bcache/Kconfig:2"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn finds_definitions() {
        let text =
            "menu \"x\"\n\nconfig BCACHE_DEBUG\n\tbool\nconfig BCACHE\n\ttristate\nmenuconfig MD\n";
        assert_eq!(defines(text, "BCACHE"), Some(5));
        assert_eq!(defines(text, "MD"), Some(7));
        assert_eq!(defines(text, "BCACH"), None);
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("drivers/md")).unwrap();
        std::fs::write(t.path().join("drivers/md/Kconfig"), text).unwrap();
        assert_eq!(
            find_definition(t.path(), "MD"),
            Some((PathBuf::from("drivers/md/Kconfig"), 7))
        );
        assert_eq!(find_definition(t.path(), "NOPE"), None);
    }
}
