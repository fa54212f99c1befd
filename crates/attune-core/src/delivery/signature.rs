//! Webhook signatures as the Standard Webhooks specification describes them
//! (<https://www.standardwebhooks.com/>): the signed content is `{id}.{timestamp}.{body}`,
//! signed with HMAC-SHA256 under each active secret; the `webhook-signature` header lists
//! one `v1,{base64}` per secret, separated by spaces, so a receiver that knows either the
//! old or the new secret accepts the message while secrets rotate.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// The prefix the specification gives secrets written out.
pub const SECRET_PREFIX: &str = "whsec_";

/// A webhook secret: 24 to 64 random bytes, written `whsec_` and base64.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(\"whsec_…\")")
    }
}

impl Secret {
    /// Parses `whsec_` followed by the base64 of 24 to 64 bytes; the message says which.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let Some(b64) = raw.strip_prefix(SECRET_PREFIX) else {
            return Err(format!(
                "a webhook secret starts with {SECRET_PREFIX:?} followed by base64 (e.g. whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw)"
            ));
        };
        let bytes = STANDARD
            .decode(b64)
            .map_err(|e| format!("the part after {SECRET_PREFIX:?} is not base64: {e}"))?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(format!(
                "a webhook secret holds 24 to 64 bytes; this one holds {}",
                bytes.len()
            ));
        }
        Ok(Secret(bytes))
    }

    /// A secret from its bytes (tests, generated secrets).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Secret(bytes.to_vec())
    }

    /// The secret written out, `whsec_` and base64.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// The HMAC of the signed content, `{id}.{timestamp}.{body}`, not yet finalised.
    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

/// The `webhook-signature` header for a message: `v1,{base64}` per secret, space-separated.
pub fn sign(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| {
            let sig = s.mac(id, timestamp, body).finalize().into_bytes();
            format!("v1,{}", STANDARD.encode(sig))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a message was refused by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the webhook-timestamp is {0} s away from now, more than the tolerance")]
    Stale(i64),
    #[error("no signature in webhook-signature matches")]
    NoMatch,
}

/// Checks a message as a receiver does: the timestamp within `tolerance_secs` of `now`,
/// and one `v1` signature in the header made with `secret`. Compares in constant time.
pub fn verify(
    secret: &Secret,
    id: &str,
    timestamp: i64,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), Refused> {
    if (now - timestamp).abs() > tolerance_secs {
        return Err(Refused::Stale(now - timestamp));
    }
    for part in header.split(' ') {
        let Some(b64) = part.strip_prefix("v1,") else {
            continue;
        };
        let Ok(given) = STANDARD.decode(b64) else {
            continue;
        };
        if secret.mac(id, timestamp, body).verify_slice(&given).is_ok() {
            return Ok(());
        }
    }
    Err(Refused::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in the Standard Webhooks reference libraries' tests.
    #[test]
    fn matches_the_specifications_example() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &[secret],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn rotation_signs_with_both_and_either_verifies() {
        let old = Secret::from_bytes(&[1; 32]);
        let new = Secret::from_bytes(&[2; 32]);
        let header = sign(&[new.clone(), old.clone()], "nudge_1", 100, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert_eq!(
            verify(&old, "nudge_1", 100, &header, b"{}", 100, 300),
            Ok(())
        );
        assert_eq!(
            verify(&new, "nudge_1", 100, &header, b"{}", 100, 300),
            Ok(())
        );
        let other = Secret::from_bytes(&[3; 32]);
        assert_eq!(
            verify(&other, "nudge_1", 100, &header, b"{}", 100, 300),
            Err(Refused::NoMatch)
        );
        assert_eq!(
            verify(&old, "nudge_1", 100, &header, b"{ }", 100, 300),
            Err(Refused::NoMatch)
        );
        assert_eq!(
            verify(&old, "nudge_1", 100, &header, b"{}", 1000, 300),
            Err(Refused::Stale(900))
        );
    }

    #[test]
    fn bad_secrets_say_what_is_wrong() {
        assert!(
            Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
                .unwrap_err()
                .contains("whsec_")
        );
        assert!(
            Secret::parse("whsec_!!!")
                .unwrap_err()
                .contains("not base64")
        );
        assert!(
            Secret::parse("whsec_AAAA")
                .unwrap_err()
                .contains("24 to 64 bytes")
        );
        let s = Secret::from_bytes(&[7; 32]);
        assert_eq!(Secret::parse(&s.expose()).unwrap(), s);
        assert!(!format!("{s:?}").contains(&s.expose()[6..]));
    }
}
