//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): secrets
//! `whsec_<base64>`, the signed content `{webhook-id}.{webhook-timestamp}.{body}`, and the
//! `webhook-signature` header `v1,<base64 HMAC-SHA256>`, space-separated when several
//! secrets sign (a rotation's grace period).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

use super::error::WebhookError;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The prefix of every secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Bytes of a generated secret's key.
const GENERATED_KEY_BYTES: usize = 32;

/// Fills `buf` from the system's secure random source (ring, through rustls).
pub(crate) fn secure_random(buf: &mut [u8]) -> Result<(), WebhookError> {
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(buf)
        .map_err(|_| WebhookError::Random)
}

/// A new secret: `whsec_` and the base64 of 32 random bytes.
pub fn generate_secret() -> Result<String, WebhookError> {
    let mut key = [0u8; GENERATED_KEY_BYTES];
    secure_random(&mut key)?;
    Ok(format!("{SECRET_PREFIX}{}", STANDARD.encode(key)))
}

/// The HMAC key of a secret: the base64-decoded part after `whsec_`, 24 to 64 bytes.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, WebhookError> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).ok_or_else(|| {
        WebhookError::invalid("secret", format!("a secret starts with `{SECRET_PREFIX}`"))
    })?;
    let key = STANDARD
        .decode(encoded)
        .map_err(|e| WebhookError::invalid("secret", format!("not base64 after `whsec_`: {e}")))?;
    if !(24..=64).contains(&key.len()) {
        return Err(WebhookError::invalid(
            "secret",
            format!("the key is {} bytes; it must be 24 to 64", key.len()),
        ));
    }
    Ok(key)
}

/// What a secret looks like in the API: its first four characters of key, never the whole.
pub fn secret_prefix(secret: &str) -> String {
    let shown: String = secret.chars().take(SECRET_PREFIX.len() + 4).collect();
    format!("{shown}…")
}

/// One signature, `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn sign(key: &[u8], webhook_id: &str, timestamp_s: u64, body: &[u8]) -> String {
    let mut mac = new_mac(key, webhook_id, timestamp_s);
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: one signature per key, space-separated, in the order given
/// (the current secret first).
pub fn signature_header(keys: &[&[u8]], webhook_id: &str, timestamp_s: u64, body: &[u8]) -> String {
    keys.iter()
        .map(|key| sign(key, webhook_id, timestamp_s, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether any `v1` signature of a `webhook-signature` header was made with `secret` over
/// this id, timestamp and body (compared in constant time). Checking that the timestamp is
/// recent is the caller's part.
pub fn verify(secret: &str, webhook_id: &str, timestamp_s: u64, body: &[u8], header: &str) -> bool {
    let Ok(key) = secret_key(secret) else {
        return false;
    };
    header.split(' ').any(|candidate| {
        let Some(encoded) = candidate.strip_prefix("v1,") else {
            return false;
        };
        let Ok(signature) = STANDARD.decode(encoded) else {
            return false;
        };
        let mut mac = new_mac(&key, webhook_id, timestamp_s);
        mac.update(body);
        mac.verify_slice(&signature).is_ok()
    })
}

fn new_mac(key: &[u8], webhook_id: &str, timestamp_s: u64) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail; an empty key is the fallback the
    // type system asks for.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => HmacSha256::new(&Default::default()),
    };
    mac.update(webhook_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks reference libraries (svix test vector).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: u64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn matches_the_reference_vector() {
        let key = secret_key(SECRET).unwrap();
        assert_eq!(sign(&key, ID, TS, BODY), EXPECTED);
        assert!(verify(SECRET, ID, TS, BODY, EXPECTED));
        assert!(!verify(SECRET, ID, TS + 1, BODY, EXPECTED));
        assert!(!verify(SECRET, ID, TS, b"{}", EXPECTED));
    }

    #[test]
    fn several_keys_sign_in_order_and_either_verifies() {
        let old = generate_secret().unwrap();
        let new = generate_secret().unwrap();
        assert_ne!(old, new);
        let (ko, kn) = (secret_key(&old).unwrap(), secret_key(&new).unwrap());
        let header = signature_header(&[&kn, &ko], ID, TS, BODY);
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], sign(&kn, ID, TS, BODY));
        assert!(verify(&old, ID, TS, BODY, &header));
        assert!(verify(&new, ID, TS, BODY, &header));
        assert!(!verify(SECRET, ID, TS, BODY, &header));
    }

    #[test]
    fn secrets_are_checked_and_shown_by_prefix() {
        assert!(secret_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(secret_key("whsec_!!!").is_err());
        assert!(secret_key("whsec_c2hvcnQ=").is_err());
        let s = generate_secret().unwrap();
        assert_eq!(secret_key(&s).unwrap().len(), 32);
        let shown = secret_prefix(&s);
        assert!(
            shown.starts_with("whsec_") && shown.chars().count() == 11,
            "{shown}"
        );
        assert!(!shown.contains(&s[10..]));
    }
}
