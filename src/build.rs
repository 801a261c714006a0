//! Building the kernel from a source tree into `.ktest/` (`ktest build`,
//! `oldconfig`, `config`, and `run` without `--kernel`).

use crate::cli::BuildOpts;
use crate::error::{Code, Error, Result};
use crate::kernel::Kernel;
use crate::spec::KconfigOption;

/// The kernel for a run or boot: built from the source tree (the current
/// directory or `--kernel-src`) with the options the test declared.
pub fn kernel_for_run(_opts: &BuildOpts, _kconfig: &[KconfigOption]) -> Result<Kernel> {
    Err(Error::usage(
        "no kernel: give --kernel PATH (a bzImage or a kernel build directory)",
    ))
}

/// `ktest build`.
pub fn build(_opts: &BuildOpts) -> Result<Code> {
    Err(Error::usage("ktest build is not implemented yet"))
}

/// `ktest oldconfig` (`interactive` false) or `ktest config` (true).
pub fn configure(_opts: &BuildOpts, _interactive: bool) -> Result<Code> {
    Err(Error::usage(
        "ktest oldconfig/config is not implemented yet",
    ))
}
