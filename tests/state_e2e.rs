//! End-to-end tests of the state database and the per-directory VM lock:
//! what the reaper may remove, which databases ktest refuses, one VM per
//! directory whatever the database, and Ctrl-C while the database is held.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

/// `ktest --db DB ARGS...` from the sandbox.
fn ktest_db(s: &Sandbox, db: &Path, args: &[&str]) -> Output {
    s.ktest().arg("--db").arg(db).args(args).output().unwrap()
}

/// A database ktest created (so in WAL mode, with its schema), at `db`.
fn fresh_db(s: &Sandbox, db: &Path) {
    let out = ktest_db(s, db, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn reaper_leaves_alone_what_the_database_merely_claims() {
    let s = Sandbox::new();
    let db = s.path().join("db/state.db");
    fresh_db(&s, &db);
    let victim = s.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("precious"), "x").unwrap();
    // A symlink where a VM directory would be, to a directory that even
    // holds a pid file naming the dead owner.
    let target = s.path().join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("pid"), "999999999\n").unwrap();
    std::fs::create_dir_all(s.path().join("link/.ktest")).unwrap();
    let link = s.path().join("link/.ktest/vm");
    std::os::unix::fs::symlink(&target, &link).unwrap();

    // Rows of dead owners (a pid above pid_max), as anyone who can write
    // the database could add them; `files` is where an earlier ktest
    // listed what to remove.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS files (vm_id INTEGER NOT NULL REFERENCES vms(id) ON DELETE CASCADE, path TEXT NOT NULL)",
    )
    .unwrap();
    for (slot, claimed) in [(0, &victim), (1, &link)] {
        conn.execute(
            "INSERT INTO vms (slot, owner_pid, owner_start, boot_id, dir, vm_dir, test, started_at, ssh_port)
             VALUES (?1, 999999999, 0, 'gone', ?2, ?3, 't', 0, 0)",
            rusqlite::params![slot, format!("/dead{slot}"), claimed.to_string_lossy()],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO files (vm_id, path) VALUES (?1, ?2)",
            rusqlite::params![conn.last_insert_rowid(), claimed.to_string_lossy()],
        )
        .unwrap();
    }
    drop(conn);

    let out = ktest_db(&s, &db, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("no VMs running"), "{}", text(&out));
    assert!(
        victim.join("precious").exists(),
        "the reaper removed {victim:?}"
    );
    assert!(
        link.symlink_metadata().is_ok(),
        "the reaper removed {link:?}"
    );
    assert!(target.join("pid").exists(), "the reaper followed {link:?}");
}

#[test]
fn state_others_can_write_is_refused() {
    let s = Sandbox::new();
    let mode =
        |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    let refused = |db: &Path, shown: &Path, why: &str| {
        let out = ktest_db(&s, db, &["status"]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(5), "{t}");
        assert!(t.contains(&format!("{} {why}", shown.display())), "{t}");
        assert!(t.contains("--db"), "{t}");
    };

    let shared = s.path().join("shared");
    let db = shared.join("state.db");
    fresh_db(&s, &db);
    mode(&shared, 0o777);
    refused(&db, &shared, "is writable by others (mode 0777)");

    let db = s.path().join("group/state.db");
    fresh_db(&s, &db);
    mode(&db, 0o660);
    refused(&db, &db, "is writable by others (mode 0660)");

    let db = s.path().join("theirs/state.db");
    fresh_db(&s, &db);
    let me = std::fs::metadata(&db).unwrap();
    let other = if std::os::unix::fs::MetadataExt::uid(&me) == 65534 {
        65533
    } else {
        65534
    };
    match std::os::unix::fs::chown(&db, Some(other), None) {
        Ok(()) => refused(&db, &db, &format!("is owned by uid {other}")),
        // Only root can give a file away; anyone else finds / is root's.
        Err(_) => refused(
            Path::new("/ktest-state.db"),
            Path::new("/"),
            "is owned by uid 0",
        ),
    }
}

/// A test that keeps its VM busy for a while.
fn sleeper(s: &Sandbox) -> PathBuf {
    s.script(
        "sleeper",
        "#!/bin/sh\n[ \"$1\" = deps ] && { echo MEM=128M; exit 0; }\nsleep 10\n",
    )
}

/// `ktest --db DB run TEST` in the background, output captured.
fn run_with_db(s: &Sandbox, db: &Path, test: &Path) -> Background {
    let child = s
        .run_cmd()
        .arg("--db")
        .arg(db)
        .arg(test)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Background { child: Some(child) }
}

#[test]
fn two_vms_from_one_directory_get_their_own_ids_whatever_the_database() {
    let s = Sandbox::new();
    let t = sleeper(&s);
    let dbs = tempfile::tempdir().unwrap();
    for delete_db in [false, true] {
        let first_db = dbs.path().join(format!("first-{delete_db}.db"));
        let first = run_with_db(&s, &first_db, &t);
        let first_pid = first.child.as_ref().unwrap().id();
        assert!(wait_for(60, || s.vm_dir().join("pid").exists()));
        // qemu must not inherit the lock: if it outlived ktest it would
        // keep the id taken.
        assert!(wait_for(60, || !qemus_in(s.path()).is_empty()));
        for q in qemus_in(s.path()) {
            let fds = std::fs::read_dir(format!("/proc/{q}/fd")).unwrap();
            for fd in fds.flatten() {
                let target = std::fs::read_link(fd.path()).unwrap_or_default();
                assert!(
                    !target.to_string_lossy().ends_with(".lock"),
                    "qemu holds {target:?}"
                );
            }
        }
        if delete_db {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", first_db.display()));
            }
        }

        // The sandbox's database knows nothing of the first VM, but the
        // directory's locks do: the second VM gets id 2 and its own
        // directory, and both run.
        let second = run_with_db(&s, &s.db(), &t);
        let second_dir = s.path().join(".ktest/vms/2");
        assert!(wait_for(60, || second_dir.join("pid").exists()));
        let pid = std::fs::read_to_string(s.vm_dir().join("pid")).unwrap();
        assert_eq!(
            pid.trim(),
            first_pid.to_string(),
            "the second VM touched VM 1's directory"
        );
        let listed = s.status_lines();
        assert!(listed.iter().any(|l| l.starts_with("2 ")), "{listed:?}");

        for vm in [first, second] {
            let out = vm.wait(300);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        }
        s.assert_clean();
    }
}

#[test]
fn ctrl_c_ends_a_wait_for_the_database() {
    let s = Sandbox::new();
    let t = sleeper(&s);
    let db = s.path().join("db/state.db");
    fresh_db(&s, &db);
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let run = run_with_db(&s, &db, &t);
    let pid = nix::unistd::Pid::from_raw(run.child.as_ref().unwrap().id() as i32);
    // ktest waits once it has the database open.
    let has_db_open = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|fds| {
                fds.flatten()
                    .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == db))
            })
            .unwrap_or(false)
    };
    assert!(wait_for(60, has_db_open));
    std::thread::sleep(std::time::Duration::from_secs(1));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    // Without the fix ktest sleeps through SIGINT for 60 s.
    let out = run.wait(10);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    assert!(text(&out).contains("interrupted"), "{}", text(&out));

    holder.execute_batch("ROLLBACK").unwrap();
    let rows: i64 = holder
        .query_row("SELECT count(*) FROM vms", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0);
    s.assert_clean();
}

#[test]
fn a_ktest_in_another_pid_namespace_leaves_a_live_vms_row_alone() {
    let s = Sandbox::new();
    let db = s.path().join("db/state.db");
    let vm = run_with_db(&s, &db, &sleeper(&s));
    let dir = s.path().to_string_lossy().into_owned();
    let listed = |out: &Output| String::from_utf8_lossy(&out.stdout).contains(&dir);
    assert!(wait_for(60, || listed(&ktest_db(&s, &db, &["status"]))));
    // A ktest in a container sharing the database: the VM's owner pid
    // means nothing in its pid namespace, so it must not call it dead.
    let out = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--"])
        .arg(env!("CARGO_BIN_EXE_ktest"))
        .arg("--db")
        .arg(&db)
        .arg("status")
        .current_dir(s.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        listed(&out),
        "the container's ktest does not list the VM: {}",
        text(&out)
    );
    let out = ktest_db(&s, &db, &["status"]);
    assert!(listed(&out), "the VM's row was reaped: {}", text(&out));
    let out = vm.wait(300);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
