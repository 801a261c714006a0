//! A pseudo-terminal for the tests of ktest's interactive console.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

/// A terminal for ktest: the child gets the pty's slave side, the test
/// reads everything it shows from the master side.
pub struct Pty {
    master: std::fs::File,
    pub slave: std::os::fd::OwnedFd,
    shown: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    pub fn new() -> Pty {
        let p = nix::pty::openpty(None, None).unwrap();
        let master = std::fs::File::from(p.master);
        let shown = Arc::new(Mutex::new(Vec::new()));
        {
            let mut reader = master.try_clone().unwrap();
            let shown = Arc::clone(&shown);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = reader.read(&mut buf) {
                    shown.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
        Pty {
            master,
            slave: p.slave,
            shown,
        }
    }

    /// Starts `cmd` (a ktest) with this terminal as its stdin, stdout and
    /// stderr; dropping the result stops it.
    pub fn spawn(&self, cmd: &mut std::process::Command) -> super::Background {
        let child = cmd
            .stdin(self.stdio())
            .stdout(self.stdio())
            .stderr(self.stdio())
            .spawn()
            .unwrap();
        super::Background { child: Some(child) }
    }

    pub fn stdio(&self) -> std::process::Stdio {
        std::process::Stdio::from(self.slave.try_clone().unwrap())
    }

    pub fn shown(&self) -> String {
        String::from_utf8_lossy(&self.shown.lock().unwrap()).into_owned()
    }

    pub fn wait_for(&self, secs: u64, what: &str) {
        assert!(
            super::wait_for(secs, || self.shown().contains(what)),
            "{what:?} never appeared on the terminal:\n{}",
            self.shown()
        );
    }

    pub fn type_keys(&mut self, keys: &[u8]) {
        self.master.write_all(keys).unwrap();
    }
}
