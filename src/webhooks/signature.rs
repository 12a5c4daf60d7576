//! `BoltLink-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`,
//! the scheme of Stripe's webhooks: the timestamp is signed with the body, so a receiver that
//! also refuses old timestamps cannot be replayed to.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header's value for `body` sent at `t` (unix seconds), signed with `secret` (the
/// whole `whsec_…` string is the HMAC key, as the receiver has it).
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(digest(secret, t, body)))
}

fn digest(secret: &str, t: i64, body: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC-SHA256 takes a key of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Whether `header` is a valid signature of `body` by `secret` (in constant time); what a
/// receiver does, minus the timestamp's age check.
pub fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    use subtle::ConstantTimeEq;
    v1.len() == 32 && bool::from(digest(secret, t, body).ct_eq(&v1[..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_an_independent_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?". Signing
        // "<t>.<body>" with t = 1 and body "what…" is not that vector, so compute the vector
        // itself through the same primitive, then check the framing separately.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").expect("any key length");
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let header = sign("Jefe", 1_700_000_000, b"{}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").expect("any key length");
        mac.update(b"1700000000.{}");
        assert_eq!(
            header,
            format!(
                "t=1700000000,v1={}",
                hex::encode(mac.finalize().into_bytes())
            )
        );
    }

    #[test]
    fn verify_accepts_its_own_signature_and_nothing_else() {
        let secret = "whsec_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let header = sign(secret, 1_765_000_000, b"{\"id\":1}");
        assert!(verify(secret, &header, b"{\"id\":1}"));
        assert!(!verify(secret, &header, b"{\"id\":2}"));
        assert!(!verify("whsec_other", &header, b"{\"id\":1}"));
        let shifted = header.replace("t=1765000000", "t=1765000001");
        assert!(!verify(secret, &shifted, b"{\"id\":1}"));
        assert!(!verify(secret, "t=1,v1=zz", b"{}"));
        assert!(!verify(secret, "", b"{}"));
    }
}
