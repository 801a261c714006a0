//! Unix sockets in the per-VM directory, whatever its length.
//!
//! A unix socket path is limited to 108 bytes, and a kernel tree can be
//! deep. Going through `/proc/self/fd/N/NAME` of an open directory keeps
//! the path short.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// A short path naming `dir/name`, valid while `dir_handle` is open.
fn short(dir_handle: &File, dir: &Path, name: &str) -> PathBuf {
    let full = dir.join(name);
    if full.as_os_str().len() < 100 {
        full
    } else {
        PathBuf::from(format!("/proc/self/fd/{}/{name}", dir_handle.as_raw_fd()))
    }
}

/// Connects to the socket `name` in `dir`.
pub fn connect(dir: &Path, name: &str) -> std::io::Result<UnixStream> {
    let handle = File::open(dir)?;
    UnixStream::connect(short(&handle, dir, name))
}

/// Listens on the socket `name` in `dir`, replacing a stale one.
pub fn bind(dir: &Path, name: &str) -> std::io::Result<UnixListener> {
    let handle = File::open(dir)?;
    let _ = std::fs::remove_file(dir.join(name));
    UnixListener::bind(short(&handle, dir, name))
}
