//! Sizes as tests declare them: `512M`, `2G`, `1024` (MiB).

/// One mebibyte.
pub const MIB: u64 = 1 << 20;

/// Parses a size. A bare number is MiB (the unit qemu's `-m` uses); suffixes
/// K, M, G and T are binary, case-insensitive, optionally followed by `B` or
/// `iB`. Returns bytes.
pub fn parse(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(format!(
            "'{text}' is not a size (expected e.g. 512M, 2G, 1024)"
        ));
    }
    let n: u64 = num.parse().map_err(|_| format!("'{text}' is too large"))?;
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit
        .strip_suffix("IB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(&unit);
    let shift = match unit {
        "" | "M" => 20,
        "K" => 10,
        "G" => 30,
        "T" => 40,
        _ => {
            return Err(format!(
                "'{text}' has an unknown unit (use K, M, G or T; a bare number is MiB)"
            ))
        }
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("'{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("512M"), Ok(512 * MIB));
        assert_eq!(parse("2G"), Ok(2048 * MIB));
        assert_eq!(parse("1024"), Ok(1024 * MIB));
        assert_eq!(parse("64k"), Ok(64 << 10));
        assert_eq!(parse("1GiB"), Ok(1 << 30));
        assert_eq!(parse("1gb"), Ok(1 << 30));
        assert_eq!(parse(" 3T "), Ok(3 << 40));
    }

    #[test]
    fn bad_sizes() {
        assert!(parse("").is_err());
        assert!(parse("M").is_err());
        assert!(parse("12X").unwrap_err().contains("unknown unit"));
        assert!(parse("1.5G").is_err());
        assert!(parse("-1").is_err());
        assert!(parse("99999999999999999999")
            .unwrap_err()
            .contains("too large"));
        assert!(parse("99999999999T").unwrap_err().contains("too large"));
    }
}
