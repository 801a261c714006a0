//! Image sizes: parsing `--size` and printing sizes back.

/// One kibibyte.
pub const KIB: u64 = 1024;
/// One mebibyte.
pub const MIB: u64 = 1024 * KIB;
/// One gibibyte.
pub const GIB: u64 = 1024 * MIB;
/// One tebibyte.
pub const TIB: u64 = 1024 * GIB;

/// Smaller than this cannot hold even a minimal Debian; it mostly catches
/// `--size 4` meant as 4G.
pub const MIN_IMAGE_SIZE: u64 = 64 * MIB;

/// Parses a size such as `512M`, `4G`, `4GiB` or `1073741824` (bytes).
///
/// Suffixes are powers of 1024 and case-insensitive; the result is rounded
/// up to a whole MiB so the file system size is a whole number of blocks.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "'{text}' is not a size; use e.g. 512M, 4G or a number of bytes"
        ));
    }
    let unit = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => GIB,
        "t" | "tb" | "tib" => TIB,
        _ => {
            return Err(format!(
                "'{text}' has an unknown unit '{suffix}'; use K, M, G or T"
            ))
        }
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is too large"))?;
    let bytes = number
        .checked_mul(unit)
        .and_then(|b| b.checked_add(MIB - 1))
        .ok_or_else(|| format!("'{text}' is too large"))?
        / MIB
        * MIB;
    if bytes < MIN_IMAGE_SIZE {
        let hint = if suffix.is_empty() {
            format!("; did you mean {text}G?")
        } else {
            String::new()
        };
        return Err(format!(
            "'{text}' is too small for a Debian image (at least {}){hint}",
            format_size(MIN_IMAGE_SIZE)
        ));
    }
    Ok(bytes)
}

/// Formats a size the way `--size` accepts it when it is a whole number of
/// GiB or MiB (`4G`, `512M`), else as bytes.
pub fn format_size(bytes: u64) -> String {
    if bytes >= GIB && bytes % GIB == 0 {
        format!("{}G", bytes / GIB)
    } else if bytes >= MIB && bytes % MIB == 0 {
        format!("{}M", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// Whole MiB, rounded up: used to report space in use.
pub fn mib_ceil(bytes: u64) -> u64 {
    bytes.div_ceil(MIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suffixes_and_bytes() {
        assert_eq!(parse_size("512M"), Ok(512 * MIB));
        assert_eq!(parse_size("4G"), Ok(4 * GIB));
        assert_eq!(parse_size("4g"), Ok(4 * GIB));
        assert_eq!(parse_size("4GiB"), Ok(4 * GIB));
        assert_eq!(parse_size("1T"), Ok(TIB));
        assert_eq!(parse_size("65536K"), Ok(64 * MIB));
        assert_eq!(parse_size("1073741824"), Ok(GIB));
        assert_eq!(parse_size(" 1G "), Ok(GIB));
    }

    #[test]
    fn rounds_up_to_whole_mib() {
        assert_eq!(parse_size("104857601"), Ok(101 * MIB));
    }

    #[test]
    fn rejects_garbage_and_tiny_sizes() {
        assert!(parse_size("").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("4X").unwrap_err().contains("unknown unit"));
        assert!(parse_size("4").unwrap_err().contains("did you mean 4G?"));
        assert!(!parse_size("10M").unwrap_err().contains("did you mean"));
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn formats_round_sizes_compactly() {
        assert_eq!(format_size(4 * GIB), "4G");
        assert_eq!(format_size(512 * MIB), "512M");
        assert_eq!(format_size(1536 * MIB), "1536M");
        assert_eq!(format_size(1000), "1000 bytes");
        assert_eq!(mib_ceil(MIB + 1), 2);
        assert_eq!(mib_ceil(0), 0);
    }
}
