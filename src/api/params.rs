//! Request parameters: form-encoded PascalCase bodies (repeated keys kept in order), typed
//! accessors that answer Twilio-shaped 400s, and the paging query (`PageSize`, `Page`,
//! `PageToken`).

use super::error::ApiError;
use crate::core::engine::Cursor;

/// Whether `text` matches Twilio's pattern for a SID with this prefix:
/// `^<prefix>[0-9a-fA-F]{32}$`.
pub fn is_sid(prefix: &str, text: &str) -> bool {
    text.len() == 34
        && text.starts_with(prefix)
        && prefix.len() == 2
        && text.bytes().skip(2).all(|c| c.is_ascii_hexdigit())
}

/// A decoded `application/x-www-form-urlencoded` body or query string.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(bytes: &[u8]) -> Params {
        Params(form_urlencoded::parse(bytes).into_owned().collect())
    }

    /// The last value of `name` (Twilio's libraries send each scalar once).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    pub fn required(&self, name: &str) -> Result<String, ApiError> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v.to_string()),
            _ => Err(ApiError::missing(name)),
        }
    }

    /// A SID parameter: `None` when absent or empty, else it must match Twilio's pattern for
    /// `prefix` (400, `ApiError::invalid_sid`).
    pub fn sid(&self, name: &str, prefix: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) if is_sid(prefix, v) => Ok(Some(v.to_string())),
            Some(_) => Err(ApiError::invalid_sid(name, prefix)),
        }
    }

    pub fn u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.get(name)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| ApiError::invalid(name, "must be a non-negative integer"))
            })
            .transpose()
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.get(name)
            .map(|v| {
                if v.eq_ignore_ascii_case("true") {
                    Ok(true)
                } else if v.eq_ignore_ascii_case("false") {
                    Ok(false)
                } else {
                    Err(ApiError::invalid(name, "must be true or false"))
                }
            })
            .transpose()
    }

    pub fn enumerated<T>(
        &self,
        name: &str,
        parse: fn(&str) -> Option<T>,
        allowed: &[&str],
    ) -> Result<Option<T>, ApiError> {
        self.get(name)
            .map(|v| {
                parse(v).ok_or_else(|| {
                    ApiError::invalid(name, format!("must be one of {}", allowed.join(", ")))
                })
            })
            .transpose()
    }

    pub fn date(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| {
                crate::core::datetime::parse(v)
                    .ok_or_else(|| ApiError::invalid(name, "must be an ISO 8601 date-time"))
            })
            .transpose()
    }

    /// A callback URL: empty clears it; otherwise http(s) and not maskd's own API.
    pub fn url(&self, name: &str, own_base: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some("") => Ok(Some(String::new())),
            Some(v) => {
                if !(v.starts_with("http://") || v.starts_with("https://")) || v.len() > 2048 {
                    return Err(ApiError::invalid(name, "must be an http or https URL"));
                }
                if v.starts_with(own_base) {
                    return Err(ApiError::invalid(name, "must not point at maskd itself"));
                }
                Ok(Some(v.to_string()))
            }
        }
    }
}

/// Largest page served, whatever `PageSize` says (Twilio caps at 100).
pub const MAX_PAGE: usize = 100;
pub const DEFAULT_PAGE: usize = 50;

#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub size: usize,
    pub page: u64,
    pub cursor: Cursor,
}

impl Paging {
    pub fn from_query(q: &Params) -> Result<Paging, ApiError> {
        let size = match q.get("PageSize") {
            None => DEFAULT_PAGE,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=1000).contains(&n) => n.min(MAX_PAGE),
                _ => {
                    return Err(ApiError::invalid(
                        "PageSize",
                        "must be an integer from 1 to 1000",
                    ))
                }
            },
        };
        let page = match q.get("Page") {
            None => 0,
            Some(v) => v
                .parse::<u64>()
                .map_err(|_| ApiError::invalid("Page", "must be a non-negative integer"))?,
        };
        let cursor = match q.get("PageToken") {
            None | Some("") => Cursor::Start,
            Some(t) => {
                let seq = |s: &str| {
                    s.parse::<u64>().map_err(|_| {
                        ApiError::invalid("PageToken", "is not a token this server issued")
                    })
                };
                if let Some(rest) = t.strip_prefix("PA") {
                    Cursor::After(seq(rest)?)
                } else if let Some(rest) = t.strip_prefix("PB") {
                    Cursor::Before(seq(rest)?)
                } else {
                    return Err(ApiError::invalid(
                        "PageToken",
                        "is not a token this server issued",
                    ));
                }
            }
        };
        Ok(Paging { size, page, cursor })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sid_pattern_is_twilios() {
        let hex = "0123456789abcdefABCDEF0123456789";
        assert!(is_sid("IS", &format!("IS{hex}")));
        for bad in [
            "null".to_string(),
            "IS123".to_string(),
            format!("is{hex}"),
            format!("PN{hex}"),
            format!("IS{hex}0"),
            format!("IS{}g", &hex[1..]),
            format!("IS{}é", &hex[2..]),
        ] {
            assert!(!is_sid("IS", &bad), "{bad}");
        }
        let p = Params::parse(format!("A=PN{hex}&B=&C=PN1").as_bytes());
        assert_eq!(p.sid("A", "PN").unwrap(), Some(format!("PN{hex}")));
        assert_eq!(p.sid("B", "PN").unwrap(), None, "empty is absent");
        assert_eq!(p.sid("Z", "PN").unwrap(), None);
        assert_eq!(p.sid("C", "PN").unwrap_err().code, 80407);
        assert_eq!(p.sid("C", "IS").unwrap_err().code, 80701);
    }
}
