//! What ktest hands the guest: its init script and the assignments that
//! tell it which test to run.

use crate::require::Required;
use std::path::Path;

/// The guest init (lib/guest/init.sh), built into ktest so an installed
/// binary needs no data files.
pub const INIT: &str = include_str!("../lib/guest/init.sh");

fn quote(p: &Path) -> String {
    shell_words::quote(&p.to_string_lossy()).into_owned()
}

/// Which subtests the guest runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subtests {
    /// A file without subtests: run as `TEST ARGS...`, reported as this
    /// one subtest.
    Single(String),
    /// `TEST run-tests NAME` for each, in order (names are `suite::valid_name`).
    Named(Vec<String>),
    /// The same subtests, run by one `TEST run-tests-serve` process
    /// (`spec::TestSpec::serve`).
    Served(Vec<String>),
}

impl Subtests {
    /// The subtests' names, in run order.
    pub fn names(&self) -> Vec<String> {
        match self {
            Subtests::Single(n) => vec![n.clone()],
            Subtests::Named(v) | Subtests::Served(v) => v.clone(),
        }
    }

    /// The same kind of run for `names` (what a fresh VM runs after a
    /// crash).
    pub fn with_names(&self, names: Vec<String>) -> Subtests {
        match self {
            Subtests::Single(n) => Subtests::Single(n.clone()),
            Subtests::Named(_) => Subtests::Named(names),
            Subtests::Served(_) => Subtests::Served(names),
        }
    }
}

/// The shell assignments lib/guest/init.sh sources: `ktest_test`,
/// `ktest_testdir`, `ktest_links` (one host path per line),
/// `ktest_output_end` (the line that ends the test's output),
/// `ktest_subtests` or `ktest_single`, `ktest_kernel_config`, and the
/// test's arguments as `set -- ...`.
pub fn env_file(
    test: &Path,
    links: &[Required],
    output_end: &str,
    subtests: &Subtests,
    kernel_config: bool,
    args: &[String],
) -> String {
    let dir = test.parent().unwrap_or(Path::new("/"));
    let links: Vec<String> = links
        .iter()
        .filter(|r| r.host.parent() != Some(dir))
        .map(|r| r.host.to_string_lossy().into_owned())
        .collect();
    let mut s = String::new();
    s.push_str(&format!("ktest_test={}\n", quote(test)));
    s.push_str(&format!("ktest_testdir={}\n", quote(dir)));
    s.push_str(&format!(
        "ktest_links={}\n",
        shell_words::quote(&links.join("\n"))
    ));
    s.push_str(&format!(
        "ktest_output_end={}\n",
        shell_words::quote(output_end)
    ));
    match subtests {
        Subtests::Single(name) => {
            s.push_str(&format!("ktest_single={}\n", shell_words::quote(name)))
        }
        Subtests::Named(names) => s.push_str(&format!(
            "ktest_subtests={}\n",
            shell_words::quote(&names.join("\n"))
        )),
        Subtests::Served(names) => s.push_str(&format!(
            "ktest_subtests={}\nktest_serve=1\n",
            shell_words::quote(&names.join("\n"))
        )),
    }
    if kernel_config {
        s.push_str("ktest_kernel_config=1\n");
    }
    s.push_str("set --");
    for a in args {
        s.push(' ');
        s.push_str(&shell_words::quote(a));
    }
    s.push('\n');
    s
}

/// The line that tells the host the test's output is complete; the guest
/// init writes it on the output port after the test exits. Random per run,
/// so no output a test could print by accident (a previous run's log,
/// say) ends it early.
pub fn output_end_marker() -> String {
    use std::io::Read;
    let mut nonce = [0u8; 8];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut nonce));
    format!("ktest-output-end {:016x}", u64::from_ne_bytes(nonce))
}

/// What the guest does besides running the test: ssh, and whether the VM
/// stays up with a shell on the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The sshd assignments from `sshkey::Keys::guest_env`, or why the
    /// guest cannot offer ssh (the guest says so on its console).
    pub ssh: Result<String, String>,
    /// Keep the VM up with a shell on the console after the test, or
    /// instead of one (`ktest boot`).
    pub shell: bool,
    /// The user's terminal type, for that shell.
    pub term: Option<String>,
    /// The user's terminal size (rows, columns), for that shell.
    pub size: Option<(u16, u16)>,
    /// The guest's serial console device (`ttyS0`, `ttyAMA0`): the
    /// shell's terminal.
    pub console: String,
}

/// The shell assignments lib/guest/init.sh reads for a `Session`:
/// `ktest_ssh_*`, `ktest_shell`, `ktest_console`, `ktest_term`,
/// `ktest_rows`, `ktest_cols`.
pub fn session_env(s: &Session) -> String {
    let mut env = match &s.ssh {
        Ok(assignments) => assignments.clone(),
        Err(why) => format!("ktest_ssh_unavailable={}\n", shell_words::quote(why)),
    };
    if s.shell {
        env.push_str("ktest_shell=1\n");
        env.push_str(&format!(
            "ktest_console={}\n",
            shell_words::quote(&s.console)
        ));
        if let Some(term) = &s.term {
            env.push_str(&format!("ktest_term={}\n", shell_words::quote(term)));
        }
        if let Some((rows, cols)) = s.size {
            env.push_str(&format!("ktest_rows={rows}\nktest_cols={cols}\n"));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn env_quotes_everything() {
        let links = vec![
            Required {
                host: PathBuf::from("/usr/sbin/make-bcache"),
                name: "make-bcache".into(),
            },
            Required {
                host: PathBuf::from("/t/helper.sh"),
                name: "helper.sh".into(),
            },
        ];
        let env = env_file(
            Path::new("/t/my test"),
            &links,
            "ktest-output-end 1f",
            &Subtests::Single("my_test".into()),
            false,
            &["a b".to_string(), "it's".to_string()],
        );
        assert!(env.contains("ktest_single=my_test\n"), "{env}");
        assert!(!env.contains("ktest_kernel_config"), "{env}");
        assert!(env.contains("ktest_test='/t/my test'\n"), "{env}");
        assert!(env.contains("ktest_testdir=/t\n"), "{env}");
        // Files already beside the test need no link.
        assert!(env.contains("ktest_links=/usr/sbin/make-bcache\n"), "{env}");
        assert!(
            env.contains("ktest_output_end='ktest-output-end 1f'\n"),
            "{env}"
        );
        assert!(env.ends_with("set -- 'a b' 'it'\\''s'\n"), "{env}");
    }

    #[test]
    fn env_is_valid_shell() {
        let names = Subtests::Named(vec!["a".into(), "b.c".into()]);
        let env = env_file(
            Path::new("/t/x"),
            &[],
            "e",
            &names,
            true,
            &["$(rm -rf /)".to_string()],
        );
        // As lib/guest/init.sh loops over them.
        let script = "for n in $ktest_subtests; do printf '%s,' \"$n\"; done";
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{env}\nprintf '%s|' \"$ktest_test\" \"$1\" $ktest_kernel_config; {script}"
            ))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "/t/x|$(rm -rf /)|1|a,b.c,"
        );
    }

    #[test]
    fn session_env_is_valid_shell() {
        let env = session_env(&Session {
            ssh: Err("no ssh-keygen; it's missing".into()),
            shell: true,
            term: Some("xterm-256color".into()),
            size: Some((40, 120)),
            console: "ttyAMA0".into(),
        });
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{env}\nprintf '%s|' \"$ktest_ssh_unavailable\" \"$ktest_shell\" \"$ktest_console\" \"$ktest_term\" \"$ktest_rows\" \"$ktest_cols\""
            ))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "no ssh-keygen; it's missing|1|ttyAMA0|xterm-256color|40|120|"
        );
        let quiet = session_env(&Session {
            ssh: Ok("ktest_ssh_authorized=k\n".into()),
            shell: false,
            term: Some("xterm".into()),
            size: None,
            console: "ttyS0".into(),
        });
        assert_eq!(quiet, "ktest_ssh_authorized=k\n");
    }
}
