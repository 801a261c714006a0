//! Writing configuration entries into an ext4 image with `debugfs -w`,
//! which edits the file system inside the image file directly: no loop
//! device, no mount, no root needed.

use std::collections::HashMap;
use std::path::Path;

use crate::configure::Entry;

/// Owner and permissions of an inode, as `debugfs stat` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InodeMeta {
    /// Permission bits (without the file type).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
}

/// Parses the `Mode:`, `User:` and `Group:` fields of `debugfs -R 'stat F'`.
pub fn parse_stat(text: &str) -> Option<InodeMeta> {
    let field = |name: &str| {
        let mut words = text.split_whitespace();
        words.find(|w| *w == name)?;
        words.next().map(str::to_string)
    };
    Some(InodeMeta {
        mode: u32::from_str_radix(&field("Mode:")?, 8).ok()? & 0o7777,
        uid: field("User:")?.parse().ok()?,
        gid: field("Group:")?.parse().ok()?,
    })
}

/// The target of a symlink from `debugfs -R 'stat F'` output.
pub fn parse_link_target(text: &str) -> Option<String> {
    let line = text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Fast link dest:")
            .or_else(|| l.trim().strip_prefix("Slow link dest:"))
    })?;
    Some(line.trim().trim_matches('"').to_string())
}

/// What is already at a path in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Present {
    /// A directory.
    Dir,
    /// A file, symlink or other non-directory.
    NotDir,
}

/// What `debugfs -R 'stat F'` output says is at F; `None` when F is absent
/// (debugfs then prints nothing on stdout).
pub fn parse_present(text: &str) -> Option<Present> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == "Type:")?;
    Some(match words.next()? {
        "directory" => Present::Dir,
        _ => Present::NotDir,
    })
}

/// The name of the staged host file holding the contents of entry `index`.
pub fn staged_name(index: usize) -> String {
    format!("entry{index}")
}

/// A `debugfs -f` script applying `entries`, given what is already at
/// their paths; file contents are read from [`staged_name`] files in
/// debugfs's working directory.
///
/// Commands are only emitted where they cannot fail: debugfs 1.47's mkdir
/// of an existing directory leaves a half-made, unlinked directory behind
/// (e2fsck then reports the image as damaged), so existing directories are
/// never re-made. The caller still reads every entry back.
pub fn script(entries: &[Entry], present: &HashMap<String, Present>) -> Result<String, String> {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    for (index, entry) in entries.iter().enumerate() {
        check_word(entry.path())?;
        let here = present.get(entry.path()).copied();
        let is_dir = matches!(entry, Entry::Dir { .. });
        match (here, is_dir) {
            (Some(Present::Dir), false) => {
                return Err(format!("{} is a directory in the image", entry.path()))
            }
            (Some(Present::NotDir), true) => {
                return Err(format!(
                    "{} exists in the image and is not a directory",
                    entry.path()
                ))
            }
            _ => {}
        }
        let exists = here.is_some();
        match entry {
            Entry::Dir { path, mode } => {
                if !exists {
                    line(format!("mkdir {path}"));
                }
                line(format!("sif {path} mode 0{:o}", 0o040000 | mode));
                line(format!("sif {path} uid 0"));
                line(format!("sif {path} gid 0"));
            }
            Entry::File {
                path,
                mode,
                uid,
                gid,
                ..
            } => {
                // `write` creates its file in the current directory and
                // takes a bare name, so go there first.
                let p = Path::new(path);
                let parent = p.parent().and_then(Path::to_str).unwrap_or("/");
                let name = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or_else(|| format!("{path} has no file name"))?;
                line(format!("cd {parent}"));
                if exists {
                    line(format!("rm {name}"));
                }
                line(format!("write {} {name}", staged_name(index)));
                line(format!("sif {name} mode 0{:o}", 0o100000 | mode));
                line(format!("sif {name} uid {uid}"));
                line(format!("sif {name} gid {gid}"));
                line("cd /".into());
            }
            Entry::Symlink { path, target } => {
                check_word(target)?;
                if exists {
                    line(format!("rm {path}"));
                }
                line(format!("symlink {path} {target}"));
            }
        }
    }
    Ok(out)
}

// debugfs splits commands on white space and treats quotes specially; our
// paths never need either, so refuse rather than quote.
fn check_word(word: &str) -> Result<(), String> {
    if word.is_empty() || word.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\') {
        Err(format!("'{word}' cannot be passed to debugfs"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "\
Inode: 1234   Type: regular    Mode:  0640   Flags: 0x80000
Generation: 0    Version: 0x00000000:00000000
User:     0   Group:    42   Project:     0   Size: 553
";

    #[test]
    fn parses_stat_fields() {
        assert_eq!(
            parse_stat(STAT),
            Some(InodeMeta {
                mode: 0o640,
                uid: 0,
                gid: 42
            })
        );
        assert_eq!(parse_stat("nothing"), None);
        let link = "Inode: 5   Type: symlink    Mode:  0777\nFast link dest: \"/lib/systemd/system/x.service\"\n";
        assert_eq!(
            parse_link_target(link).as_deref(),
            Some("/lib/systemd/system/x.service")
        );
        assert_eq!(parse_link_target(STAT), None);
    }

    #[test]
    fn script_writes_files_from_their_directory() {
        let entries = vec![
            Entry::Dir {
                path: "/root/.ssh".into(),
                mode: 0o700,
            },
            Entry::File {
                path: "/etc/shadow".into(),
                contents: b"root:*:1::::::\n".to_vec(),
                mode: 0o640,
                uid: 0,
                gid: 42,
            },
            Entry::Symlink {
                path: "/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service".into(),
                target: "/lib/systemd/system/serial-getty@.service".into(),
            },
        ];
        let fresh = script(&entries, &HashMap::new()).unwrap();
        assert_eq!(
            fresh,
            "mkdir /root/.ssh\nsif /root/.ssh mode 040700\nsif /root/.ssh uid 0\n\
             sif /root/.ssh gid 0\n\
             cd /etc\nwrite entry1 shadow\nsif shadow mode 0100640\n\
             sif shadow uid 0\nsif shadow gid 42\ncd /\n\
             symlink /etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service \
             /lib/systemd/system/serial-getty@.service\n"
        );
        let present: HashMap<String, Present> = [
            ("/root/.ssh", Present::Dir),
            ("/etc/shadow", Present::NotDir),
            (entries[2].path(), Present::NotDir),
        ]
        .into_iter()
        .map(|(p, k)| (p.to_string(), k))
        .collect();
        let again = script(&entries, &present).unwrap();
        assert!(!again.contains("mkdir"), "{again}");
        assert!(again.contains("cd /etc\nrm shadow\nwrite entry1 shadow\n"));
        assert!(again.contains("\nrm /etc/systemd/system/getty.target.wants/"));
    }

    #[test]
    fn script_never_replaces_directories_or_files_by_the_other() {
        let dir = Entry::Dir {
            path: "/etc/x".into(),
            mode: 0o755,
        };
        let as_file: HashMap<String, Present> = [("/etc/x".to_string(), Present::NotDir)].into();
        assert!(script(&[dir], &as_file)
            .unwrap_err()
            .contains("not a directory"));
        let link = Entry::Symlink {
            path: "/etc/x".into(),
            target: "/y".into(),
        };
        let as_dir: HashMap<String, Present> = [("/etc/x".to_string(), Present::Dir)].into();
        assert!(script(&[link], &as_dir)
            .unwrap_err()
            .contains("is a directory"));
    }

    #[test]
    fn presence_from_stat() {
        assert_eq!(parse_present(STAT), Some(Present::NotDir));
        assert_eq!(
            parse_present("Inode: 2   Type: directory    Mode:  0755"),
            Some(Present::Dir)
        );
        assert_eq!(parse_present(""), None);
    }

    #[test]
    fn script_refuses_paths_debugfs_would_split() {
        let bad = Entry::Dir {
            path: "/a b".into(),
            mode: 0o755,
        };
        assert!(script(&[bad], &HashMap::new())
            .unwrap_err()
            .contains("cannot be passed"));
    }
}
