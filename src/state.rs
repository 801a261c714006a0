//! The state database: which VMs run, who owns them, their network slots and
//! the files they created, in one SQLite file shared by every ktest of a user.
//!
//! Allocation happens in one IMMEDIATE transaction, so concurrent ktests never
//! get the same slot; rows whose owner died (or belong to an earlier boot) are
//! reaped at every start, and their VM directories removed.
//!
//! The database is not trusted with more than bookkeeping: ktest refuses a
//! database or directory others could write, and the reaper removes only a
//! directory that proves to be a dead VM's own `.ktest/vm` (see `clean`).

use crate::error::{Code, Context, Error, Result};
use crate::plan::names;
use crate::procinfo;
use crate::signals;
use crate::vmlock;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

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
    /// The pid namespace `owner_pid` belongs to (`procinfo::pid_namespace`);
    /// empty in rows written before ktest recorded it.
    pub pid_ns: String,
    /// The directory the VM was started from.
    pub dir: PathBuf,
    /// Its per-VM directory (`DIR/.ktest/vms/ID`).
    pub vm_dir: PathBuf,
    /// The test it runs, if any.
    pub test: String,
    /// qemu's pid once started, else 0.
    pub qemu_pid: u32,
    /// Unix time it started.
    pub started_at: i64,
    /// The host port forwarded to the guest's sshd.
    pub ssh_port: u32,
    /// Its id among the VMs from `dir` (`vmlock::claim`); empty in rows of
    /// older ktests.
    pub vm_id: String,
}

/// The guest MAC address of a slot.
pub fn mac(slot: u32) -> String {
    format!("52:54:00:6b:{:02x}:{:02x}", slot >> 8, slot & 0xff)
}

/// The default database path: `$XDG_STATE_HOME/ktest/state.db`, else
/// `~/.local/state/ktest/state.db`, else (neither set) `/tmp/ktest-UID/state.db`.
pub fn default_path() -> PathBuf {
    default_path_from(
        std::env::var_os("XDG_STATE_HOME"),
        std::env::var_os("HOME"),
        euid(),
    )
}

fn default_path_from(
    xdg: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
    uid: u32,
) -> PathBuf {
    let set = |v: Option<std::ffi::OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    match (set(xdg), set(home)) {
        (Some(xdg), _) => xdg.join("ktest/state.db"),
        (None, Some(home)) => home.join(".local/state/ktest/state.db"),
        // Not a directory shared by all users: whoever made it first would
        // own everyone's database. `State::open` refuses it if it is not ours.
        (None, None) => PathBuf::from(format!("/tmp/ktest-{uid}/state.db")),
    }
}

/// An open state database.
pub struct State {
    conn: Connection,
    port_base: u32,
}

/// The tables of schema version 0, as every database has them. Frozen:
/// changes go into `MIGRATIONS`.
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
    ssh_port    INTEGER NOT NULL,
    pid_ns      TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS probes (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| {
        interrupted(&e).unwrap_or_else(|| {
            Error::infra(format!(
                "state database {}: {e}\n  check its permissions, or point --db / {DB_ENV} elsewhere",
                path.display()
            ))
        })
    }
}

/// A database error as ktest reports it (exit 5; 130 if Ctrl-C cut a wait).
pub(crate) fn sql(e: rusqlite::Error) -> Error {
    interrupted(&e).unwrap_or_else(|| Error::infra(format!("state database: {e}")))
}

/// A wait for the database that Ctrl-C or SIGTERM cut short: exit 130.
fn interrupted(e: &rusqlite::Error) -> Option<Error> {
    (is_busy(e) && signals::interrupted()).then(|| {
        Error::new(
            Code::Interrupted,
            "interrupted while waiting for the state database (another ktest held it)",
        )
    })
}

/// How long ktest waits for another process holding the database.
const BUSY_LIMIT: Duration = Duration::from_secs(60);

/// SQLite's busy handler: retry every few milliseconds for up to
/// `BUSY_LIMIT`, but give up at once when ktest is asked to stop (SQLite's
/// own busy timeout would sleep through Ctrl-C).
fn busy_wait(retries: i32) -> bool {
    thread_local!(static SINCE: std::cell::Cell<Instant> = std::cell::Cell::new(Instant::now()));
    if retries == 0 {
        SINCE.set(Instant::now());
    }
    if signals::interrupted() || SINCE.get().elapsed() >= BUSY_LIMIT {
        return false;
    }
    std::thread::sleep(Duration::from_millis(
        u64::from(retries.unsigned_abs()).clamp(1, 20),
    ));
    !signals::interrupted()
}

/// The error SQLite gives when it is busy, for waits ktest does itself.
fn busy() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None)
}

/// Switches a database to WAL once (the mode is persistent). Changing the
/// journal mode does not wait on SQLite's busy handler, so when several
/// ktests create the database at the same moment, retry here.
fn set_wal(conn: &Connection) -> rusqlite::Result<()> {
    let mut delay = Duration::from_millis(5);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if signals::interrupted() {
            return Err(busy());
        }
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

/// Why a file or directory with this owner and mode is no safe place for
/// the state of user `me`, and what to do; `None` if it is.
fn exposure(owner: u32, mode: u32, me: u32, path: &Path) -> Option<String> {
    let p = path.display();
    if owner != me {
        return Some(format!(
            "is owned by uid {owner}, not by you (uid {me})\n  chown it to yourself (chown {me} {p}), or point --db / {DB_ENV} at a directory of your own"
        ));
    }
    (mode & 0o022 != 0).then(|| {
        format!(
            "is writable by others (mode {:04o})\n  make it private (chmod go-w {p}), or point --db / {DB_ENV} at a directory of your own",
            mode & 0o7777
        )
    })
}

/// Refuses a state file or directory (followed through symlinks) that
/// someone else could write: whoever writes the database decides what
/// ktest kills and removes.
fn check_private(path: &Path, what: &str) -> Result<()> {
    let m = std::fs::metadata(path).context(|| format!("{what} {}", path.display()))?;
    match exposure(m.uid(), m.mode(), euid(), path) {
        None => Ok(()),
        Some(why) => Err(Error::infra(format!("{what} {} {why}", path.display()))),
    }
}

/// Creates what is missing of the database's directory (0700) and the
/// file itself (0600), then checks the directory, the file (through a
/// symlink: its target and the target's directory) and SQLite's -wal and
/// -shm files beside it.
fn secure(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .context(|| format!("creating {}", dir.display()))?;
    }
    check_private(dir, "state directory")?;
    // create_new does not follow a symlink, so a dangling one fails here.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(Error::infra(format!(
                "creating state database {}: {e}",
                path.display()
            )))
        }
        _ => {}
    }
    let real = path
        .canonicalize()
        .context(|| format!("state database {}", path.display()))?;
    check_private(&real, "state database")?;
    if let Some(real_dir) = real.parent() {
        if dir.canonicalize().ok().as_deref() != Some(real_dir) {
            check_private(real_dir, "state directory")?;
        }
    }
    for suffix in ["-wal", "-shm"] {
        let mut side = real.clone().into_os_string();
        side.push(suffix);
        let side = PathBuf::from(side);
        match std::fs::symlink_metadata(&side) {
            Ok(m) if !m.file_type().is_file() => {
                return Err(Error::infra(format!(
                    "state database file {} is not a regular file\n  remove it, or point --db / {DB_ENV} elsewhere",
                    side.display()
                )))
            }
            Ok(_) => check_private(&side, "state database file")?,
            Err(_) => {}
        }
    }
    Ok(())
}

/// Schema changes since `SCHEMA`, in order: entry N takes a database from
/// `user_version` N to N + 1. The rule: `SCHEMA` (version 0) never changes
/// again; a change is a new entry at the end, never an edit of one that
/// shipped, and only adds (tables, indexes, columns with defaults), so an
/// older ktest still works on a newer database. One exception, entry 2:
/// SQLite cannot drop a constraint, so lifting `vms.dir`'s UNIQUE (many
/// VMs from one directory) rebuilds the table, keeping every column and
/// row; older ktests read and write the rebuilt table as before.
const MIGRATIONS: &[&str] = &[
    // 1: the results history (src/history.rs).
    "
CREATE TABLE runs (
    id                TEXT PRIMARY KEY,
    started_at        INTEGER NOT NULL,
    duration_ms       INTEGER NOT NULL,
    kernel_release    TEXT,
    kernel_build_hash TEXT,
    kernel_describe   TEXT,
    kernel_key        TEXT NOT NULL,
    kernel_image      TEXT NOT NULL,
    host_dir          TEXT NOT NULL
);
CREATE INDEX runs_by_time ON runs (started_at, id);
CREATE INDEX runs_by_dir ON runs (host_dir, started_at);
CREATE TABLE run_tests (
    run_id       TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    test         TEXT NOT NULL,
    console_logs TEXT NOT NULL,
    PRIMARY KEY (run_id, position)
);
CREATE TABLE results (
    run_id        TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    test_position INTEGER NOT NULL,
    parent        INTEGER,
    test          TEXT NOT NULL,
    test_name     TEXT NOT NULL,
    subtest       TEXT NOT NULL,
    verdict       TEXT NOT NULL,
    reason        TEXT,
    duration_ms   INTEGER NOT NULL,
    log_path      TEXT,
    findings      TEXT,
    PRIMARY KEY (run_id, position)
);
CREATE INDEX results_by_test ON results (test, subtest);
CREATE INDEX results_by_name ON results (test_name, subtest);
",
    // 2: VM ids; many VMs from one directory (src/vmlock.rs).
    "
CREATE TABLE vms_new (
    id          INTEGER PRIMARY KEY,
    slot        INTEGER NOT NULL UNIQUE,
    owner_pid   INTEGER NOT NULL,
    owner_start INTEGER NOT NULL,
    boot_id     TEXT NOT NULL,
    dir         TEXT NOT NULL,
    vm_dir      TEXT NOT NULL,
    test        TEXT NOT NULL,
    qemu_pid    INTEGER NOT NULL DEFAULT 0,
    qemu_start  INTEGER NOT NULL DEFAULT 0,
    started_at  INTEGER NOT NULL,
    ssh_port    INTEGER NOT NULL,
    pid_ns      TEXT NOT NULL DEFAULT '',
    vm_id       TEXT NOT NULL DEFAULT ''
);
INSERT INTO vms_new (id, slot, owner_pid, owner_start, boot_id, dir, vm_dir, test,
                     qemu_pid, qemu_start, started_at, ssh_port, pid_ns)
    SELECT id, slot, owner_pid, owner_start, boot_id, dir, vm_dir, test,
           qemu_pid, qemu_start, started_at, ssh_port, pid_ns FROM vms;
DROP TABLE vms;
ALTER TABLE vms_new RENAME TO vms;
CREATE INDEX vms_by_dir ON vms (dir);
",
    // 3: bisections and their steps (src/bisect.rs).
    "
CREATE TABLE bisects (
    id          INTEGER PRIMARY KEY,
    tree        TEXT NOT NULL,
    good        TEXT NOT NULL,
    bad         TEXT NOT NULL,
    test        TEXT NOT NULL,
    options     TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    result      TEXT,
    first_bad   TEXT
);
CREATE INDEX bisects_by_tree ON bisects (tree, finished_at);
CREATE TABLE bisect_steps (
    bisect_id   INTEGER NOT NULL REFERENCES bisects (id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    commit_id   TEXT NOT NULL,
    subject     TEXT NOT NULL,
    verdict     TEXT NOT NULL,
    code        INTEGER NOT NULL,
    summary     TEXT NOT NULL,
    log_path    TEXT,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (bisect_id, position)
);
",
    // 4: the .ktest.toml target a run was of (src/target.rs).
    "
ALTER TABLE runs ADD COLUMN target TEXT;
",
];

/// The schema version this ktest writes.
#[cfg(test)]
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings a database from an older ktest up to date, keeping its rows:
/// the `pid_ns` column (from before schema versions), then every entry of
/// `MIGRATIONS` past the database's `user_version`, each with its version
/// bump in one IMMEDIATE transaction, so that concurrent ktests apply it
/// once. A database from a newer ktest is left as it is.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    add_pid_ns(conn)?;
    loop {
        let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let Some(step) = usize::try_from(version)
            .ok()
            .and_then(|v| MIGRATIONS.get(v))
        else {
            return Ok(());
        };
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
}

/// Adds `vms.pid_ns` to a database from before ktest recorded it.
fn add_pid_ns(conn: &Connection) -> rusqlite::Result<()> {
    let has_pid_ns = conn
        .prepare("SELECT 1 FROM pragma_table_info('vms') WHERE name = 'pid_ns'")?
        .exists([])?;
    if !has_pid_ns {
        // Two ktests may both see it missing: the loser's ALTER fails on the
        // duplicate column, and then the column is there all the same.
        if let Err(e) =
            conn.execute_batch("ALTER TABLE vms ADD COLUMN pid_ns TEXT NOT NULL DEFAULT ''")
        {
            if !e.to_string().contains("duplicate column") {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Whether a row's owner can be judged alive or dead from here: not when
/// it ran in this boot but in another pid namespace, where its pid names
/// some other process (or none) here.
fn judgeable(row_boot: &str, row_ns: &str, boot: &str, ns: &str) -> bool {
    row_boot != boot || row_ns.is_empty() || ns.is_empty() || row_ns == ns
}

/// What the reaper reads of a VM's row.
struct OwnedRow {
    id: i64,
    pid: u32,
    start: u64,
    boot: String,
    vm_dir: String,
    qemu_pid: u32,
    qemu_start: u64,
    pid_ns: String,
}

/// What a dead VM left behind, to remove once the transaction committed.
struct Leftover {
    owner_pid: u32,
    vm_dir: PathBuf,
    qemu_pid: u32,
    qemu_start: u64,
}

impl State {
    /// Opens (creating if needed) the database at `path`: directory 0700,
    /// file 0600, WAL, and a busy handler so concurrent ktests wait their
    /// turn instead of failing. Refuses a database or directory that is
    /// not the user's own or that others can write (exit 5).
    pub fn open(path: &Path) -> Result<State> {
        secure(path)?;
        let conn = Connection::open(path).map_err(db_err(path))?;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        conn.busy_handler(Some(busy_wait)).map_err(db_err(path))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(db_err(path))?;
        set_wal(&conn).map_err(db_err(path))?;
        // With WAL, NORMAL never corrupts the database; it only skips an
        // fsync per commit, which every ktest start would otherwise pay.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_err(path))?;
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;"))
            .map_err(db_err(path))?;
        migrate(&conn).map_err(db_err(path))?;
        Ok(State {
            conn,
            port_base: SSH_PORT_BASE,
        })
    }

    /// The connection, for modules that keep tables of their own here
    /// (the results history) with `open`'s safety checks and busy handler.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Deletes rows of VMs whose owner is gone, in the caller's
    /// transaction, and returns what they left behind.
    fn reap_rows(tx: &rusqlite::Transaction) -> rusqlite::Result<Vec<Leftover>> {
        let boot = procinfo::boot_id();
        let ns = procinfo::pid_namespace();
        let mut stmt = tx.prepare(
            "SELECT id, owner_pid, owner_start, boot_id, vm_dir, qemu_pid, qemu_start, pid_ns FROM vms",
        )?;
        let rows: Vec<OwnedRow> = stmt
            .query_map([], |r| {
                Ok(OwnedRow {
                    id: r.get(0)?,
                    pid: r.get(1)?,
                    start: r.get(2)?,
                    boot: r.get(3)?,
                    vm_dir: r.get(4)?,
                    qemu_pid: r.get(5)?,
                    qemu_start: r.get(6)?,
                    pid_ns: r.get(7)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::new();
        for row in rows {
            let OwnedRow {
                id,
                pid,
                start,
                boot: row_boot,
                vm_dir,
                qemu_pid,
                qemu_start,
                pid_ns: row_ns,
            } = row;
            if !judgeable(&row_boot, &row_ns, &boot, &ns) {
                continue;
            }
            if row_boot == boot && procinfo::alive(pid, start) {
                continue;
            }
            tx.execute("DELETE FROM vms WHERE id = ?1", [id])?;
            let same_boot = row_boot == boot;
            out.push(Leftover {
                owner_pid: pid,
                vm_dir: PathBuf::from(vm_dir),
                qemu_pid: if same_boot { qemu_pid } else { 0 },
                qemu_start,
            });
        }
        Ok(out)
    }

    /// Kills a dead VM's surviving qemu and removes its directory, but only
    /// what proves to be that VM's: the database may have been written by
    /// anyone who could, so its paths and pids are claims, not facts.
    fn clean(leftovers: Vec<Leftover>) {
        for l in leftovers {
            if !is_vm_dir_path(&l.vm_dir) || !is_dead_vms_dir(&l.vm_dir, l.owner_pid) {
                continue;
            }
            // A live ktest holding the directory's lock owns it now.
            let Ok(Some(_lock)) = vmlock::try_lock(&l.vm_dir) else {
                continue;
            };
            // Checked again under the lock: a ktest may have replaced it.
            if !is_dead_vms_dir(&l.vm_dir, l.owner_pid) {
                continue;
            }
            if procinfo::alive(l.qemu_pid, l.qemu_start) && runs_in(l.qemu_pid, &l.vm_dir) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(l.qemu_pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            // Does not follow symlinks inside the directory.
            let _ = std::fs::remove_dir_all(&l.vm_dir);
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

    /// Reaps dead VMs, then records a new VM for `dir`, with the id
    /// `vm_id` this process claimed (`vmlock::claim`), owned by this
    /// process, with the lowest free slot, atomically.
    pub fn allocate(
        &mut self,
        dir: &Path,
        vm_dir: &Path,
        test: &str,
        vm_id: &str,
    ) -> Result<VmRow> {
        let me = std::process::id();
        let my_start = procinfo::start_time(me).unwrap_or(0);
        let now = unix_now();
        let dir_s = dir.to_string_lossy().into_owned();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let leftovers = Self::reap_rows(&tx).map_err(sql)?;
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
            "INSERT INTO vms (slot, owner_pid, owner_start, boot_id, dir, vm_dir, test, started_at, ssh_port, pid_ns, vm_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                slot,
                me,
                my_start,
                procinfo::boot_id(),
                dir_s,
                vm_dir.to_string_lossy(),
                test,
                now,
                base + slot,
                procinfo::pid_namespace(),
                vm_id
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
            pid_ns: procinfo::pid_namespace(),
            dir: dir.to_path_buf(),
            vm_dir: vm_dir.to_path_buf(),
            test: test.to_string(),
            qemu_pid: 0,
            started_at: now,
            ssh_port: base + slot,
            vm_id: vm_id.to_string(),
        })
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
                "SELECT id, slot, owner_pid, dir, vm_dir, test, qemu_pid, started_at, ssh_port, pid_ns, vm_id
                 FROM vms ORDER BY dir, length(vm_id), vm_id, slot",
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
                    pid_ns: r.get(9)?,
                    vm_id: r.get(10)?,
                })
            })
            .map_err(sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql)?;
        Ok(rows)
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

/// True if `p` has the shape of a per-VM directory: absolute, ending in
/// `.ktest/vms/ID` (an id is digits), or `.ktest/vm` as older ktests made
/// it, with no `..` to lead elsewhere.
fn is_vm_dir_path(p: &Path) -> bool {
    let parts: Vec<Component> = p.components().collect();
    let tail: Vec<Option<&str>> = parts
        .iter()
        .rev()
        .take(3)
        .map(|c| match c {
            Component::Normal(n) => n.to_str(),
            _ => None,
        })
        .collect();
    let shaped = match tail.as_slice() {
        [Some("vm"), Some(".ktest"), ..] => true,
        [Some(id), Some(vmlock::VMS_DIR), Some(".ktest")] => {
            !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
        }
        _ => false,
    };
    p.is_absolute()
        && shaped
        && !parts
            .iter()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
}

/// True if `dir` is a real directory (not a symlink) of this user holding
/// ktest's marker of the VM owned by `owner`: the pid file ktest writes.
fn is_dead_vms_dir(dir: &Path, owner: u32) -> bool {
    let me = euid();
    let Ok(m) = std::fs::symlink_metadata(dir) else {
        return false;
    };
    if !m.file_type().is_dir() || m.uid() != me {
        return false;
    }
    let marker = dir.join(names::PID);
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&marker)
    else {
        return false;
    };
    let mut text = String::new();
    use std::io::Read;
    f.metadata().is_ok_and(|m| m.is_file() && m.uid() == me)
        && f.take(64).read_to_string(&mut text).is_ok()
        && text.trim().parse() == Ok(owner)
}

/// The effective uid: whose files ktest makes and may trust.
pub fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// True if process `pid` runs in `dir` (qemu runs in its VM's directory).
fn runs_in(pid: u32, dir: &Path) -> bool {
    std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir)
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
    fn owners_in_another_pid_namespace_are_not_judged() {
        let (me, boot) = ("pid:[1]", "b1");
        assert!(judgeable(boot, me, boot, me));
        // Another boot: its processes are all gone, whatever namespace.
        assert!(judgeable("b0", "pid:[2]", boot, me));
        // Rows from before ktest recorded namespaces, and hosts without
        // /proc/self/ns: judged as before.
        assert!(judgeable(boot, "", boot, me));
        assert!(judgeable(boot, "pid:[2]", boot, ""));
        assert!(!judgeable(boot, "pid:[2]", boot, me));
    }

    #[test]
    fn a_database_without_pid_ns_is_migrated_keeping_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(&SCHEMA.replace(",\n    pid_ns      TEXT NOT NULL DEFAULT ''", ""))
                .unwrap();
            c.execute(
                "INSERT INTO vms (slot, owner_pid, owner_start, boot_id, dir, vm_dir, test, started_at, ssh_port)
                 VALUES (3, ?1, ?2, ?3, '/old', '/old/.ktest/vm', 't', 0, 22203)",
                params![
                    std::process::id(),
                    procinfo::start_time(std::process::id()).unwrap(),
                    procinfo::boot_id()
                ],
            )
            .unwrap();
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut s = State::open(&path).unwrap();
        let rows = s.list().unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!((rows[0].slot, rows[0].pid_ns.as_str()), (3, ""));
        // And a second open finds it migrated.
        drop(s);
        assert_eq!(State::open(&path).unwrap().list().unwrap().len(), 1);
    }

    /// `SCHEMA` as ktest shipped it before schema versions: databases
    /// in use have exactly these tables, whatever `SCHEMA` says later.
    const SCHEMA_BEFORE_VERSIONS: &str = "
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
    ssh_port    INTEGER NOT NULL,
    pid_ns      TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS probes (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

    /// A live VM's row (this process owns it, so the reaper keeps it) as
    /// ktests before VM ids wrote it: no `vm_id`, a `.ktest/vm` directory.
    fn insert_as_older_ktest(c: &Connection, slot: u32, dir: &str) {
        c.execute(
            "INSERT INTO vms (slot, owner_pid, owner_start, boot_id, dir, vm_dir, test, started_at, ssh_port, pid_ns)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 't', 7, ?7, ?8)",
            params![
                slot,
                std::process::id(),
                procinfo::start_time(std::process::id()).unwrap(),
                procinfo::boot_id(),
                dir,
                format!("{dir}/.ktest/vm"),
                SSH_PORT_BASE + slot,
                procinfo::pid_namespace()
            ],
        )
        .unwrap();
    }

    /// A database as the ktest before schema versions left it: one live
    /// VM (this process owns it, so the reaper keeps it) and one probe.
    fn unversioned_database(path: &Path) {
        let c = Connection::open(path).unwrap();
        c.execute_batch(SCHEMA_BEFORE_VERSIONS).unwrap();
        insert_as_older_ktest(&c, 5, "/old");
        c.execute("INSERT INTO probes VALUES ('kvm', 'no')", [])
            .unwrap();
        drop(c);
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn user_version(s: &State) -> i64 {
        s.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn an_unversioned_database_gains_the_history_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        unversioned_database(&path);
        let mut s = State::open(&path).unwrap();
        assert_eq!(user_version(&s), SCHEMA_VERSION);
        let rows = s.list().unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!((rows[0].slot, rows[0].started_at), (5, 7));
        assert_eq!(s.probe("kvm").as_deref(), Some("no"));
        for table in ["runs", "run_tests", "results"] {
            let n: i64 = s
                .conn
                .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 0, "{table}");
        }
        // The old row has no VM id; a second VM from its directory may
        // run beside it (migration 2 lifted dir's UNIQUE).
        assert_eq!(rows[0].vm_id, "");
        let mut s = s.with_port_base(30700);
        let two = s
            .allocate(Path::new("/old"), Path::new("/old/.ktest/vms/1"), "u", "1")
            .unwrap();
        assert_eq!(two.vm_id, "1");
        // An older ktest still writes rows as it did (no vm_id).
        insert_as_older_ktest(&s.conn, 9, "/older");
        assert_eq!(s.list().unwrap().len(), 3);
        s.release(two.id).unwrap();
        // Opening again changes nothing.
        drop(s);
        let mut s = State::open(&path).unwrap();
        assert_eq!(user_version(&s), SCHEMA_VERSION);
        assert_eq!(s.list().unwrap().len(), 2);
    }

    #[test]
    fn concurrent_opens_migrate_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        unversioned_database(&path);
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || user_version(&State::open(&path).unwrap()))
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), SCHEMA_VERSION);
        }
        let mut s = State::open(&path).unwrap();
        assert_eq!(s.list().unwrap().len(), 1);
    }

    #[test]
    fn a_database_from_a_newer_ktest_is_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        State::open(&path).unwrap();
        {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let s = State::open(&path).unwrap();
        assert_eq!(user_version(&s), SCHEMA_VERSION + 1);
    }

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
        let (_t, mut s) = scratch_state(30900);
        let _held = std::net::TcpListener::bind(("127.0.0.1", 30900)).unwrap();
        let v = s
            .allocate(Path::new("/p"), Path::new("/p/.ktest/vms/1"), "t", "1")
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
            .allocate(Path::new("/a"), Path::new("/a/.ktest/vms/1"), "t", "1")
            .unwrap();
        let b = s
            .allocate(Path::new("/b"), Path::new("/b/.ktest/vms/1"), "t", "1")
            .unwrap();
        assert_eq!((a.slot, b.slot), (0, 1));
        // Many VMs from one directory, each with its own id.
        let a2 = s
            .allocate(Path::new("/a"), Path::new("/a/.ktest/vms/2"), "t", "2")
            .unwrap();
        assert_eq!((a2.slot, a2.vm_id.as_str()), (2, "2"));
        s.release(a2.id).unwrap();
        s.release(a.id).unwrap();
        let c = s
            .allocate(Path::new("/c"), Path::new("/c/.ktest/vms/1"), "t", "1")
            .unwrap();
        assert_eq!(c.slot, 0);
        assert_eq!(s.list().unwrap().len(), 2);
        let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    /// A database in a fresh directory, using ports from `port_base` on.
    fn scratch_state(port_base: u32) -> (tempfile::TempDir, State) {
        let t = tempfile::tempdir().unwrap();
        let s = State::open(&t.path().join("state.db"))
            .unwrap()
            .with_port_base(port_base);
        (t, s)
    }

    /// A row for a VM whose owner is dead (a pid above pid_max), claiming
    /// `vm_dir`, as anyone able to write the database could add.
    fn dead_row(s: &State, slot: u32, vm_dir: &Path) -> i64 {
        s.conn
            .execute(
                "INSERT INTO vms (slot, owner_pid, owner_start, boot_id, dir, vm_dir, test, started_at, ssh_port)
                 VALUES (?1, 999999999, 0, ?2, ?3, ?4, 't', 0, 0)",
                params![slot, procinfo::boot_id(), format!("/dead{slot}"), vm_dir.to_string_lossy()],
            )
            .unwrap();
        s.conn.last_insert_rowid()
    }

    /// A directory shaped like a VM's (as older ktests made it), with
    /// ktest's pid marker `pid`.
    fn vm_dir_with_marker(base: &Path, pid: &str) -> PathBuf {
        vm_dir_at(&base.join(".ktest/vm"), pid)
    }

    /// `vm`, made a VM's directory with ktest's pid marker `pid`.
    fn vm_dir_at(vm: &Path, pid: &str) -> PathBuf {
        let vm = vm.to_path_buf();
        std::fs::create_dir_all(&vm).unwrap();
        std::fs::write(vm.join(names::PID), format!("{pid}\n")).unwrap();
        std::fs::write(vm.join("scratch-0.img"), "x").unwrap();
        vm
    }

    #[test]
    fn dead_owners_vm_dir_is_reaped() {
        let (t, mut s) = scratch_state(30300);
        let vm = vm_dir_with_marker(&t.path().join("x"), "999999999");
        dead_row(&s, 0, &vm);
        assert_eq!(s.reap().unwrap(), 1);
        assert!(!vm.exists());
        assert!(t.path().join("x/.ktest").exists());
        assert!(s.list().unwrap().is_empty());
        let w = s.allocate(Path::new("/x"), &vm, "t", "1").unwrap();
        assert_eq!(w.slot, 0);
    }

    #[test]
    fn per_vm_directories_of_both_layouts_are_reaped_and_nothing_like_them() {
        let (t, mut s) = scratch_state(30350);
        let new = vm_dir_at(&t.path().join("n/.ktest/vms/3"), "999999999");
        dead_row(&s, 0, &new);
        let old = vm_dir_with_marker(&t.path().join("o"), "999999999");
        dead_row(&s, 1, &old);
        // Shapes that are not a VM's directory, with the right marker.
        let not_id = vm_dir_at(&t.path().join("x/.ktest/vms/abc"), "999999999");
        dead_row(&s, 2, &not_id);
        let not_ktest = vm_dir_at(&t.path().join("y/vms/4"), "999999999");
        dead_row(&s, 3, &not_ktest);
        assert_eq!(s.reap().unwrap(), 4);
        assert!(!new.exists() && !old.exists());
        assert!(not_id.exists() && not_ktest.exists());
        for ok in ["/d/.ktest/vm", "/d/.ktest/vms/1", "/d/.ktest/vms/12"] {
            assert!(is_vm_dir_path(Path::new(ok)), "{ok}");
        }
        for bad in [
            "/d/.ktest/vms",
            "/d/.ktest/vms/",
            "d/.ktest/vms/1",
            "/d/.ktest/vms/1/..",
            "/d/.ktest/vms/-1",
            "/d/x/vms/1",
        ] {
            assert!(!is_vm_dir_path(Path::new(bad)), "{bad}");
        }
    }

    #[test]
    fn reaper_removes_nothing_that_is_not_the_dead_vms_own_directory() {
        let (t, mut s) = scratch_state(30400);
        let victim = t.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::write(victim.join("precious"), "x").unwrap();
        dead_row(&s, 0, &victim);
        // A symlink where the VM directory should be, to a directory that
        // even carries the right marker.
        let target = vm_dir_with_marker(&t.path().join("target"), "999999999");
        std::fs::create_dir_all(t.path().join("link/.ktest")).unwrap();
        let link = t.path().join("link/.ktest/vm");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        dead_row(&s, 1, &link);
        // A real VM directory, but another VM's (another pid).
        let other = vm_dir_with_marker(&t.path().join("other"), "12345");
        dead_row(&s, 2, &other);
        // A path that leads elsewhere through "..".
        let dotdot = t.path().join("victim/../target/.ktest/vm");
        dead_row(&s, 3, &dotdot);
        // The right marker, but a live ktest holds the directory's lock.
        let locked = vm_dir_with_marker(&t.path().join("locked"), "999999999");
        let _held = vmlock::try_lock(&locked).unwrap().unwrap();
        dead_row(&s, 4, &locked);
        assert_eq!(s.reap().unwrap(), 5);
        assert!(victim.join("precious").exists());
        assert!(target.join("scratch-0.img").exists());
        assert!(link.symlink_metadata().is_ok());
        assert!(other.join("scratch-0.img").exists());
        assert!(locked.join("scratch-0.img").exists());
    }

    #[test]
    fn reaper_kills_only_a_qemu_running_in_the_dead_vms_directory() {
        let (t, mut s) = scratch_state(30500);
        let vm = vm_dir_with_marker(&t.path().join("a"), "999999999");
        let mut stranger = std::process::Command::new("sleep")
            .arg("100")
            .current_dir(t.path())
            .spawn()
            .unwrap();
        let mut qemu = std::process::Command::new("sleep")
            .arg("100")
            .current_dir(&vm)
            .spawn()
            .unwrap();
        let other = vm_dir_with_marker(&t.path().join("b"), "999999999");
        for (slot, dir, child) in [(0, &other, &stranger), (1, &vm, &qemu)] {
            let id = dead_row(&s, slot, dir);
            s.set_qemu(id, child.id()).unwrap();
        }
        assert_eq!(s.reap().unwrap(), 2);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(qemu.wait().unwrap().signal(), Some(9));
        assert_eq!(stranger.try_wait().unwrap(), None, "a stranger was killed");
        let _ = stranger.kill();
        let _ = stranger.wait();
    }

    #[test]
    fn unsafe_state_files_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let me = euid();
        let p = t.path();
        assert_eq!(exposure(me, 0o40700, me, p), None);
        assert_eq!(exposure(me, 0o100644, me, p), None);
        let e = exposure(me, 0o40777, me, p).unwrap();
        assert!(e.contains("writable by others (mode 0777)"), "{e}");
        assert!(e.contains("chmod go-w"), "{e}");
        assert!(exposure(me, 0o100620, me, p).is_some());
        let e = exposure(me + 1, 0o100600, me, p).unwrap();
        assert!(e.contains(&format!("owned by uid {}", me + 1)), "{e}");
    }

    #[test]
    fn open_refuses_what_others_can_write() {
        use std::os::unix::fs::symlink;
        let mode = |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
        let refused = |db: &Path, what: &str| {
            let e = State::open(db).err().expect("opened");
            assert_eq!(e.code, Code::Infra);
            assert!(e.message.contains(what), "{}", e.message);
            assert!(e.message.contains("--db"), "{}", e.message);
        };
        let t = tempfile::tempdir().unwrap();
        // What ktest creates itself is private.
        let db = t.path().join("new/state.db");
        State::open(&db).unwrap();
        let m = std::fs::metadata(db.parent().unwrap()).unwrap();
        assert_eq!(m.mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(&db).unwrap().mode() & 0o777, 0o600);
        // A world-writable directory.
        mode(db.parent().unwrap(), 0o777).unwrap();
        refused(
            &db,
            &format!("state directory {}", db.parent().unwrap().display()),
        );
        mode(db.parent().unwrap(), 0o700).unwrap();
        // A group-writable database.
        mode(&db, 0o620).unwrap();
        refused(&db, &format!("state database {} is writable", db.display()));
        mode(&db, 0o600).unwrap();
        // A database owned by someone else (only root can give it away;
        // anyone else finds / owned by root).
        if euid() == 0 {
            std::os::unix::fs::chown(&db, Some(65534), None).unwrap();
            refused(&db, "is owned by uid 65534");
            std::os::unix::fs::chown(&db, Some(0), None).unwrap();
        } else {
            refused(
                Path::new("/ktest-state.db"),
                "state directory / is owned by uid 0",
            );
        }
        // A -wal file someone could write, or a symlink in its place.
        let wal = t.path().join("new/state.db-wal");
        let _ = std::fs::remove_file(&wal);
        symlink(t.path().join("nowhere"), &wal).unwrap();
        refused(&db, "is not a regular file");
        std::fs::remove_file(&wal).unwrap();
        // A symlinked database counts as its target.
        let link = t.path().join("new/link.db");
        symlink(&db, &link).unwrap();
        State::open(&link).unwrap();
        mode(&db, 0o666).unwrap();
        refused(&link, "is writable by others");
    }

    #[test]
    fn default_path_is_never_shared() {
        let os = |s: &str| Some(std::ffi::OsString::from(s));
        assert_eq!(
            default_path_from(os("/x"), os("/h"), 7),
            Path::new("/x/ktest/state.db")
        );
        assert_eq!(
            default_path_from(os(""), os("/h"), 7),
            Path::new("/h/.local/state/ktest/state.db")
        );
        assert_eq!(
            default_path_from(None, None, 7),
            Path::new("/tmp/ktest-7/state.db")
        );
        assert_eq!(
            default_path_from(None, os(""), 7),
            Path::new("/tmp/ktest-7/state.db")
        );
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
                    s.allocate(&dir, &dir.join(".ktest/vms/1"), "t", "1")
                        .unwrap()
                        .slot
                })
            })
            .collect();
        let mut slots: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        slots.sort();
        assert_eq!(slots, (0..16).collect::<Vec<_>>());
    }
}
