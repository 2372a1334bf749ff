//! Logging through `tracing`. Phone numbers are personal data: they reach logs only as
//! `E164::masked()` (last four digits) or through `Pii`, which masks any digit run.

use std::fmt;

/// Wraps a string that may hold a phone number; shows only the last four digits of it.
pub struct Pii<'a>(pub &'a str);

impl fmt::Display for Pii<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.0.bytes().filter(u8::is_ascii_digit).count();
        let mut seen = 0;
        for c in self.0.chars() {
            if c.is_ascii_digit() {
                seen += 1;
                if seen + 4 <= digits {
                    f.write_str("*")?;
                    continue;
                }
            }
            fmt::Write::write_char(f, c)?;
        }
        Ok(())
    }
}

/// Installs the global subscriber: `RUST_LOG` if set, else `info`; logs go to stderr.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::Pii;

    #[test]
    fn masks_all_but_the_last_four_digits() {
        assert_eq!(Pii("+14155550101").to_string(), "+*******0101");
        assert_eq!(
            Pii("tel:+1-415-555-0101").to_string(),
            "tel:+*-***-***-0101"
        );
        assert_eq!(Pii("abc").to_string(), "abc");
    }
}
