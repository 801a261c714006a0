//! What decides a kernel configuration, and the decision whether `.config`
//! must be generated again.
//!
//! Every distinct set of inputs (base config, ktest's fragment, the test's
//! options, make variables) gets its own build directory, named by a hash of
//! a canonical text of those inputs. That text is also kept in the build
//! directory; when it matches, the `.config` there is left alone, so make
//! sees an unchanged configuration and does its own no-op.

use super::kconfig::Setting;
use std::path::{Path, PathBuf};

/// The file in a build directory holding the inputs its `.config` was made
/// from.
pub const STAMP: &str = "ktest-inputs";

/// The configuration a build starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// A kbuild config target: `tinyconfig`, `defconfig`, `x86_64_defconfig`...
    Target(String),
    /// A complete `.config` file.
    File(PathBuf),
}

/// The default base: the smallest kernel that, with ktest's fragment, boots.
pub const DEFAULT_BASE: &str = "tinyconfig";

impl Base {
    /// Reads a `--base-config` / `base_config` value. A value with a `/` is
    /// a file (relative to `cwd`); a bare name ending in `config` is a make
    /// target; any other bare name must be an existing file.
    pub fn parse(value: &str, cwd: &Path) -> Result<Base, String> {
        let file = || {
            let p = cwd.join(value);
            if p.is_file() {
                Ok(Base::File(p))
            } else {
                Err(format!(
                    "base config {value}: no such file (give tinyconfig, defconfig, another config target, or a .config file)"
                ))
            }
        };
        if value.contains('/') {
            return file();
        }
        let target_like = value.ends_with("config")
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if target_like {
            Ok(Base::Target(value.to_string()))
        } else {
            file()
        }
    }
}

/// Everything that decides the configuration, in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    /// The base; for a file, its content is what counts.
    pub base: Base,
    /// The base file's content hash (`None` for a target).
    pub base_digest: Option<u64>,
    /// ktest's fragment text.
    pub fragment: String,
    /// The test's settings that differ from the fragment, sorted by name.
    pub options: Vec<Setting>,
    /// Make variables that reach the build, sorted by name.
    pub make_vars: Vec<(String, String)>,
}

/// Make variables that change nothing in the output; they do not make a
/// configuration distinct.
const COSMETIC_VARS: &[&str] = &["V"];

impl Inputs {
    /// Canonical inputs. `options` are the test's settings (already
    /// resolved, later wins); those the fragment already sets the same way
    /// are dropped, so declaring them does not cost a separate build.
    pub fn new(
        base: Base,
        base_digest: Option<u64>,
        fragment: &str,
        fragment_settings: &[Setting],
        options: &[Setting],
        make_vars: &[(String, String)],
    ) -> Inputs {
        let mut options: Vec<Setting> = options
            .iter()
            .filter(|o| !fragment_settings.contains(o))
            .cloned()
            .collect();
        options.sort_by(|a, b| a.name.cmp(&b.name));
        let mut make_vars: Vec<(String, String)> = make_vars
            .iter()
            .filter(|(k, _)| !COSMETIC_VARS.contains(&k.as_str()))
            .cloned()
            .collect();
        make_vars.sort();
        Inputs {
            base,
            base_digest,
            fragment: fragment.to_string(),
            options,
            make_vars,
        }
    }

    /// The canonical text: one item per line, readable by a user wondering
    /// which build directory is which.
    pub fn key_text(&self) -> String {
        let mut t = String::from("# The inputs of this build's .config (written by ktest)\n");
        match (&self.base, self.base_digest) {
            (Base::Target(name), _) => t.push_str(&format!("base {name}\n")),
            (Base::File(_), Some(d)) => t.push_str(&format!("base file {d:016x}\n")),
            (Base::File(p), None) => t.push_str(&format!("base file {}\n", p.display())),
        }
        t.push_str(&format!(
            "fragment {:016x}\n",
            fnv1a64(self.fragment.as_bytes())
        ));
        for o in &self.options {
            t.push_str(&format!("option {}\n", o.line()));
        }
        for (k, v) in &self.make_vars {
            t.push_str(&format!("make {k}={v}\n"));
        }
        t
    }

    /// The build directory's name: 16 hex digits of the key text's hash.
    pub fn dir_name(&self) -> String {
        format!("{:016x}", fnv1a64(self.key_text().as_bytes()))
    }
}

/// 64-bit FNV-1a. Stable across Rust releases (unlike std's hasher), so a
/// toolchain upgrade does not orphan every build directory.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What to do with a build directory's `.config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigAction {
    /// The inputs are those it was made from: leave it (and its mtime) alone.
    Keep,
    /// Make it from the inputs.
    Generate,
}

/// Keeps `.config` when it exists and the stamp says it was made from
/// exactly these inputs. A missing stamp means configuring never finished
/// (or was interrupted), so the config cannot be trusted.
pub fn config_action(stamp: Option<&str>, key_text: &str, config_exists: bool) -> ConfigAction {
    if config_exists && stamp == Some(key_text) {
        ConfigAction::Keep
    } else {
        ConfigAction::Generate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, value: &str) -> Setting {
        Setting {
            name: name.into(),
            value: Some(value.into()),
        }
    }

    fn inputs(options: &[Setting], vars: &[(&str, &str)]) -> Inputs {
        let frag = [s("EXT4_FS", "y")];
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Inputs::new(
            Base::Target("tinyconfig".into()),
            None,
            "CONFIG_EXT4_FS=y\n",
            &frag,
            options,
            &vars,
        )
    }

    #[test]
    fn base_values() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("my.config"), "").unwrap();
        assert_eq!(
            Base::parse("tinyconfig", t.path()).unwrap(),
            Base::Target("tinyconfig".into())
        );
        assert_eq!(
            Base::parse("x86_64_defconfig", t.path()).unwrap(),
            Base::Target("x86_64_defconfig".into())
        );
        assert_eq!(
            Base::parse("./my.config", t.path()).unwrap(),
            Base::File(t.path().join("./my.config"))
        );
        assert!(Base::parse("./nope.config", t.path())
            .unwrap_err()
            .contains("no such file"));
        assert!(Base::parse("something", t.path()).is_err());
    }

    #[test]
    fn same_inputs_same_directory() {
        let a = inputs(&[s("MD", "y"), s("BCACHE", "y")], &[("LLVM", "1")]);
        let b = inputs(
            &[s("BCACHE", "y"), s("MD", "y")],
            &[("LLVM", "1"), ("V", "1")],
        );
        assert_eq!(a.key_text(), b.key_text());
        assert_eq!(a.dir_name(), b.dir_name());
        assert_eq!(a.dir_name().len(), 16);
        // An option the fragment already sets costs no separate build.
        assert_eq!(
            inputs(&[s("EXT4_FS", "y")], &[]).dir_name(),
            inputs(&[], &[]).dir_name()
        );
    }

    #[test]
    fn any_real_difference_is_a_new_directory() {
        let base = inputs(&[], &[]);
        let names = [
            inputs(&[s("BCACHE", "y")], &[]).dir_name(),
            inputs(&[s("BCACHE", "m")], &[]).dir_name(),
            inputs(&[s("EXT4_FS", "m")], &[]).dir_name(),
            inputs(&[], &[("LLVM", "1")]).dir_name(),
            inputs(&[], &[("CROSS_COMPILE", "x86_64-linux-gnu-")]).dir_name(),
        ];
        for n in &names {
            assert_ne!(n, &base.dir_name());
        }
        let mut other = base.clone();
        other.base = Base::Target("defconfig".into());
        assert_ne!(other.dir_name(), base.dir_name());
        let mut other = base.clone();
        other.fragment.push_str("CONFIG_KASAN=y\n");
        assert_ne!(other.dir_name(), base.dir_name());
        let mut file = base.clone();
        file.base = Base::File("/a".into());
        file.base_digest = Some(1);
        let mut file2 = file.clone();
        file2.base_digest = Some(2);
        assert_ne!(file.dir_name(), file2.dir_name());
        // The file's path does not count, its content does.
        file2.base = Base::File("/b".into());
        file2.base_digest = Some(1);
        assert_eq!(file.dir_name(), file2.dir_name());
    }

    #[test]
    fn keep_only_when_made_from_the_same_inputs() {
        let key = inputs(&[], &[]).key_text();
        assert_eq!(config_action(Some(&key), &key, true), ConfigAction::Keep);
        assert_eq!(
            config_action(Some(&key), &key, false),
            ConfigAction::Generate
        );
        assert_eq!(config_action(None, &key, true), ConfigAction::Generate);
        let other = inputs(&[s("BCACHE", "y")], &[]).key_text();
        assert_eq!(
            config_action(Some(&other), &key, true),
            ConfigAction::Generate
        );
    }

    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
    }
}
