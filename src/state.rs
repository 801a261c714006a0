//! The state database: which VMs run, who owns them, their network slots and
//! the files they created, in one SQLite file shared by every ktest of a user.
//!
//! Allocation happens in one IMMEDIATE transaction, so concurrent ktests never
//! get the same slot; rows whose owner died (or belong to an earlier boot) are
//! reaped at every start, and their files removed.

use crate::error::{Context, Error, Result};
use crate::procinfo;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Network slots run from 0 to this bound (exclusive).
pub const MAX_SLOTS: u32 = 256;
/// Slot N forwards host port `SSH_PORT_BASE + N` to the guest's port 22.
pub const SSH_PORT_BASE: u32 = 22200;

/// The environment variable that overrides the database location.
pub const DB_ENV: &str = "KTEST_DB";

/// A VM as recorded in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmRow {
    /// Row id.
    pub id: i64,
    /// Network slot.
    pub slot: u32,
    /// pid of the ktest that owns the VM.
    pub owner_pid: u32,
    /// The directory the VM was started from.
    pub dir: PathBuf,
    /// Its per-VM directory (`DIR/.ktest/vm`).
    pub vm_dir: PathBuf,
    /// The test it runs, if any.
    pub test: String,
    /// qemu's pid once started, else 0.
    pub qemu_pid: u32,
    /// Unix time it started.
    pub started_at: i64,
    /// The host port forwarded to the guest's sshd.
    pub ssh_port: u32,
}

/// The guest MAC address of a slot.
pub fn mac(slot: u32) -> String {
    format!("52:54:00:6b:{:02x}:{:02x}", slot >> 8, slot & 0xff)
}

/// The default database path: `$XDG_STATE_HOME/ktest/state.db`, else
/// `~/.local/state/ktest/state.db`.
pub fn default_path() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("ktest/state.db")
}

/// An open state database.
pub struct State {
    conn: Connection,
    port_base: u32,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS vms (
    id          INTEGER PRIMARY KEY,
    slot        INTEGER NOT NULL UNIQUE,
    owner_pid   INTEGER NOT NULL,
    owner_start INTEGER NOT NULL,
    boot_id     TEXT NOT NULL,
    dir         TEXT NOT NULL UNIQUE,
    vm_dir      TEXT NOT NULL,
    test        TEXT NOT NULL,
    qemu_pid    INTEGER NOT NULL DEFAULT 0,
    qemu_start  INTEGER NOT NULL DEFAULT 0,
    started_at  INTEGER NOT NULL,
    ssh_port    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    vm_id INTEGER NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
    path  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS probes (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| {
        Error::infra(format!(
            "state database {}: {e}\n  check its permissions, or point --db / {DB_ENV} elsewhere",
            path.display()
        ))
    }
}

fn sql(e: rusqlite::Error) -> Error {
    Error::infra(format!("state database: {e}"))
}

/// Switches a database to WAL once (the mode is persistent). Changing the
/// journal mode does not wait on SQLite's busy handler, so when several
/// ktests create the database at the same moment, retry here.
fn set_wal(conn: &Connection) -> rusqlite::Result<()> {
    let mut delay = Duration::from_millis(5);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mode: rusqlite::Result<String> =
            conn.query_row("PRAGMA journal_mode", [], |r| r.get(0));
        match mode {
            Ok(m) if m.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(_) => {}
            Err(e) if !is_busy(&e) => return Err(e),
            Err(_) => {}
        }
        match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)) {
            Ok(m) if m.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(_) | Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(200));
            }
            Ok(m) => {
                return Err(rusqlite::Error::InvalidParameterName(format!(
                    "cannot switch to WAL (journal mode stays {m})"
                )))
            }
            Err(e) => return Err(e),
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// What a dead VM left behind, to remove once the transaction committed.
struct Leftover {
    qemu_pid: u32,
    qemu_start: u64,
    files: Vec<PathBuf>,
}

impl State {
    /// Opens (creating if needed) the database at `path`: directory 0700,
    /// file 0600, WAL, and a busy timeout so concurrent ktests wait their
    /// turn instead of failing.
    pub fn open(path: &Path) -> Result<State> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .context(|| format!("creating {}", dir.display()))?;
            }
        }
        let conn = Connection::open(path).map_err(db_err(path))?;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        conn.busy_timeout(Duration::from_secs(60))
            .map_err(db_err(path))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(db_err(path))?;
        set_wal(&conn).map_err(db_err(path))?;
        // With WAL, NORMAL never corrupts the database; it only skips an
        // fsync per commit, which every ktest start would otherwise pay.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_err(path))?;
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;"))
            .map_err(db_err(path))?;
        Ok(State {
            conn,
            port_base: SSH_PORT_BASE,
        })
    }

    /// Deletes rows of VMs whose owner is gone, in the caller's
    /// transaction, and returns what they left behind.
    fn reap_rows(tx: &rusqlite::Transaction) -> rusqlite::Result<Vec<Leftover>> {
        let boot = procinfo::boot_id();
        let mut stmt = tx
            .prepare("SELECT id, owner_pid, owner_start, boot_id, qemu_pid, qemu_start FROM vms")?;
        let rows: Vec<(i64, u32, u64, String, u32, u64)> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::new();
        for (id, pid, start, row_boot, qemu_pid, qemu_start) in rows {
            if row_boot == boot && procinfo::alive(pid, start) {
                continue;
            }
            let files: Vec<PathBuf> = tx
                .prepare("SELECT path FROM files WHERE vm_id = ?1")?
                .query_map([id], |r| r.get::<_, String>(0))?
                .map(|p| p.map(PathBuf::from))
                .collect::<rusqlite::Result<_>>()?;
            tx.execute("DELETE FROM vms WHERE id = ?1", [id])?;
            let same_boot = row_boot == boot;
            out.push(Leftover {
                qemu_pid: if same_boot { qemu_pid } else { 0 },
                qemu_start,
                files,
            });
        }
        Ok(out)
    }

    fn clean(leftovers: Vec<Leftover>) {
        for l in leftovers {
            if procinfo::alive(l.qemu_pid, l.qemu_start) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(l.qemu_pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            for f in l.files {
                remove_path(&f);
            }
        }
    }

    /// Removes rows and files of VMs whose ktest died. Returns how many.
    pub fn reap(&mut self) -> Result<usize> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let leftovers = Self::reap_rows(&tx).map_err(sql)?;
        tx.commit().map_err(sql)?;
        let n = leftovers.len();
        Self::clean(leftovers);
        Ok(n)
    }

    #[cfg(test)]
    /// Uses ports from `base` on instead of `SSH_PORT_BASE`, so unit tests
    /// do not compete with real VMs. (Keep test bases below 32768, Linux's
    /// ephemeral port range, or any outgoing connection can hold them.)
    pub fn with_port_base(mut self, base: u32) -> State {
        self.port_base = base;
        self
    }

    /// Reaps dead VMs, then records a new VM for `dir` owned by this process
    /// with the lowest free slot, atomically. Fails if a live VM was
    /// started from the same directory.
    pub fn allocate(&mut self, dir: &Path, vm_dir: &Path, test: &str) -> Result<VmRow> {
        let me = std::process::id();
        let my_start = procinfo::start_time(me).unwrap_or(0);
        let now = unix_now();
        let dir_s = dir.to_string_lossy().into_owned();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let leftovers = Self::reap_rows(&tx).map_err(sql)?;
        let running: Option<u32> = tx
            .query_row("SELECT owner_pid FROM vms WHERE dir = ?1", [&dir_s], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql)?;
        if let Some(pid) = running {
            drop(tx);
            Self::clean(leftovers);
            return Err(Error::usage(format!(
                "a VM from this directory is running (ktest pid {pid}); stop it first (ktest stop) or run from another directory"
            )));
        }
        let used: Vec<u32> = tx
            .prepare("SELECT slot FROM vms ORDER BY slot")
            .and_then(|mut s| {
                s.query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<u32>>>()
            })
            .map_err(sql)?;
        // Another user's ktest (another database) or any other program may
        // hold a slot's port; skip those instead of letting qemu fail.
        let base = self.port_base;
        let Some(slot) = free_slots(&used, MAX_SLOTS).find(|s| port_free(base + s)) else {
            return Err(Error::infra(format!(
                "all {MAX_SLOTS} VM slots are in use; see ktest status"
            )));
        };
        tx.execute(
            "INSERT INTO vms (slot, owner_pid, owner_start, boot_id, dir, vm_dir, test, started_at, ssh_port)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                slot,
                me,
                my_start,
                procinfo::boot_id(),
                dir_s,
                vm_dir.to_string_lossy(),
                test,
                now,
                base + slot
            ],
        )
        .map_err(sql)?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(sql)?;
        Self::clean(leftovers);
        Ok(VmRow {
            id,
            slot,
            owner_pid: me,
            dir: dir.to_path_buf(),
            vm_dir: vm_dir.to_path_buf(),
            test: test.to_string(),
            qemu_pid: 0,
            started_at: now,
            ssh_port: base + slot,
        })
    }

    /// Records a file or directory the VM created, to be removed if its
    /// ktest dies before cleaning up.
    pub fn add_file(&self, vm: i64, path: &Path) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO files (vm_id, path) VALUES (?1, ?2)",
                params![vm, path.to_string_lossy()],
            )
            .map(|_| ())
            .map_err(sql)
    }

    /// Records qemu's pid so a reaper can kill a qemu that outlived ktest.
    pub fn set_qemu(&self, vm: i64, pid: u32) -> Result<()> {
        let start = procinfo::start_time(pid).unwrap_or(0);
        self.conn
            .execute(
                "UPDATE vms SET qemu_pid = ?2, qemu_start = ?3 WHERE id = ?1",
                params![vm, pid, start],
            )
            .map(|_| ())
            .map_err(sql)
    }

    /// Removes a VM's rows (after its files were removed).
    pub fn release(&self, vm: i64) -> Result<()> {
        self.conn
            .execute("DELETE FROM vms WHERE id = ?1", [vm])
            .map(|_| ())
            .map_err(sql)
    }

    /// All live VMs, after reaping dead ones.
    pub fn list(&mut self) -> Result<Vec<VmRow>> {
        self.reap()?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, slot, owner_pid, dir, vm_dir, test, qemu_pid, started_at, ssh_port
                 FROM vms ORDER BY slot",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(VmRow {
                    id: r.get(0)?,
                    slot: r.get(1)?,
                    owner_pid: r.get(2)?,
                    dir: PathBuf::from(r.get::<_, String>(3)?),
                    vm_dir: PathBuf::from(r.get::<_, String>(4)?),
                    test: r.get(5)?,
                    qemu_pid: r.get(6)?,
                    started_at: r.get(7)?,
                    ssh_port: r.get(8)?,
                })
            })
            .map_err(sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql)?;
        Ok(rows)
    }

    /// The live VM started from `dir`, if any.
    pub fn find_by_dir(&mut self, dir: &Path) -> Result<Option<VmRow>> {
        Ok(self.list()?.into_iter().find(|v| v.dir == dir))
    }

    /// A cached probe result.
    pub fn probe(&self, key: &str) -> Option<String> {
        self.conn
            .query_row("SELECT value FROM probes WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .ok()
            .flatten()
    }

    /// Caches a probe result.
    pub fn set_probe(&self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO probes (key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .map(|_| ())
            .map_err(sql)
    }
}

/// The slots below `max` that are not in `used`, lowest first.
pub fn free_slots(used: &[u32], max: u32) -> impl Iterator<Item = u32> + '_ {
    (0..max).filter(move |s| !used.contains(s))
}

/// True if qemu could listen on the loopback TCP port now. Unlike std's
/// listener, this does not set SO_REUSEADDR (neither does qemu's hostfwd),
/// so a port with connections in TIME_WAIT counts as busy too.
fn port_free(port: u32) -> bool {
    use nix::sys::socket::{
        bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn,
    };
    let Ok(port) = u16::try_from(port) else {
        return false;
    };
    let Ok(sock) = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return false;
    };
    let addr = SockaddrIn::new(127, 0, 0, 1, port);
    use std::os::fd::AsRawFd;
    bind(sock.as_raw_fd(), &addr).is_ok()
        && listen(&sock, Backlog::new(1).unwrap_or(Backlog::MAXCONN)).is_ok()
}

/// The effective uid: whose files ktest makes and may trust.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Removes a file or a whole directory ktest created; missing is fine.
pub fn remove_path(p: &Path) {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(p);
        }
        Err(_) => {}
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_slot_search() {
        let first = |used: &[u32]| free_slots(used, 4).next();
        assert_eq!(first(&[]), Some(0));
        assert_eq!(first(&[0, 1, 3]), Some(2));
        assert_eq!(first(&[1, 2]), Some(0));
        assert_eq!(first(&[0, 1, 2, 3]), None);
    }

    #[test]
    fn busy_ports_are_skipped() {
        let t = tempfile::tempdir().unwrap();
        let mut s = State::open(&t.path().join("state.db"))
            .unwrap()
            .with_port_base(30900);
        let _held = std::net::TcpListener::bind(("127.0.0.1", 30900)).unwrap();
        let v = s
            .allocate(Path::new("/p"), Path::new("/p/.ktest/vm"), "t")
            .unwrap();
        assert_eq!(v.slot, 1);
        assert_eq!(v.ssh_port, 30901);
    }

    #[test]
    fn mac_is_per_slot() {
        assert_eq!(mac(0), "52:54:00:6b:00:00");
        assert_eq!(mac(257), "52:54:00:6b:01:01");
    }

    #[test]
    fn allocate_release_and_same_dir() {
        let t = tempfile::tempdir().unwrap();
        let db = t.path().join("sub/state.db");
        let mut s = State::open(&db).unwrap().with_port_base(30000);
        let a = s
            .allocate(Path::new("/a"), Path::new("/a/.ktest/vm"), "t")
            .unwrap();
        let b = s
            .allocate(Path::new("/b"), Path::new("/b/.ktest/vm"), "t")
            .unwrap();
        assert_eq!((a.slot, b.slot), (0, 1));
        let e = s
            .allocate(Path::new("/a"), Path::new("/a/.ktest/vm"), "t")
            .unwrap_err();
        assert!(e.message.contains("a VM from this directory is running"));
        s.release(a.id).unwrap();
        let c = s
            .allocate(Path::new("/c"), Path::new("/c/.ktest/vm"), "t")
            .unwrap();
        assert_eq!(c.slot, 0);
        assert_eq!(s.list().unwrap().len(), 2);
        let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn dead_owners_are_reaped_with_their_files() {
        let t = tempfile::tempdir().unwrap();
        let db = t.path().join("state.db");
        let mut s = State::open(&db).unwrap().with_port_base(30300);
        let v = s
            .allocate(Path::new("/x"), Path::new("/x/.ktest/vm"), "t")
            .unwrap();
        let leftover = t.path().join("scratch-0.img");
        std::fs::write(&leftover, "x").unwrap();
        s.add_file(v.id, &leftover).unwrap();
        // Pretend the owner died: a pid that cannot exist.
        s.conn
            .execute("UPDATE vms SET owner_pid = 999999999 WHERE id = ?1", [v.id])
            .unwrap();
        assert_eq!(s.reap().unwrap(), 1);
        assert!(!leftover.exists());
        assert!(s.list().unwrap().is_empty());
        let w = s
            .allocate(Path::new("/x"), Path::new("/x/.ktest/vm"), "t")
            .unwrap();
        assert_eq!(w.slot, 0);
    }

    #[test]
    fn concurrent_allocations_get_distinct_slots() {
        let t = tempfile::tempdir().unwrap();
        let db = t.path().join("state.db");
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let db = db.clone();
                std::thread::spawn(move || {
                    let mut s = State::open(&db).unwrap().with_port_base(30600);
                    let dir = PathBuf::from(format!("/d{i}"));
                    s.allocate(&dir, &dir.join(".ktest/vm"), "t").unwrap().slot
                })
            })
            .collect();
        let mut slots: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        slots.sort();
        assert_eq!(slots, (0..16).collect::<Vec<_>>());
    }
}
