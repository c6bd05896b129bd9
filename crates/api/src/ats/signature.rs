//! The signature on each result webhook: `Voxbridge-Signature: t=<unix seconds>,v1=<hex>`,
//! where `<hex>` is HMAC-SHA256 with `api.webhooks.secret` over `<t>.<body>` (the timestamp
//! as written in the header, a full stop, the raw body bytes). The receiver recomputes it,
//! compares in constant time and refuses a timestamp too far from its clock (replays).

use std::fmt::Write as _;

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Voxbridge-Signature";
/// The header carrying the delivery id: the receiver's idempotency key (the same on every
/// retry and redelivery of one screening's result).
pub const DELIVERY_ID_HEADER: &str = "Voxbridge-Delivery-Id";
/// The header carrying the event name (`screening.ended`).
pub const EVENT_HEADER: &str = "Voxbridge-Event";
/// The header carrying the attempt number (1 for the first).
pub const ATTEMPT_HEADER: &str = "Voxbridge-Delivery-Attempt";

/// Lowercase hex HMAC-SHA256 of `<timestamp>.<body>` under `secret`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let mut hex = String::with_capacity(64);
    for b in mac.finalize().into_bytes() {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// The `Voxbridge-Signature` value for `body` sent at `timestamp` (Unix seconds).
pub fn header_value(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", sign(secret, timestamp, body))
}

/// Why [`verify`] refused a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The header is not `t=<seconds>,v1=<hex>`.
    #[error("malformed Voxbridge-Signature header")]
    Malformed,
    /// The timestamp is further than the tolerance from now.
    #[error("timestamp outside the tolerance")]
    Stale,
    /// No `v1` signature matches.
    #[error("signature mismatch")]
    Mismatch,
}

/// Checks a `Voxbridge-Signature` header as a receiver does: `now` and `tolerance_secs` in
/// seconds. Any `v1=` entry may match (room for a second secret during rotation).
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    use subtle::ConstantTimeEq as _;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => {
                timestamp = Some(t.parse::<i64>().map_err(|_| VerifyError::Malformed)?);
            }
            Some(("v1", v)) => signatures.push(v),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(VerifyError::Malformed)?;
    if signatures.is_empty() {
        return Err(VerifyError::Malformed);
    }
    if (now - timestamp).abs() > tolerance_secs {
        return Err(VerifyError::Stale);
    }
    let expected = sign(secret, timestamp, body);
    if signatures
        .iter()
        .any(|given| bool::from(given.as_bytes().ct_eq(expected.as_bytes())))
    {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_openssl() {
        // printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            sign(b"whsec_test", 1_700_000_000, br#"{"a":1}"#),
            "38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
        assert_eq!(
            header_value(b"whsec_test", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
    }

    #[test]
    fn verify_accepts_its_own_and_refuses_changes() {
        let header = header_value(b"s3cret", 1_000, b"body");
        assert_eq!(verify(b"s3cret", &header, b"body", 1_010, 300), Ok(()));
        assert_eq!(
            verify(b"s3cret", &header, b"bodY", 1_010, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(b"other", &header, b"body", 1_010, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(b"s3cret", &header, b"body", 1_301, 300),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify(b"s3cret", "v1=abc", b"body", 1_000, 300),
            Err(VerifyError::Malformed)
        );
        // The timestamp is signed too: moving it breaks the signature.
        let moved = header.replace("t=1000", "t=1001");
        assert_eq!(
            verify(b"s3cret", &moved, b"body", 1_001, 300),
            Err(VerifyError::Mismatch)
        );
    }
}
