//! Running kbuild: the make command line, make variables, and picking the
//! error lines out of a failed build's output.

use std::path::Path;

/// Variables ktest sets itself; a user value would break the build layout.
const RESERVED: &[(&str, &str)] = &[
    (
        "O",
        "ktest builds in its own directory; set build_dir in .ktest.toml to move it",
    ),
    (
        "KBUILD_OUTPUT",
        "ktest builds in its own directory; set build_dir in .ktest.toml to move it",
    ),
    (
        "KCONFIG_CONFIG",
        "ktest manages .config in the build directory",
    ),
    (
        "INSTALL_MOD_PATH",
        "ktest installs modules into the build directory",
    ),
];

/// Parses one `VAR=VALUE` make variable.
pub fn parse_var(text: &str) -> Result<(String, String), String> {
    let Some((name, value)) = text.split_once('=') else {
        return Err(format!(
            "make variable '{text}' is not VAR=VALUE (e.g. -m LLVM=1)"
        ));
    };
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(format!(
            "make variable '{text}': '{name}' is not a variable name"
        ));
    }
    if let Some((_, why)) = RESERVED.iter().find(|(r, _)| *r == name) {
        return Err(format!("make variable {name} cannot be set: {why}"));
    }
    Ok((name.to_string(), value.to_string()))
}

/// The make variables of a build: `.ktest.toml`'s `[make]` table with the
/// command line's `-m VAR=VALUE` over it (the command line wins), sorted by
/// name so the same set always gives the same command line.
pub fn merge_vars(
    file: &[(String, String)],
    cli: &[String],
) -> Result<Vec<(String, String)>, String> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let file = file.iter().map(|(k, v)| parse_var(&format!("{k}={v}")));
    let cli = cli.iter().map(|t| parse_var(t));
    for var in file.chain(cli) {
        let (k, v) = var?;
        vars.retain(|(have, _)| *have != k);
        vars.push((k, v));
    }
    vars.sort();
    Ok(vars)
}

/// The value of a make variable, if set.
pub fn var<'a>(vars: &'a [(String, String)], name: &str) -> Option<&'a str> {
    vars.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// make's arguments (after `make`) for `targets` in `out` built from `src`.
/// The same variables go to every invocation, config targets included, so
/// kbuild never sees a changed command line and rebuilds for it.
pub fn args(
    src: &Path,
    out: &Path,
    jobs: Option<u32>,
    vars: &[(String, String)],
    extra: &[(&str, String)],
    targets: &[&str],
) -> Vec<String> {
    let mut a = vec![
        "-C".to_string(),
        src.to_string_lossy().into_owned(),
        format!("O={}", out.display()),
    ];
    if let Some(j) = jobs {
        a.push(format!("-j{j}"));
    }
    a.extend(vars.iter().map(|(k, v)| format!("{k}={v}")));
    a.extend(extra.iter().map(|(k, v)| format!("{k}={v}")));
    a.extend(targets.iter().map(|t| t.to_string()));
    a
}

/// The status text of a kbuild output line, `CC      fs/ext4/inode.o` for
/// `  CC      fs/ext4/inode.o`; `None` for anything else.
pub fn progress_text(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("  ")?;
    let tag = rest.split_whitespace().next()?;
    let is_tag = tag.len() <= 10
        && tag
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || "-_[]".contains(c));
    (is_tag && rest.len() > tag.len()).then_some(rest)
}

/// Collects the lines that explain a failed build as output streams by: the
/// compiler's and linker's errors with gcc's source excerpt, make's `***`
/// lines, modpost's `ERROR:`s.
#[derive(Debug, Default)]
pub struct ErrorLines {
    lines: Vec<String>,
    more: usize,
    previous: String,
    in_excerpt: bool,
    tail: std::collections::VecDeque<String>,
}

/// At most this many error lines are shown; the rest are in the log.
const MAX_ERROR_LINES: usize = 40;
/// Lines of output shown when no line looks like an error.
const TAIL_LINES: usize = 20;

fn is_error(line: &str) -> bool {
    line.contains("error:")
        || line.contains("Error:")
        || line.contains("ERROR:")
        || line.contains("undefined reference to")
        || line.contains("No rule to make target")
        || (line.starts_with("make") && line.contains("***"))
        || line.contains(": not found")
        || line.contains("command not found")
}

impl ErrorLines {
    fn keep(&mut self, line: String) {
        if self.lines.len() < MAX_ERROR_LINES {
            self.lines.push(line);
        } else {
            self.more += 1;
        }
    }

    /// Looks at the next line of output.
    pub fn push(&mut self, line: &str) {
        if is_error(line) {
            // gcc names the function before the error.
            if self.previous.contains(": In function")
                || self.previous.contains(": In file included")
            {
                let prev = std::mem::take(&mut self.previous);
                if self.lines.last() != Some(&prev) {
                    self.keep(prev);
                }
            }
            self.keep(line.to_string());
            self.in_excerpt = true;
        } else if self.in_excerpt && line.starts_with(' ') && line.contains('|') {
            self.keep(line.to_string());
        } else {
            self.in_excerpt = false;
        }
        self.previous = line.to_string();
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());
    }

    /// The lines to show: the errors, else the end of the output.
    pub fn finish(self) -> Vec<String> {
        if self.lines.is_empty() {
            return self.tail.into_iter().collect();
        }
        let mut out = self.lines;
        if self.more > 0 {
            out.push(format!("... and {} more error lines", self.more));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn variables() {
        assert_eq!(parse_var("LLVM=1").unwrap(), ("LLVM".into(), "1".into()));
        assert_eq!(
            parse_var("KCFLAGS=-O1 -g").unwrap(),
            ("KCFLAGS".into(), "-O1 -g".into())
        );
        assert_eq!(parse_var("W=").unwrap(), ("W".into(), "".into()));
        assert!(parse_var("LLVM").unwrap_err().contains("not VAR=VALUE"));
        assert!(parse_var("1X=2")
            .unwrap_err()
            .contains("not a variable name"));
        assert!(parse_var("O=/tmp").unwrap_err().contains("build_dir"));
    }

    #[test]
    fn command_line_wins_over_the_file() {
        let merged = merge_vars(
            &vars(&[("LLVM", "1"), ("ARCH", "x86_64")]),
            &["LLVM=0".into(), "CROSS_COMPILE=x-".into()],
        )
        .unwrap();
        assert_eq!(
            merged,
            vars(&[("ARCH", "x86_64"), ("CROSS_COMPILE", "x-"), ("LLVM", "0")])
        );
        assert!(merge_vars(&[], &["O=x".into()]).is_err());
    }

    #[test]
    fn make_command_line() {
        let a = args(
            &PathBuf::from("/src"),
            &PathBuf::from("/src/.ktest/build/ab"),
            Some(4),
            &vars(&[("ARCH", "x86_64"), ("LLVM", "1")]),
            &[("INSTALL_MOD_PATH", "/m".to_string())],
            &["modules_install"],
        );
        assert_eq!(
            a,
            [
                "-C",
                "/src",
                "O=/src/.ktest/build/ab",
                "-j4",
                "ARCH=x86_64",
                "LLVM=1",
                "INSTALL_MOD_PATH=/m",
                "modules_install"
            ]
        );
        let a = args(
            &PathBuf::from("/src"),
            &PathBuf::from("/o"),
            None,
            &[],
            &[],
            &["olddefconfig"],
        );
        assert_eq!(a, ["-C", "/src", "O=/o", "olddefconfig"]);
    }

    #[test]
    fn progress_lines() {
        assert_eq!(
            progress_text("  CC      fs/ext4/inode.o"),
            Some("CC      fs/ext4/inode.o")
        );
        assert_eq!(progress_text("  LD [M]  fs/x.ko"), Some("LD [M]  fs/x.ko"));
        assert_eq!(progress_text("make[1]: Entering directory"), None);
        assert_eq!(progress_text("fs/x.c:1:2: warning: x"), None);
        assert_eq!(progress_text("  "), None);
    }

    #[test]
    fn picks_compiler_errors_with_their_excerpt() {
        let out = "\
  CC      fs/ext4/inode.o
fs/ext4/inode.c: In function 'ext4_foo':
fs/ext4/inode.c:12:5: error: 'x' undeclared (first use in this function)
   12 |     x = 1;
      |     ^
fs/ext4/inode.c:12:5: note: each undeclared identifier is reported only once
  CC      fs/ext4/super.o
make[3]: *** [scripts/Makefile.build:250: fs/ext4/inode.o] Error 1
make[2]: *** [scripts/Makefile.build:500: fs/ext4] Error 2
";
        let mut e = ErrorLines::default();
        out.lines().for_each(|l| e.push(l));
        assert_eq!(
            e.finish(),
            [
                "fs/ext4/inode.c: In function 'ext4_foo':",
                "fs/ext4/inode.c:12:5: error: 'x' undeclared (first use in this function)",
                "   12 |     x = 1;",
                "      |     ^",
                "make[3]: *** [scripts/Makefile.build:250: fs/ext4/inode.o] Error 1",
                "make[2]: *** [scripts/Makefile.build:500: fs/ext4] Error 2",
            ]
        );
    }

    #[test]
    fn linker_and_tool_errors_and_the_tail_fallback() {
        let mut e = ErrorLines::default();
        e.push("  LD      vmlinux");
        e.push("ld: kernel/foo.o: in function `bar':");
        e.push("foo.c:(.text+0x5): undefined reference to `baz'");
        assert_eq!(e.finish().len(), 1);

        let mut e = ErrorLines::default();
        e.push("/bin/sh: 1: flex: not found");
        assert_eq!(e.finish(), ["/bin/sh: 1: flex: not found"]);

        let mut e = ErrorLines::default();
        for i in 0..30 {
            e.push(&format!("line {i}"));
        }
        let shown = e.finish();
        assert_eq!(shown.len(), TAIL_LINES);
        assert_eq!(shown.last().unwrap(), "line 29");

        let mut e = ErrorLines::default();
        for i in 0..50 {
            e.push(&format!("x.c:{i}:1: error: bad"));
        }
        let shown = e.finish();
        assert_eq!(shown.len(), MAX_ERROR_LINES + 1);
        assert!(shown.last().unwrap().contains("10 more"));
    }
}
