//! Kubernetes resource quantities (`100m`, `1.5`, `128Mi`, `1e3`) parsed exactly into
//! integers, because scheduling compares sums of requests against allocatable and a
//! float would make `0.1 + 0.2` cores differ from `300m`.
//!
//! The grammar is apimachinery's `ParseQuantity`: an optional sign, digits with an
//! optional fraction, then a binary suffix (`Ki` … `Ei`), a decimal suffix (`n`, `u`,
//! `m`, `k`, `M`, `G`, `T`, `P`, `E`) or a decimal exponent (`e3`, `E-2`). Conversions
//! round up like `Quantity.Value()` and `Quantity.MilliValue()` do (away from zero).

use thiserror::Error;

/// Why a quantity string could not be turned into an integer.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum QuantityError {
    /// The string was empty (after trimming whitespace).
    #[error("quantity is empty")]
    Empty,
    /// The string is not a number followed by a suffix.
    #[error("quantity {quantity:?} must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    InvalidFormat {
        /// The offending string.
        quantity: String,
    },
    /// The suffix is none of the known binary, decimal or exponent suffixes.
    #[error("quantity {quantity:?} has unknown suffix {suffix:?}")]
    UnknownSuffix {
        /// The offending string.
        quantity: String,
        /// The suffix that was not recognised.
        suffix: String,
    },
    /// The value does not fit in a signed 64-bit integer at the requested scale.
    #[error("quantity {quantity:?} is out of range")]
    OutOfRange {
        /// The offending string.
        quantity: String,
    },
}

/// Parses a quantity and returns `ceil(value)`, e.g. bytes of memory: `"128Mi"` → 134217728.
pub fn parse_value(quantity: &str) -> Result<i64, QuantityError> {
    Parsed::parse(quantity)?.scaled(0, quantity)
}

/// Parses a quantity and returns `ceil(value * 1000)`, e.g. millicores: `"1.5"` → 1500.
pub fn parse_milli_value(quantity: &str) -> Result<i64, QuantityError> {
    Parsed::parse(quantity)?.scaled(3, quantity)
}

/// A quantity as `mantissa * 10^exponent10 * 2^exponent2`, with its sign apart.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    negative: bool,
    mantissa: u128,
    exponent10: i64,
    exponent2: u32,
}

impl Parsed {
    fn parse(input: &str) -> Result<Parsed, QuantityError> {
        let quantity = input.trim();
        if quantity.is_empty() {
            return Err(QuantityError::Empty);
        }
        let invalid = || QuantityError::InvalidFormat {
            quantity: quantity.to_string(),
        };
        let out_of_range = || QuantityError::OutOfRange {
            quantity: quantity.to_string(),
        };
        let bytes = quantity.as_bytes();
        let mut pos = 0;

        let negative = match bytes[0] {
            b'-' => {
                pos += 1;
                true
            }
            b'+' => {
                pos += 1;
                false
            }
            _ => false,
        };

        let integer_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        let integer_digits = &quantity[integer_start..pos];
        let mut fraction_digits = "";
        if pos < bytes.len() && bytes[pos] == b'.' {
            pos += 1;
            let fraction_start = pos;
            while pos < bytes.len() && bytes[pos].is_ascii_digit() {
                pos += 1;
            }
            fraction_digits = &quantity[fraction_start..pos];
        }
        if integer_digits.is_empty() && fraction_digits.is_empty() {
            return Err(invalid());
        }

        // The suffix: letters from the suffix alphabet, then an optional sign and
        // digits (only meaningful for an exponent, checked when interpreting it).
        let suffix_start = pos;
        while pos < bytes.len() && b"eEinumkKMGTP".contains(&bytes[pos]) {
            pos += 1;
        }
        if pos < bytes.len() && (bytes[pos] == b'-' || bytes[pos] == b'+') {
            pos += 1;
        }
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos != bytes.len() {
            return Err(invalid());
        }
        let suffix = &quantity[suffix_start..];

        let (suffix_exponent10, exponent2) =
            interpret_suffix(suffix).ok_or_else(|| QuantityError::UnknownSuffix {
                quantity: quantity.to_string(),
                suffix: suffix.to_string(),
            })?;

        // Trailing zeros of the fraction and leading zeros of the integer carry no
        // value; dropping them keeps long but exact inputs inside the mantissa.
        let fraction_digits = fraction_digits.trim_end_matches('0');
        let integer_digits = integer_digits.trim_start_matches('0');
        let mut mantissa: u128 = 0;
        for digit in integer_digits.bytes().chain(fraction_digits.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(u128::from(digit - b'0')))
                .ok_or_else(out_of_range)?;
        }
        let fraction_len = i64::try_from(fraction_digits.len()).map_err(|_| out_of_range())?;

        Ok(Parsed {
            negative,
            mantissa,
            exponent10: suffix_exponent10 - fraction_len,
            exponent2,
        })
    }

    /// `ceil(|value| * 10^scale)` with the sign put back, as an `i64`.
    fn scaled(&self, scale: i64, quantity: &str) -> Result<i64, QuantityError> {
        let out_of_range = || QuantityError::OutOfRange {
            quantity: quantity.trim().to_string(),
        };
        if self.mantissa == 0 {
            return Ok(0);
        }
        let binary = 1u128.checked_shl(self.exponent2).ok_or_else(out_of_range)?;
        let value = self.mantissa.checked_mul(binary).ok_or_else(out_of_range)?;
        let exponent = self.exponent10 + scale;
        let magnitude = if exponent >= 0 {
            let exponent = u32::try_from(exponent).map_err(|_| out_of_range())?;
            let factor = 10u128.checked_pow(exponent).ok_or_else(out_of_range)?;
            value.checked_mul(factor).ok_or_else(out_of_range)?
        } else {
            match u32::try_from(-exponent)
                .ok()
                .and_then(|e| 10u128.checked_pow(e))
            {
                Some(divisor) => value / divisor + u128::from(value % divisor != 0),
                // Smaller than any representable unit but not zero: rounds up to one.
                None => 1,
            }
        };
        let magnitude = i64::try_from(magnitude).map_err(|_| out_of_range())?;
        Ok(if self.negative { -magnitude } else { magnitude })
    }
}

/// Returns `(decimal exponent, binary exponent)` for a suffix.
fn interpret_suffix(suffix: &str) -> Option<(i64, u32)> {
    let known = match suffix {
        "" => Some((0, 0)),
        "n" => Some((-9, 0)),
        "u" => Some((-6, 0)),
        "m" => Some((-3, 0)),
        "k" => Some((3, 0)),
        "M" => Some((6, 0)),
        "G" => Some((9, 0)),
        "T" => Some((12, 0)),
        "P" => Some((15, 0)),
        "E" => Some((18, 0)),
        "Ki" => Some((0, 10)),
        "Mi" => Some((0, 20)),
        "Gi" => Some((0, 30)),
        "Ti" => Some((0, 40)),
        "Pi" => Some((0, 50)),
        "Ei" => Some((0, 60)),
        _ => None,
    };
    if known.is_some() {
        return known;
    }
    let exponent = suffix
        .strip_prefix('e')
        .or_else(|| suffix.strip_prefix('E'))?;
    if exponent.is_empty() {
        return None;
    }
    let digits = exponent
        .strip_prefix('+')
        .or_else(|| exponent.strip_prefix('-'))
        .unwrap_or(exponent);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Exponents beyond this are out of range for any non-zero value anyway;
    // clamping keeps the arithmetic on plain integers.
    let value: i64 = exponent.parse().unwrap_or(if exponent.starts_with('-') {
        -1_000_000
    } else {
        1_000_000
    });
    Some((value.clamp(-1_000_000, 1_000_000), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_milli(input: &str, expected: Result<i64, &str>) {
        let got = parse_milli_value(input).map_err(|e| e.to_string());
        assert_eq!(
            got,
            expected.map_err(str::to_string),
            "milli value of {input:?}"
        );
    }

    fn check_value(input: &str, expected: Result<i64, &str>) {
        let got = parse_value(input).map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(str::to_string), "value of {input:?}");
    }

    #[test]
    fn cpu_milli_values() {
        check_milli("100m", Ok(100));
        check_milli("1", Ok(1000));
        check_milli("2", Ok(2000));
        check_milli("1.5", Ok(1500));
        check_milli("0.1", Ok(100));
        check_milli(".5", Ok(500));
        check_milli("5.", Ok(5000));
        check_milli("1.G", Ok(1_000_000_000_000));
        check_milli("0", Ok(0));
        check_milli("0m", Ok(0));
        check_milli("000250m", Ok(250));
        check_milli("250.000m", Ok(250));
        check_milli("0.5m", Ok(1));
        check_milli("1.0001m", Ok(2));
        check_milli("100u", Ok(1));
        check_milli("1n", Ok(1));
        check_milli("1e-3", Ok(1));
        check_milli("1e3", Ok(1_000_000));
        check_milli("1k", Ok(1_000_000));
        check_milli("+2", Ok(2000));
        check_milli("-100m", Ok(-100));
        check_milli("-0.5m", Ok(-1));
        check_milli("  3  ", Ok(3000));
        check_milli("1Ki", Ok(1_024_000));
    }

    #[test]
    fn memory_values() {
        check_value("128Mi", Ok(134_217_728));
        check_value("1Ki", Ok(1024));
        check_value("1Gi", Ok(1_073_741_824));
        check_value("1.5Gi", Ok(1_610_612_736));
        check_value("1Ti", Ok(1_099_511_627_776));
        check_value("1Pi", Ok(1_125_899_906_842_624));
        check_value("1Ei", Ok(1_152_921_504_606_846_976));
        check_value("1G", Ok(1_000_000_000));
        check_value("1M", Ok(1_000_000));
        check_value("512k", Ok(512_000));
        check_value("1T", Ok(1_000_000_000_000));
        check_value("1P", Ok(1_000_000_000_000_000));
        check_value("1E", Ok(1_000_000_000_000_000_000));
        check_value("1e3", Ok(1000));
        check_value("1E3", Ok(1000));
        check_value("1e+3", Ok(1000));
        check_value("12e-1", Ok(2));
        check_value("100m", Ok(1));
        check_value("1500m", Ok(2));
        check_value("0.5", Ok(1));
        check_value("110", Ok(110));
        check_value("0.0000000000000000000000000000000000000000001", Ok(1));
        check_value("1e-100000000000", Ok(1));
        check_value("0e100000000000", Ok(0));
    }

    #[test]
    fn garbage_is_an_error() {
        check_value("", Err("quantity is empty"));
        check_value("   ", Err("quantity is empty"));
        let format = |q: &str| {
            format!(
                "quantity {q:?} must match the regular expression \
                 '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
            )
        };
        for bad in [
            "abc", "Mi", ".", "-", "+", "1.5.5", "1 Mi", "1,5", "0x10", "--1", "1Mi3x",
        ] {
            check_value(bad, Err(&format(bad)));
        }
        for (bad, suffix) in [
            ("1K", "K"),
            ("1ki", "ki"),
            ("1Mi3", "Mi3"),
            ("1e", "e"),
            ("1m3", "m3"),
            ("1ei", "ei"),
            ("1iMi", "iMi"),
            ("1e+", "e+"),
            ("5MM", "MM"),
        ] {
            let expected = format!("quantity {bad:?} has unknown suffix {suffix:?}");
            check_value(bad, Err(&expected));
        }
    }

    #[test]
    fn out_of_range_is_an_error() {
        check_value("9223372036854775807", Ok(i64::MAX));
        check_value(
            "9223372036854775808",
            Err("quantity \"9223372036854775808\" is out of range"),
        );
        check_value("16Ei", Err("quantity \"16Ei\" is out of range"));
        check_milli(
            "9223372036854776",
            Err("quantity \"9223372036854776\" is out of range"),
        );
        check_value(
            "1e100000000000",
            Err("quantity \"1e100000000000\" is out of range"),
        );
        check_value(
            "123456789012345678901234567890123456789012345",
            Err("quantity \"123456789012345678901234567890123456789012345\" is out of range"),
        );
    }
}
