//! Opaque pagination cursors. They encode a position (a log `seq` or an id) behind a prefix
//! and base64, so clients treat them as tokens; a tampered or foreign cursor is a clean `400`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use parley_core::Uuid;

use crate::error::ApiError;

pub fn encode_seq(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("s:{seq}"))
}

pub fn encode_id(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("i:{id}"))
}

fn decode(field: &str, cursor: &str, prefix: &str) -> Result<String, ApiError> {
    let bad =
        || ApiError::bad_request("invalid_cursor", field, format!("`{field}` is not a cursor this endpoint gave out"));
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim_end_matches('=')).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    text.strip_prefix(prefix).map(str::to_string).ok_or_else(bad)
}

pub fn decode_seq(field: &str, cursor: &str) -> Result<i64, ApiError> {
    decode(field, cursor, "s:")?.parse::<i64>().ok().filter(|s| *s >= 0).ok_or_else(|| {
        ApiError::bad_request("invalid_cursor", field, format!("`{field}` is not a cursor this endpoint gave out"))
    })
}

pub fn decode_id(field: &str, cursor: &str) -> Result<Uuid, ApiError> {
    decode(field, cursor, "i:")?.parse::<Uuid>().map_err(|_| {
        ApiError::bad_request("invalid_cursor", field, format!("`{field}` is not a cursor this endpoint gave out"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_foreign_cursors() {
        assert_eq!(decode_seq("after", &encode_seq(42)).unwrap(), 42);
        let id = Uuid::now_v7();
        assert_eq!(decode_id("cursor", &encode_id(id)).unwrap(), id);
        assert!(decode_seq("after", &encode_id(id)).is_err());
        assert!(decode_seq("after", "!!!").is_err());
        assert!(decode_seq("after", "42").is_err());
    }
}
