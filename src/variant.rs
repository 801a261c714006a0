//! Configuration variants: named sets of debugging options a developer asks
//! for by name (`--variant kasan`), each with what it costs at run time.
//!
//! One table, like src/arch.rs: a variant's Kconfig fragment is layered
//! over ktest's own (so it enters the build's inputs and gets its own build
//! directory), its options are checked after `olddefconfig` like a test's
//! KCONFIG, and its factors scale the test's time limit and memory, as
//! Kent Overstreet's ktest scales them for its kasan and lockdep tests.

use std::fmt;

/// One variant.
#[derive(Debug)]
pub struct Variant {
    /// The name users give.
    pub name: &'static str,
    /// What it checks, for `--help` and messages.
    pub about: &'static str,
    /// Its Kconfig fragment.
    pub fragment: &'static str,
    /// Where the fragment lives in ktest's sources, for messages.
    pub fragment_path: &'static str,
    /// The test's time limit is multiplied by this.
    pub time_factor: u64,
    /// The test's memory is multiplied by this.
    pub mem_factor: u64,
    /// Variants it cannot be combined with (their options exclude each
    /// other in Kconfig).
    pub conflicts: &'static [&'static str],
}

impl PartialEq for Variant {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Variant {}

/// Every variant ktest knows.
pub static ALL: &[Variant] = &[
    Variant {
        name: "kasan",
        about: "generic KASAN: out-of-bounds and use-after-free",
        fragment: include_str!("../lib/kconfig/variant/kasan.config"),
        fragment_path: "lib/kconfig/variant/kasan.config",
        // Instrumented memory accesses and the quarantine: about twice as
        // slow, and the shadow memory takes an eighth of the guest's.
        time_factor: 2,
        mem_factor: 2,
        conflicts: &["kcsan"],
    },
    Variant {
        name: "kcsan",
        about: "KCSAN: data races",
        fragment: include_str!("../lib/kconfig/variant/kcsan.config"),
        fragment_path: "lib/kconfig/variant/kcsan.config",
        // Watchpoints stall the accessing CPU on purpose.
        time_factor: 3,
        mem_factor: 1,
        conflicts: &["kasan"],
    },
    Variant {
        name: "ubsan",
        about: "UBSAN: array bounds, shifts, invalid bool and enum loads",
        fragment: include_str!("../lib/kconfig/variant/ubsan.config"),
        fragment_path: "lib/kconfig/variant/ubsan.config",
        time_factor: 1,
        mem_factor: 1,
        conflicts: &[],
    },
    Variant {
        name: "lockdep",
        about: "lockdep: lock ordering and sleeping in atomic context, preemptible kernel",
        fragment: include_str!("../lib/kconfig/variant/lockdep.config"),
        fragment_path: "lib/kconfig/variant/lockdep.config",
        time_factor: 2,
        mem_factor: 1,
        conflicts: &[],
    },
    Variant {
        name: "debug",
        about:
            "the cheap consistency checks: lists, scatterlists, notifiers, objects, VM, stack end",
        fragment: include_str!("../lib/kconfig/variant/debug.config"),
        fragment_path: "lib/kconfig/variant/debug.config",
        time_factor: 2,
        mem_factor: 1,
        conflicts: &[],
    },
];

/// The names and what each checks, for messages.
fn names() -> String {
    ALL.iter()
        .map(|v| format!("{} ({})", v.name, v.about))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One variant by name.
pub fn find(name: &str) -> Result<&'static Variant, String> {
    ALL.iter()
        .find(|v| v.name == name.trim())
        .ok_or_else(|| format!("unknown variant '{}': ktest has {}", name.trim(), names()))
}

/// The variants of a build or run: in the table's order, each once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variants(Vec<&'static Variant>);

impl Variants {
    /// Reads variant names, each value a name or a comma list of names
    /// (`--variant kasan --variant lockdep`, `--variant kasan,lockdep`,
    /// `variant = "kasan,lockdep"`). Refuses unknown names and
    /// combinations Kconfig cannot give.
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<Variants, String> {
        let mut chosen: Vec<&'static Variant> = Vec::new();
        for name in values
            .iter()
            .flat_map(|v| v.as_ref().split(','))
            .filter(|n| !n.trim().is_empty())
        {
            let v = find(name)?;
            if let Some(c) = chosen.iter().find(|c| v.conflicts.contains(&c.name)) {
                return Err(format!(
                    "variants {} and {} cannot be combined: their options exclude each other in Kconfig",
                    c.name, v.name
                ));
            }
            if !chosen.contains(&v) {
                chosen.push(v);
            }
        }
        chosen.sort_by_key(|v| ALL.iter().position(|a| a == *v));
        Ok(Variants(chosen))
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The variants, in the table's order.
    pub fn iter(&self) -> impl Iterator<Item = &'static Variant> + '_ {
        self.0.iter().copied()
    }

    /// How much longer tests take: the product of the factors (each
    /// variant's slowdown adds to the others').
    pub fn time_factor(&self) -> u64 {
        self.0.iter().map(|v| v.time_factor).product()
    }

    /// How much more memory tests need.
    pub fn mem_factor(&self) -> u64 {
        self.0.iter().map(|v| v.mem_factor).product()
    }
}

impl fmt::Display for Variants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|v| v.name).collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::kconfig::parse_fragment;

    #[test]
    fn every_fragment_parses_and_names_its_options() {
        for v in ALL {
            let s = parse_fragment(v.fragment).unwrap_or_else(|e| panic!("{}: {e}", v.name));
            assert!(!s.is_empty(), "{}", v.name);
            assert!(v.fragment_path.ends_with(&format!("{}.config", v.name)));
            assert!(v.time_factor >= 1 && v.mem_factor >= 1);
            for c in v.conflicts {
                let other = find(c).unwrap();
                assert!(other.conflicts.contains(&v.name), "{} / {c}", v.name);
            }
        }
    }

    #[test]
    fn lists_read_in_table_order_once_and_refuse_what_cannot_be() {
        let v = Variants::parse(&["lockdep,kasan", "kasan"]).unwrap();
        assert_eq!(v.to_string(), "kasan,lockdep");
        assert_eq!(v.time_factor(), 4);
        assert_eq!(v.mem_factor(), 2);
        assert_eq!(Variants::parse::<&str>(&[]).unwrap(), Variants::default());
        assert_eq!(Variants::default().time_factor(), 1);
        let e = Variants::parse(&["kasan", "kcsan"]).unwrap_err();
        assert!(e.contains("kasan and kcsan cannot be combined"), "{e}");
        let e = Variants::parse(&["kasn"]).unwrap_err();
        assert!(
            e.contains("unknown variant 'kasn'") && e.contains("lockdep"),
            "{e}"
        );
    }
}
