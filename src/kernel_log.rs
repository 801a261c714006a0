//! STUB until the real module lands (h-ktap).
use crate::results::KernelLogFinding;
/// Kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Warning,
    Taint,
}
impl Kind {
    /// From name.
    pub fn from_name(s: &str) -> Option<Kind> {
        match s {
            "warning" => Some(Kind::Warning),
            "taint" => Some(Kind::Taint),
            _ => None,
        }
    }
}
/// Allowed kinds.
#[derive(Debug, Clone, Default)]
pub struct Allow;
impl Allow {
    /// Parse.
    pub fn parse(_s: &str) -> Result<Allow, String> {
        Ok(Allow)
    }
}
/// Scanner.
#[derive(Default)]
pub struct Scanner;
impl Scanner {
    /// New.
    pub fn new() -> Self {
        Scanner
    }
    /// Line.
    pub fn line(&mut self, _l: &str) {}
    /// Finish.
    pub fn finish(self) -> Vec<KernelLogFinding> {
        Vec::new()
    }
}
/// Taint.
pub fn taint_finding(_b: u64, _a: u64) -> Option<KernelLogFinding> {
    None
}
