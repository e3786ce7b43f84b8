//! The `grpc-timeout` request header, in every unit the gRPC spec allows.

use std::time::Duration;

use http::HeaderMap;

/// The header that carries the client's deadline.
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// A `grpc-timeout` value that does not follow the spec.
#[derive(Debug, thiserror::Error)]
#[error("malformed grpc-timeout header {0:?}: expected 1 to 8 digits and one of H M S m u n")]
pub(crate) struct MalformedTimeout(String);

/// The client's timeout, if it sent one.
pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Option<Duration>, MalformedTimeout> {
    let Some(value) = headers.get(GRPC_TIMEOUT) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default();
    parse(text)
        .map(Some)
        .ok_or_else(|| MalformedTimeout(String::from_utf8_lossy(value.as_bytes()).into_owned()))
}

fn parse(text: &str) -> Option<Duration> {
    let unit_at = text.len().checked_sub(1)?;
    let (digits, unit) = text.split_at(unit_at);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_parses() {
        assert_eq!(parse("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(parse("1n"), Some(Duration::from_nanos(1)));
        assert_eq!(parse("0m"), Some(Duration::ZERO));
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in ["", "S", "5", "5s", "123456789S", "-1S", "1.5S", "5 S", "٣S"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn absent_header_is_no_timeout_and_bad_header_is_named() {
        let mut headers = HeaderMap::new();
        assert!(from_headers(&headers).unwrap().is_none());
        headers.insert(GRPC_TIMEOUT, "soon".parse().unwrap());
        assert!(
            from_headers(&headers)
                .unwrap_err()
                .to_string()
                .contains("\"soon\"")
        );
    }
}
