//! Small validators shared by every entity: trimmed, bounded strings and URLs.

use crate::DomainError;

/// A required string: not blank, at most `max` characters (Unicode scalar values).
pub fn required(field: &str, value: &str, max: usize) -> Result<(), DomainError> {
    if value.trim().is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    bounded(field, value, max)
}

/// An optional string: at most `max` characters.
pub fn bounded(field: &str, value: &str, max: usize) -> Result<(), DomainError> {
    let len = value.chars().count();
    if len > max {
        return Err(DomainError::invalid(field, format!("must be at most {max} characters (got {len})")));
    }
    Ok(())
}

pub fn optional(field: &str, value: Option<&str>, max: usize) -> Result<(), DomainError> {
    value.map_or(Ok(()), |v| bounded(field, v, max))
}

/// An absolute URL with one of the given schemes and a non-empty remainder.
pub fn url(field: &str, value: &str, schemes: &[&str]) -> Result<(), DomainError> {
    required(field, value, 2048)?;
    let ok = schemes.iter().any(|scheme| {
        value
            .strip_prefix(scheme)
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|rest| !rest.trim_start_matches('/').is_empty() && !rest.contains(char::is_whitespace))
    });
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(field, format!("must be an absolute URL with scheme {}", schemes.join(", "))))
    }
}

/// A plausible e-mail address: one `@`, something on each side, a dot in the domain.
pub fn email(field: &str, value: &str) -> Result<(), DomainError> {
    bounded(field, value, 254)?;
    match value.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !value.contains(char::is_whitespace)
                && !domain.contains('@') =>
        {
            Ok(())
        }
        _ => Err(DomainError::invalid(field, "must be an e-mail address")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_characters_not_bytes() {
        assert!(required("t", &"é".repeat(10), 10).is_ok());
        assert!(required("t", &"é".repeat(11), 10).is_err());
        assert!(required("t", "   ", 10).is_err());
    }

    #[test]
    fn urls_and_emails() {
        assert!(url("u", "https://example.com/a.png", &["http", "https"]).is_ok());
        assert!(url("u", "ftp://example.com", &["http", "https"]).is_err());
        assert!(url("u", "https://", &["http", "https"]).is_err());
        assert!(email("e", "a@b.co").is_ok());
        assert!(email("e", "a@b").is_err());
    }
}
