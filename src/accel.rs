//! Choosing the accelerator: KVM only when it demonstrably runs a guest.
//!
//! `/dev/kvm` existing and opening proves little: on some hosts (nested
//! clouds, this project's CI) a KVM guest hangs in the host kernel forever.
//! So ktest boots a tiny guest under KVM with a time limit: the real
//! firmware (SeaBIOS, which is where such hosts hang) loads a one-sector
//! floppy whose boot code writes to qemu's isa-debug-exit port, making qemu
//! exit at once with a known status. (A guest that skips the firmware passes
//! on exactly the hosts where real guests hang, so the firmware must run.) The answer is cached in the state
//! database for the current boot, so the cost is paid once per boot.

use crate::arch::{Arch, Probe};
use crate::error::{Error, Result};
use crate::plan::Accel;
use crate::state::State;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How the user asked to choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    /// KVM if a probe shows it works, else TCG.
    Auto,
    /// KVM, or an error if it does not work.
    Kvm,
    /// Software emulation.
    Tcg,
}

/// How long the probe guest may take; a working KVM needs well under 1 s.
const PROBE_LIMIT: Duration = Duration::from_secs(3);
/// The status qemu exits with when the probe guest ran: (0x2a << 1) | 1.
const PROBE_EXIT: i32 = 0x55;

/// The probe's boot sector: `mov al, 0x2a; out 0xf4, al; hlt`, and the
/// 0x55AA signature the firmware looks for.
pub fn probe_boot_sector() -> Vec<u8> {
    let mut sector = vec![0u8; 512];
    sector[..5].copy_from_slice(&[0xb0, 0x2a, 0xe6, 0xf4, 0xf4]);
    sector[510] = 0x55;
    sector[511] = 0xaa;
    sector
}

/// An arm64 kernel Image (the 64-byte header qemu's loader reads, magic
/// "ARM\x64" at 0x38) whose code calls PSCI SYSTEM_OFF through `hvc`: qemu
/// exits 0 once the guest ran.
pub fn probe_arm64_image() -> Vec<u8> {
    let mut image = vec![0u8; 4096];
    let words: [(usize, u32); 5] = [
        (0x00, 0x1400_0010), // b 0x40
        (0x40, 0xd280_0100), // movz x0, #0x0008
        (0x44, 0xf2b0_8000), // movk x0, #0x8400, lsl #16: PSCI SYSTEM_OFF
        (0x48, 0xd400_0002), // hvc #0
        (0x4c, 0x1400_0000), // b .
    ];
    for (at, w) in words {
        image[at..at + 4].copy_from_slice(&w.to_le_bytes());
    }
    image[0x10..0x18].copy_from_slice(&4096u64.to_le_bytes()); // image_size
    image[0x38..0x3c].copy_from_slice(b"ARM\x64");
    image
}

/// The probe guest's file and qemu arguments, and the exit status that
/// says it ran.
fn probe_guest(arch: &Arch, name: &str) -> (Vec<u8>, Vec<String>, i32) {
    match arch.probe {
        Probe::X86BootSector => (
            probe_boot_sector(),
            [
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
                "-drive",
                &format!("file={name},format=raw,if=floppy"),
            ]
            .map(String::from)
            .to_vec(),
            PROBE_EXIT,
        ),
        Probe::Arm64Psci => (
            probe_arm64_image(),
            ["-kernel", name].map(String::from).to_vec(),
            0,
        ),
    }
}

/// Runs the probe under `accel`; `Ok(())` if the guest ran, else why not.
fn probe(
    arch: &Arch,
    qemu: &Path,
    scratch_dir: &Path,
    accel: &str,
) -> std::result::Result<(), String> {
    if accel == "kvm" {
        if let Err(e) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
        {
            return Err(format!("/dev/kvm: {e}"));
        }
    }
    let name = format!("kvm-probe-{}.img", std::process::id());
    let disk = scratch_dir.join(&name);
    let (file, args, expected) = probe_guest(arch, &name);
    std::fs::write(&disk, file).map_err(|e| format!("{}: {e}", disk.display()))?;
    let cpu = if accel == "kvm" {
        arch.kvm_cpu
    } else {
        arch.tcg_cpu
    };
    let mut cmd = Command::new(qemu);
    // The guest's file by a name relative to qemu's working directory, as
    // the plan names its files: the user's directory may have commas,
    // which qemu's option syntax would split on.
    cmd.current_dir(scratch_dir)
        .args(crate::plan::machine(arch))
        .args(["-no-reboot", "-accel", accel, "-cpu", cpu, "-m", "16"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = crate::process_group::spawn(&mut cmd);
    let result = match child {
        Err(e) => Err(format!("cannot run {}: {e}", qemu.display())),
        Ok(mut child) => {
            let start = Instant::now();
            loop {
                match child.try_wait() {
                    Ok(Some(status)) if status.code() == Some(expected) => break Ok(()),
                    Ok(Some(status)) => {
                        let mut err = String::new();
                        if let Some(mut e) = child.stderr.take() {
                            use std::io::Read;
                            let _ = e.read_to_string(&mut err);
                        }
                        let first = err.lines().next().unwrap_or("").trim().to_string();
                        break Err(format!("the probe guest failed ({status}): {first}"));
                    }
                    Ok(None) if start.elapsed() > PROBE_LIMIT => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break Err(format!(
                            "a KVM guest did not finish within {} s (it hangs in the host kernel)",
                            PROBE_LIMIT.as_secs()
                        ));
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                    Err(e) => break Err(e.to_string()),
                }
            }
        }
    };
    let _ = std::fs::remove_file(&disk);
    result
}

fn cache_key(qemu: &Path) -> String {
    let stamp = std::fs::metadata(qemu)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "kvm:{}:{}:{stamp}",
        crate::procinfo::boot_id(),
        qemu.display()
    )
}

/// Picks the accelerator. When falling back to TCG it says why in one line
/// if the probe ran now; an answer from the cache is repeated only when
/// `verbose`, so the line does not nag on every run of the boot.
pub fn choose(
    choice: Choice,
    arch: &Arch,
    qemu: &Path,
    state: &State,
    scratch_dir: &Path,
    verbose: bool,
) -> Result<Accel> {
    if choice == Choice::Tcg {
        return Ok(Accel::Tcg);
    }
    if !crate::arch::is_host(arch) {
        let host = crate::arch::host().map_or("another architecture", |h| h.name);
        if choice == Choice::Kvm {
            return Err(Error::usage(format!(
                "KVM runs guests of the host's own architecture ({host}) only, and this guest is {}\n  use --accel tcg (or auto)",
                arch.name
            )));
        }
        if verbose {
            crate::errln!("ktest: using TCG: an {} guest on an {host} host", arch.name);
        }
        return Ok(Accel::Tcg);
    }
    let key = cache_key(qemu);
    let (verdict, probed) = match state.probe(&key) {
        Some(v) => (v, false),
        None => {
            let v = match probe(arch, qemu, scratch_dir, "kvm") {
                Ok(()) => "ok".to_string(),
                Err(why) => why,
            };
            // Only a positive answer or a real failure is worth caching; a
            // missing /dev/kvm may be fixed by loading a module.
            if !v.starts_with("/dev/kvm") {
                state.set_probe(&key, &v)?;
            }
            (v, true)
        }
    };
    match (verdict == "ok", choice) {
        (true, _) => Ok(Accel::Kvm),
        (false, Choice::Kvm) => Err(Error::infra(format!(
            "KVM was requested but does not work here: {verdict}\n  use --accel tcg (or auto)"
        ))),
        (false, _) => {
            if let Some(line) = tcg_note(&verdict, probed, verbose) {
                crate::errln!("{line}");
            }
            Ok(Accel::Tcg)
        }
    }
}

/// The line saying why ktest falls back to TCG, if it is to be said: when
/// the probe just ran, or with `-v`.
fn tcg_note(verdict: &str, probed: bool, verbose: bool) -> Option<String> {
    let when = if probed {
        ""
    } else if verbose {
        " (probed earlier this boot)"
    } else {
        return None;
    };
    Some(format!(
        "ktest: using TCG (slow): KVM unusable{when}: {verdict}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm64_probe_image() {
        let i = probe_arm64_image();
        assert_eq!(crate::arch::of_image(&i), Some(&crate::arch::ARM64));
        assert_eq!(&i[0x44..0x48], &0xf2b0_8000u32.to_le_bytes());
    }

    /// The probe guests really run and exit as expected, under TCG where
    /// KVM is not to be had: the part of the probe that does not depend
    /// on the accelerator.
    #[test]
    fn probe_guests_run_under_tcg() {
        for arch in crate::arch::ALL {
            let Ok(qemu) = which::which(arch.qemu) else {
                let _ = crate::prereq::require(
                    false,
                    arch.qemu,
                    &format!("apt-get install {}", arch.qemu_package),
                );
                continue;
            };
            let t = tempfile::tempdir().unwrap();
            assert_eq!(probe(arch, &qemu, t.path(), "tcg"), Ok(()), "{}", arch.name);
        }
    }

    #[test]
    fn boot_sector() {
        let b = probe_boot_sector();
        assert_eq!(b.len(), 512);
        assert_eq!(&b[..5], &[0xb0, 0x2a, 0xe6, 0xf4, 0xf4]);
        assert_eq!(&b[510..], &[0x55, 0xaa]);
        assert_eq!(PROBE_EXIT, (0x2a << 1) | 1);
    }

    #[test]
    fn the_tcg_note_is_said_when_probed_and_repeated_only_when_verbose() {
        let why = "a KVM guest did not finish within 3 s";
        let fresh = format!("ktest: using TCG (slow): KVM unusable: {why}");
        assert_eq!(tcg_note(why, true, false), Some(fresh.clone()));
        assert_eq!(tcg_note(why, true, true), Some(fresh));
        assert_eq!(tcg_note(why, false, false), None);
        let cached = tcg_note(why, false, true).unwrap();
        assert!(cached.contains("probed earlier this boot"), "{cached}");
        assert!(cached.ends_with(why), "{cached}");
    }
}
