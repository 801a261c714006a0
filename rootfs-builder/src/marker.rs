//! `/etc/ktest-image`: the file by which ktest recognizes an image made by
//! this tool, and learns what is in it.
//!
//! Plain `key=value` lines after a comment. `format` is the only key a
//! reader must check: it changes when the image layout changes in a way
//! ktest has to know about.

/// Path of the marker inside the image.
pub const MARKER_PATH: &str = "/etc/ktest-image";

/// The image layout version this tool writes.
pub const FORMAT_VERSION: u32 = 1;

const HEADER: &str = "# ktest root image, made by create-vm-image; do not edit";

/// The marker's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// Image layout version, [`FORMAT_VERSION`] for new images.
    pub format: u32,
    /// Debian codename installed.
    pub release: String,
    /// Debian architecture installed.
    pub arch: String,
    /// Mirror debootstrap used.
    pub mirror: String,
    /// Packages asked for with `--packages`.
    pub packages: Vec<String>,
    /// When the image was built, UTC, RFC 3339.
    pub built: String,
    /// When `--update` last re-applied the configuration, if ever.
    pub updated: Option<String>,
    /// The tool and version that last wrote the marker.
    pub tool: String,
}

impl Marker {
    /// The file's text.
    pub fn render(&self) -> String {
        let mut text = format!(
            "{HEADER}\nformat={}\nrelease={}\narch={}\nmirror={}\npackages={}\nbuilt={}\n",
            self.format,
            self.release,
            self.arch,
            self.mirror,
            self.packages.join(","),
            self.built
        );
        if let Some(updated) = &self.updated {
            text.push_str(&format!("updated={updated}\n"));
        }
        text.push_str(&format!("tool={}\n", self.tool));
        text
    }

    /// Reads a marker back; only `format` is required.
    pub fn parse(text: &str) -> Result<Marker, String> {
        let mut marker = Marker {
            format: 0,
            release: "unknown".into(),
            arch: "unknown".into(),
            mirror: "unknown".into(),
            packages: Vec::new(),
            built: "unknown".into(),
            updated: None,
            tool: "unknown".into(),
        };
        let mut format = None;
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().to_string();
            match key.trim() {
                "format" => format = value.parse().ok(),
                "release" => marker.release = value,
                "arch" => marker.arch = value,
                "mirror" => marker.mirror = value,
                "packages" => {
                    marker.packages = value
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(String::from)
                        .collect()
                }
                "built" => marker.built = value,
                "updated" => marker.updated = Some(value),
                "tool" => marker.tool = value,
                _ => {}
            }
        }
        marker.format = format.ok_or("no valid format= line")?;
        Ok(marker)
    }
}

/// This tool's name and version, for the marker.
pub fn tool_id() -> String {
    format!("create-vm-image {}", env!("CARGO_PKG_VERSION"))
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_timestamp(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Now, as [`utc_timestamp`].
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    utc_timestamp(secs)
}

// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
// algorithm); avoids a date crate for one timestamp.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Marker {
        Marker {
            format: FORMAT_VERSION,
            release: "bookworm".into(),
            arch: "amd64".into(),
            mirror: "http://deb.debian.org/debian".into(),
            packages: vec!["strace".into(), "gdb".into()],
            built: "2026-11-22T10:00:00Z".into(),
            updated: None,
            tool: "create-vm-image 0.1.0".into(),
        }
    }

    #[test]
    fn renders_and_parses_back() {
        let m = sample();
        let text = m.render();
        assert!(text.starts_with("# ktest root image"));
        assert!(text.contains("\nformat=1\n"));
        assert!(text.contains("\npackages=strace,gdb\n"));
        assert!(!text.contains("updated="));
        assert_eq!(Marker::parse(&text).unwrap(), m);
        let updated = Marker {
            updated: Some("2026-11-23T00:00:00Z".into()),
            ..m
        };
        assert_eq!(Marker::parse(&updated.render()).unwrap(), updated);
    }

    #[test]
    fn format_is_required_and_the_rest_optional() {
        assert!(Marker::parse("").is_err());
        assert!(Marker::parse("format=x\n").is_err());
        let m = Marker::parse("format=7\n").unwrap();
        assert_eq!((m.format, m.release.as_str()), (7, "unknown"));
        assert!(m.packages.is_empty());
    }

    #[test]
    fn timestamps() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_795_350_896), "2026-11-22T12:34:56Z");
        assert_eq!(utc_timestamp(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
