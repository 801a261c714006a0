//! Commands that work on the VM started from the current directory: `ssh`,
//! `gdb`, `kgdb`, `mon`, `sysrq` and `stop`.

use crate::error::{Code, Error, Result};
use std::path::Path;

fn todo(what: &str) -> Result<Code> {
    Err(Error::usage(format!("ktest {what} is not implemented yet")))
}

/// `ktest ssh`.
pub fn ssh(_db: &Path, _command: Vec<String>) -> Result<Code> {
    todo("ssh")
}

/// `ktest gdb`.
pub fn gdb(_db: &Path, _args: Vec<String>) -> Result<Code> {
    todo("gdb")
}

/// `ktest kgdb`.
pub fn kgdb(_db: &Path, _args: Vec<String>) -> Result<Code> {
    todo("kgdb")
}

/// `ktest mon`.
pub fn mon(_db: &Path, _command: Option<String>) -> Result<Code> {
    todo("mon")
}

/// `ktest sysrq`.
pub fn sysrq(_db: &Path, _key: String) -> Result<Code> {
    todo("sysrq")
}

/// `ktest stop`.
pub fn stop(_db: &Path) -> Result<Code> {
    todo("stop")
}
