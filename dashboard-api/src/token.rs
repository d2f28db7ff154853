//! Token strings: new random tokens and the SHA-256 a token is known by. Both the
//! configuration ([`TokenSpec`](crate::TokenSpec)) and the token store use them, so they sit
//! below both.

use std::io::Read;

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// What every generated token starts with.
const TOKEN_PREFIX: &str = "ioc_";

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The lowercase hex SHA-256 of `token`: what [`TokenSpec::sha256`](crate::TokenSpec::sha256)
/// holds (`printf %s "$TOKEN" | sha256sum`).
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest.iter() {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

/// A new random token: `ioc_` and the URL-safe base64 (no padding) of 32 bytes read from
/// `/dev/urandom`.
pub fn generate_token() -> Result<String, ApiError> {
    let mut bytes = [0_u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(ApiError::Random)?;
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The SHA-256 of `token`, as bytes.
pub(crate) fn digest_of(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The 32 bytes of 64 hex digits; `None` for anything else.
pub(crate) fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = [0_u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Equal without stopping at the first difference.
pub(crate) fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_generates() {
        assert_eq!(
            hash_token(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert!(a.starts_with("ioc_") && a.len() == 4 + 43, "{a}");
        assert_ne!(a, b);
        assert_eq!(parse_hex(&hash_token("x")), Some(digest_of("x")));
        assert_eq!(parse_hex("zz"), None);
        assert!(constant_time_eq(&digest_of("x"), &digest_of("x")));
        assert!(!constant_time_eq(&digest_of("x"), &digest_of("y")));
    }
}
