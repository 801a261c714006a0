//! One typed, checked value per kind of input: guest memory, virtual CPUs,
//! a time limit, a scratch disk's size.
//!
//! The command line (as clap's value parsers), `.ktest.toml` (through serde)
//! and a test's `deps` all parse them with the same `FromStr`, so a kind of
//! value has one syntax, one set of bounds and one way of saying what is
//! wrong wherever it comes from. The bounds are what ktest can ever run;
//! whether this host can give a value is `host_fit`'s question.

use serde::de::{self, Deserialize, Deserializer, Visitor};
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

/// One mebibyte.
pub const MIB: u64 = 1 << 20;

/// The kinds of value, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Guest memory (`Memory`).
    Memory,
    /// Virtual CPUs (`Cpus`).
    Cpus,
    /// A time limit (`TimeLimit`).
    TimeLimit,
    /// A scratch disk's size (`DiskSize`).
    DiskSize,
    /// VMs at once (`VmCount`).
    VmCount,
    /// A part of a sharded run (`Shard`).
    Shard,
}

impl Kind {
    /// What a well-formed value of this kind looks like.
    fn syntax(self) -> &'static str {
        match self {
            Kind::Memory | Kind::DiskSize => "a size such as 512M, 2G or 1024 (MiB)",
            Kind::Cpus => "a whole number of CPUs such as 2",
            Kind::TimeLimit => "a whole number of seconds such as 600",
            Kind::VmCount => "a whole number of VMs such as 4",
            Kind::Shard => "a part K/N such as 2/4, with K from 1 to N",
        }
    }

    /// The least value and why, as the user writes it.
    fn min(self) -> String {
        match self {
            // Measured with the test kernel and tests/hello under TCG: 34M
            // boots with the host's root and 40M with a root image; at 32M
            // the kernel does not even start. 64M leaves room for bigger
            // kernels.
            Kind::Memory => format!("{} (what ktest's guest needs to boot)", Memory::MIN),
            Kind::Cpus => Cpus::MIN.to_string(),
            Kind::TimeLimit => TimeLimit::MIN.to_string(),
            Kind::DiskSize => DiskSize::MIN.to_string(),
            Kind::VmCount => VmCount::MIN.to_string(),
            Kind::Shard => "1/1".into(),
        }
    }

    /// The greatest value and why, as the user writes it.
    fn max(self) -> String {
        match self {
            // Above this the number of bytes does not fit in 64 bits; the
            // real limit is the host's memory (host_fit).
            Kind::Memory => format!("{} (more than any host has)", Memory::MAX),
            Kind::Cpus => format!("{} (the limit of qemu's pc machine)", Cpus::MAX),
            Kind::TimeLimit => format!("{} (30 days)", TimeLimit::MAX),
            Kind::DiskSize => "just under 8E (the largest file Linux can hold)".into(),
            Kind::VmCount => format!("{} (ktest's network slots)", VmCount::MAX),
            Kind::Shard => format!("{} parts", Shard::MAX_PARTS),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Memory => "guest memory",
            Kind::Cpus => "the number of CPUs",
            Kind::TimeLimit => "a time limit",
            Kind::DiskSize => "a scratch disk",
            Kind::VmCount => "the number of VMs",
            Kind::Shard => "a shard",
        })
    }
}

/// What is wrong with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Not of the form the kind takes.
    Malformed,
    /// A size with a unit ktest does not know.
    UnknownUnit,
    /// Below the kind's minimum.
    TooSmall,
    /// Above the kind's maximum, or too large to compute with at all.
    TooLarge,
    /// A disk size that is not a whole number of 512-byte sectors.
    PartSector,
}

/// A value that is not acceptable as its kind, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    /// What the value was meant to be.
    pub kind: Kind,
    /// The value as given.
    pub text: String,
    /// What is wrong with it.
    pub problem: Problem,
}

impl ValueError {
    fn new(kind: Kind, text: &str, problem: Problem) -> Self {
        ValueError {
            kind,
            text: text.trim().to_string(),
            problem,
        }
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (text, kind) = (&self.text, self.kind);
        match self.problem {
            Problem::Malformed => write!(f, "'{text}' is not {}", kind.syntax()),
            Problem::UnknownUnit => write!(
                f,
                "'{text}' has an unknown unit (use K, M, G, T, P or E, or B for bytes; a bare number is MiB)"
            ),
            Problem::TooSmall => write!(f, "'{text}' is too small: {kind} is at least {}", kind.min()),
            Problem::TooLarge => write!(f, "'{text}' is too large: {kind} is at most {}", kind.max()),
            Problem::PartSector => write!(
                f,
                "'{text}' is not a whole number of 512-byte sectors: {kind} must be"
            ),
        }
    }
}

impl std::error::Error for ValueError {}

/// Parses a size: a bare number is MiB (the unit qemu's `-m` uses); K, M,
/// G, T, P and E are binary, case-insensitive, optionally followed by `B`
/// or `iB`; `B` alone is bytes. Returns bytes.
fn parse_size(text: &str, kind: Kind) -> Result<u64, ValueError> {
    let fail = |problem| ValueError::new(kind, text, problem);
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(fail(Problem::Malformed));
    }
    let unit = unit.trim().to_ascii_uppercase();
    let shift = match unit.as_str() {
        "" => 20,
        "B" => 0,
        u => match u
            .strip_suffix("IB")
            .or_else(|| u.strip_suffix('B'))
            .unwrap_or(u)
        {
            "K" => 10,
            "M" => 20,
            "G" => 30,
            "T" => 40,
            "P" => 50,
            "E" => 60,
            _ => return Err(fail(Problem::UnknownUnit)),
        },
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| fail(Problem::TooLarge))
}

/// Parses a whole number (digits only), checked against `min..=max`.
fn parse_count(text: &str, kind: Kind, min: u64, max: u64) -> Result<u64, ValueError> {
    let fail = |problem| ValueError::new(kind, text, problem);
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(fail(Problem::Malformed));
    }
    // Only digits, so the one way to fail is overflow.
    let n: u64 = t.parse().map_err(|_| fail(Problem::TooLarge))?;
    match n {
        n if n < min => Err(fail(Problem::TooSmall)),
        n if n > max => Err(fail(Problem::TooLarge)),
        n => Ok(n),
    }
}

/// A size in the largest binary unit that shows it exactly: `64M`, `2G`,
/// `1536M`, `512B`. `parse_size` reads it back as the same number of bytes.
pub fn show_size(bytes: u64) -> String {
    const UNITS: [(&str, u32); 6] = [
        ("E", 60),
        ("P", 50),
        ("T", 40),
        ("G", 30),
        ("M", 20),
        ("K", 10),
    ];
    UNITS
        .iter()
        .find(|(_, shift)| bytes != 0 && bytes % (1u64 << shift) == 0)
        .map_or_else(
            || format!("{bytes}B"),
            |(unit, shift)| format!("{}{unit}", bytes >> shift),
        )
}

/// Guest memory: a whole number of MiB, as qemu's `-m NM` takes it. A size
/// that is not whole MiB is rounded up, since memory is a minimum a test
/// needs. At least `MIN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Memory {
    mib: u64,
}

impl Memory {
    /// The least memory ktest boots a guest with (see `Kind::min`).
    pub const MIN: Memory = Memory { mib: 64 };
    /// The most memory whose number of bytes fits in 64 bits.
    pub const MAX: Memory = Memory {
        mib: u64::MAX / MIB,
    };

    /// Bytes; cannot overflow (`mib` is at most `MAX`).
    pub fn bytes(self) -> u64 {
        self.mib * MIB
    }

    /// `factor` times as much, at most `MAX`.
    pub fn times(self, factor: u64) -> Memory {
        Memory {
            mib: self.mib.saturating_mul(factor).min(Memory::MAX.mib),
        }
    }
}

/// The least memory ktest's guest boots with: a test's `MEM` starts here.
impl Default for Memory {
    fn default() -> Self {
        Memory::MIN
    }
}

impl FromStr for Memory {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let mib = parse_size(text, Kind::Memory)?.div_ceil(MIB);
        match (Memory { mib }) {
            m if m < Memory::MIN => Err(ValueError::new(Kind::Memory, text, Problem::TooSmall)),
            m => Ok(m),
        }
    }
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&show_size(self.bytes()))
    }
}

/// A number of virtual CPUs, 1 to qemu's limit for the `pc` machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cpus(u32);

impl Cpus {
    /// One CPU.
    pub const MIN: Cpus = Cpus(1);
    /// qemu 7.2's `pc` (i440fx) machine: "Invalid SMP CPUs 1000. The max
    /// CPUs supported by machine 'pc-i440fx-7.2' is 255" (hw/i386/pc_piix.c
    /// sets max_cpus = 255).
    pub const MAX: Cpus = Cpus(255);
    /// When neither the test, the command line nor `.ktest.toml` says.
    pub const DEFAULT: Cpus = Cpus(2);

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl FromStr for Cpus {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let n = parse_count(text, Kind::Cpus, Cpus::MIN.0.into(), Cpus::MAX.0.into())?;
        // In range, so it fits.
        Ok(Cpus(n as u32))
    }
}

impl fmt::Display for Cpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A time limit in whole seconds (an `s` suffix is allowed), 1 s to 30
/// days: short enough that adding it to any `Instant` cannot overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeLimit(u64);

impl TimeLimit {
    /// One second.
    pub const MIN: TimeLimit = TimeLimit(1);
    /// Thirty days.
    pub const MAX: TimeLimit = TimeLimit(30 * 24 * 3600);
    /// When neither the test, the command line nor `.ktest.toml` says.
    pub const DEFAULT: TimeLimit = TimeLimit(600);

    /// Seconds.
    pub fn secs(self) -> u64 {
        self.0
    }

    /// `factor` times as long, at most `MAX`.
    pub fn times(self, factor: u64) -> TimeLimit {
        TimeLimit(
            self.0
                .saturating_mul(factor)
                .clamp(TimeLimit::MIN.0, TimeLimit::MAX.0),
        )
    }
}

impl FromStr for TimeLimit {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let t = text.trim();
        let number = t.strip_suffix('s').unwrap_or(t);
        parse_count(number, Kind::TimeLimit, TimeLimit::MIN.0, TimeLimit::MAX.0)
            .map(TimeLimit)
            // Name the value as given, suffix and all.
            .map_err(|e| ValueError::new(Kind::TimeLimit, text, e.problem))
    }
}

impl fmt::Display for TimeLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

/// How many VMs run at once: 1 up to ktest's network slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VmCount(u32);

impl VmCount {
    /// One VM.
    pub const MIN: VmCount = VmCount(1);
    /// Every VM takes one of the state database's slots.
    pub const MAX: VmCount = VmCount(crate::state::MAX_SLOTS);

    /// The number, clamped to the valid range.
    pub fn new(n: u32) -> VmCount {
        VmCount(n.clamp(Self::MIN.0, Self::MAX.0))
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl FromStr for VmCount {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let n = parse_count(text, Kind::VmCount, Self::MIN.0.into(), Self::MAX.0.into())?;
        Ok(VmCount(n as u32))
    }
}

impl fmt::Display for VmCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Part `index` of `count` of a sharded run, both counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    /// Which part, 1 to `count`.
    pub index: u32,
    /// How many parts.
    pub count: u32,
}

impl Shard {
    /// More parts than any CI runs jobs; a bound keeps the arithmetic small.
    pub const MAX_PARTS: u32 = 10_000;
}

impl FromStr for Shard {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let fail = |problem| ValueError::new(Kind::Shard, text, problem);
        let (k, n) = text
            .trim()
            .split_once('/')
            .ok_or(fail(Problem::Malformed))?;
        let count =
            parse_count(n, Kind::Shard, 1, Self::MAX_PARTS.into()).map_err(|e| fail(e.problem))?;
        let index = parse_count(k, Kind::Shard, 1, count).map_err(|e| match e.problem {
            // "0/4" and "5/4" are not parts of 4, whatever the bound says.
            Problem::TooSmall | Problem::TooLarge => fail(Problem::Malformed),
            p => fail(p),
        })?;
        Ok(Shard {
            index: index as u32,
            count: count as u32,
        })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A scratch disk's size in bytes: whole 512-byte sectors, at least 1M,
/// and no larger than a file can be (`off_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DiskSize(u64);

impl DiskSize {
    /// The smallest disk worth declaring.
    pub const MIN: DiskSize = DiskSize(MIB);
    /// The largest whole-sector size below `i64::MAX`, the largest file
    /// size (`off_t`) Linux has.
    pub const MAX: DiskSize = DiskSize(i64::MAX as u64 / 512 * 512);

    /// Bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for DiskSize {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let bytes = parse_size(text, Kind::DiskSize)?;
        let fail = |problem| Err(ValueError::new(Kind::DiskSize, text, problem));
        match DiskSize(bytes) {
            d if d < DiskSize::MIN => fail(Problem::TooSmall),
            d if d > DiskSize::MAX => fail(Problem::TooLarge),
            d if d.0 % 512 != 0 => fail(Problem::PartSector),
            d => Ok(d),
        }
    }
}

impl fmt::Display for DiskSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&show_size(self.0))
    }
}

/// Deserializes a value from a string or an integer, both read with the
/// type's `FromStr`: `mem = "2G"` and `mem = 2048` mean the same as
/// `--mem 2G` and `--mem 2048`.
struct TextOrInteger<T>(PhantomData<T>);

impl<'de, T: FromStr<Err = ValueError>> Visitor<'de> for TextOrInteger<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a whole number")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
}

macro_rules! deserialize_with_from_str {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(TextOrInteger(PhantomData))
            }
        }
    )*};
}

deserialize_with_from_str!(Memory, Cpus, TimeLimit, DiskSize, VmCount);

#[cfg(test)]
mod tests {
    use super::*;

    fn problem<T: FromStr<Err = ValueError> + fmt::Debug>(text: &str) -> Problem {
        text.parse::<T>().unwrap_err().problem
    }

    #[test]
    fn vm_counts_and_shards() {
        assert_eq!("4".parse::<VmCount>().map(VmCount::get), Ok(4));
        assert_eq!(problem::<VmCount>("0"), Problem::TooSmall);
        assert_eq!(problem::<VmCount>("257"), Problem::TooLarge);
        assert_eq!(problem::<VmCount>("two"), Problem::Malformed);
        assert_eq!(VmCount::new(0).get(), 1);
        let s: Shard = " 2/4 ".parse().unwrap();
        assert_eq!((s.index, s.count, s.to_string()), (2, 4, "2/4".into()));
        assert_eq!("1/1".parse::<Shard>().unwrap().count, 1);
        assert_eq!(problem::<Shard>("1/0"), Problem::TooSmall);
        for bad in ["0/4", "5/4", "2", "a/b", "1/2/3", "-1/2"] {
            assert_eq!(problem::<Shard>(bad), Problem::Malformed, "{bad}");
        }
        assert_eq!(problem::<Shard>("1/10001"), Problem::TooLarge);
        assert_eq!(
            "5/4".parse::<Shard>().unwrap_err().to_string(),
            "'5/4' is not a part K/N such as 2/4, with K from 1 to N"
        );
    }

    #[test]
    fn sizes_and_units() {
        let mib = |t: &str| t.parse::<Memory>().map(|m| m.bytes() / MIB);
        assert_eq!(mib("512M"), Ok(512));
        assert_eq!(mib("2G"), Ok(2048));
        assert_eq!(mib("1024"), Ok(1024));
        assert_eq!(mib("1GiB"), Ok(1024));
        assert_eq!(mib("1gb"), Ok(1024));
        assert_eq!(mib(" 3T "), Ok(3 << 20));
        assert_eq!(mib("65536k"), Ok(64));
        assert_eq!(parse_size("1P", Kind::DiskSize), Ok(1 << 50));
        assert_eq!(parse_size("2E", Kind::DiskSize), Ok(2 << 60));
    }

    #[test]
    fn a_b_alone_is_bytes_not_mib() {
        // Before, "B" was stripped as a suffix, leaving a bare number: MiB.
        assert_eq!(parse_size("1024B", Kind::DiskSize), Ok(1024));
        assert_eq!(problem::<Memory>("1048576B"), Problem::TooSmall);
        assert_eq!(problem::<Memory>("1iB"), Problem::UnknownUnit);
    }

    #[test]
    fn malformed_sizes() {
        for t in ["", "M", "-1", "+5M", "lots"] {
            assert_eq!(problem::<Memory>(t), Problem::Malformed, "{t}");
        }
        assert_eq!(problem::<Memory>("12X"), Problem::UnknownUnit);
        assert_eq!(problem::<Memory>("1.5G"), Problem::UnknownUnit);
    }

    #[test]
    fn sizes_that_overflow_are_too_large_not_wrapped() {
        for t in ["99999999999999999999", "99999999999T", "16E", "16384P"] {
            assert_eq!(problem::<Memory>(t), Problem::TooLarge, "{t}");
            assert_eq!(problem::<DiskSize>(t), Problem::TooLarge, "{t}");
        }
        // The largest representable memory still converts to bytes.
        let m: Memory = "17592186044415M".parse().unwrap();
        assert_eq!(m, Memory::MAX);
        assert_eq!(m.bytes(), (u64::MAX >> 20) << 20);
    }

    #[test]
    fn memory_is_whole_mib_rounded_up_and_at_least_the_minimum() {
        assert_eq!(problem::<Memory>("1"), Problem::TooSmall);
        assert_eq!(problem::<Memory>("1K"), Problem::TooSmall);
        assert_eq!(problem::<Memory>("63M"), Problem::TooSmall);
        assert_eq!("64M".parse(), Ok(Memory::MIN));
        let m: Memory = "100000K".parse().unwrap();
        assert_eq!((m.bytes(), m.to_string()), (98 * MIB, "98M".into()));
    }

    #[test]
    fn the_minimum_is_named_in_the_message() {
        let e = "1K".parse::<Memory>().unwrap_err().to_string();
        assert!(
            e.starts_with("'1K' is too small: guest memory is at least 64M"),
            "{e}"
        );
    }

    #[test]
    fn cpus() {
        assert_eq!("4".parse::<Cpus>().map(Cpus::get), Ok(4));
        assert_eq!("255".parse(), Ok(Cpus::MAX));
        assert_eq!(problem::<Cpus>("0"), Problem::TooSmall);
        assert_eq!(problem::<Cpus>("256"), Problem::TooLarge);
        assert_eq!(problem::<Cpus>("99999999999999999999"), Problem::TooLarge);
        assert_eq!(problem::<Cpus>("two"), Problem::Malformed);
        assert_eq!(problem::<Cpus>("-1"), Problem::Malformed);
        let e = "1000".parse::<Cpus>().unwrap_err().to_string();
        assert!(
            e.contains("at most 255 (the limit of qemu's pc machine)"),
            "{e}"
        );
    }

    #[test]
    fn time_limits() {
        assert_eq!("600".parse(), Ok(TimeLimit::DEFAULT));
        assert_eq!("600s".parse(), Ok(TimeLimit::DEFAULT));
        assert_eq!(TimeLimit::DEFAULT.to_string(), "600s");
        assert_eq!(TimeLimit::MAX.secs(), 2_592_000);
        assert_eq!(problem::<TimeLimit>("0"), Problem::TooSmall);
        assert_eq!(problem::<TimeLimit>("2592001"), Problem::TooLarge);
        assert_eq!(
            problem::<TimeLimit>("18446744073709551615"),
            Problem::TooLarge
        );
        assert_eq!(
            problem::<TimeLimit>("99999999999999999999"),
            Problem::TooLarge
        );
        assert_eq!(problem::<TimeLimit>("10m"), Problem::Malformed);
        let e = "0s".parse::<TimeLimit>().unwrap_err().to_string();
        assert_eq!(e, "'0s' is too small: a time limit is at least 1s");
    }

    #[test]
    fn disk_sizes() {
        assert_eq!("1G".parse::<DiskSize>().map(DiskSize::bytes), Ok(1 << 30));
        assert_eq!("1M".parse(), Ok(DiskSize::MIN));
        assert_eq!(problem::<DiskSize>("0"), Problem::TooSmall);
        assert_eq!(problem::<DiskSize>("512K"), Problem::TooSmall);
        assert_eq!(problem::<DiskSize>("1048577B"), Problem::PartSector);
        assert_eq!(problem::<DiskSize>("8E"), Problem::TooLarge);
        assert_eq!("7E".parse::<DiskSize>().map(DiskSize::bytes), Ok(7 << 60));
    }

    #[test]
    fn display_reads_back_as_the_same_value() {
        for m in [Memory::MIN, Memory::MAX, "1536M".parse().unwrap()] {
            assert_eq!(m.to_string().parse(), Ok(m));
        }
        for d in [DiskSize::MIN, DiskSize::MAX, "1025K".parse().unwrap()] {
            assert_eq!(d.to_string().parse(), Ok(d));
        }
        assert_eq!(Cpus::MAX.to_string().parse(), Ok(Cpus::MAX));
        assert_eq!(TimeLimit::MAX.to_string().parse(), Ok(TimeLimit::MAX));
        assert_eq!(show_size(2 << 30), "2G");
        assert_eq!(show_size(0), "0B");
    }

    #[derive(Debug, serde::Deserialize)]
    struct File {
        mem: Option<Memory>,
        cpus: Option<Cpus>,
        timeout: Option<TimeLimit>,
    }

    fn file(text: &str) -> Result<File, String> {
        toml::from_str(text).map_err(|e| e.message().to_string())
    }

    #[test]
    fn deserialized_from_strings_and_integers_alike() {
        let f = file("mem = 2048\ncpus = 4\ntimeout = \"900\"").unwrap();
        assert_eq!(f.mem, Some("2G".parse().unwrap()));
        assert_eq!(f.cpus, Some("4".parse().unwrap()));
        assert_eq!(f.timeout, Some("900".parse().unwrap()));
        let f = file("mem = \"2G\"\ncpus = \"4\"\ntimeout = 900").unwrap();
        assert_eq!(f.mem, Some("2G".parse().unwrap()));
        assert!(file("mem = 9223372036854775807")
            .unwrap_err()
            .contains("too large"));
        assert!(file("cpus = -1").unwrap_err().contains("'-1' is not"));
        assert!(file("timeout = 1.5")
            .unwrap_err()
            .contains("a string or a whole number"));
    }
}
