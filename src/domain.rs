//! Domain newtypes with `parse` constructors: once a value has one of these types it is valid,
//! so the rest of the code never re-checks it ("parse, don't validate").

use std::fmt;

use rand::Rng;
use sha2::{Digest, Sha256};

/// Alphabet of short codes: URL-safe and unambiguous in a path segment.
pub const CODE_ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
pub const GENERATED_CODE_LEN: usize = 8;
pub const MAX_URL_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DomainError(pub String);

/// A short code: 3-64 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShortCode(String);

impl ShortCode {
    /// Parses a code as it appears in a request path (any length the alphabet allows).
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        if (3..=64).contains(&s.len()) && s.bytes().all(|b| CODE_ALPHABET.contains(&b)) {
            Ok(Self(s.to_string()))
        } else {
            Err(DomainError(
                "customCode must be 3-64 characters of A-Z, a-z, 0-9, _ and -".to_string(),
            ))
        }
    }

    /// A random 8-character code; collisions are handled by the store's unique constraint.
    pub fn generate() -> Self {
        let mut rng = rand::thread_rng();
        let code = (0..GENERATED_CODE_LEN)
            .map(|_| CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())] as char)
            .collect();
        Self(code)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ShortCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An absolute http(s) URL of at most [`MAX_URL_LEN`] characters, in its normalised form:
/// what the WHATWG URL parser serialises (punycode host, percent-encoded path, query and
/// fragment, lower-case scheme and host, a `/` path at least). That form is what is stored,
/// shown and sent in `Location`, which then is always ASCII (hardening issue, finding 7: a
/// UTF-8 host went out raw). Input the parser only accepts by repairing it — a backslash for
/// a slash, a missing `//`, tabs or newlines it drops — is refused rather than guessed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl(String);

impl TargetUrl {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        use std::cell::Cell;
        use url::SyntaxViolation;

        let s = s.trim();
        if s.is_empty() {
            return Err(DomainError("url is required".to_string()));
        }
        if s.len() > MAX_URL_LEN {
            return Err(DomainError(format!(
                "url must be at most {MAX_URL_LEN} characters"
            )));
        }
        if s.chars().any(|c| c.is_control() || c == ' ') {
            return Err(DomainError(
                "url must not contain spaces or control characters".to_string(),
            ));
        }
        if s.contains('\\') {
            return Err(DomainError(
                "url must not contain backslashes (use / in URLs)".to_string(),
            ));
        }
        let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(DomainError(
                "url must start with http:// or https://".to_string(),
            ));
        }
        let repaired = Cell::new(None);
        let url = url::Url::options()
            .syntax_violation_callback(Some(&|v| {
                if matches!(
                    v,
                    SyntaxViolation::Backslash
                        | SyntaxViolation::C0SpaceIgnored
                        | SyntaxViolation::TabOrNewlineIgnored
                        | SyntaxViolation::ExpectedDoubleSlash
                        | SyntaxViolation::NullInFragment
                ) {
                    repaired.set(Some(v));
                }
            }))
            .parse(s)
            .map_err(|_| DomainError("url must be an absolute http(s) URL".to_string()))?;
        if let Some(v) = repaired.get() {
            return Err(DomainError(format!(
                "url is not a well-formed URL: {}",
                v.description()
            )));
        }
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(DomainError(
                "url must start with http:// or https://".to_string(),
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(DomainError("url must have a host".to_string()));
        }
        let normalised = String::from(url);
        if normalised.len() > MAX_URL_LEN {
            return Err(DomainError(format!(
                "url must be at most {MAX_URL_LEN} characters once normalised (non-ASCII characters are percent-encoded)"
            )));
        }
        Ok(Self(normalised))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The `Location` for a stored URL. Since the hardening issue every URL is stored normalised
/// (ASCII); a row stored raw before that is normalised here, so redirects never send raw
/// UTF-8. A row that does not parse at all is sent as it is.
pub fn location_of(stored: &str) -> String {
    if stored.is_ascii() {
        return stored.to_string();
    }
    match url::Url::parse(stored) {
        Ok(u) => u.into(),
        Err(_) => stored.to_string(),
    }
}

/// Per-link cap: 1 to 1 000 000 clicks per minute.
pub fn parse_max_clicks_per_min(n: i64) -> Result<i32, DomainError> {
    if (1..=1_000_000).contains(&n) {
        Ok(n as i32)
    } else {
        Err(DomainError(
            "maxClicksPerMin must be between 1 and 1000000".to_string(),
        ))
    }
}

/// A freshly generated API key: 32 random bytes, hex-encoded. Only [`ApiKeySecret::hash`]
/// is ever stored.
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::thread_rng().gen();
        Self(hex::encode(bytes))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> [u8; 32] {
        hash_api_key(&self.0)
    }

    /// First 10 characters, the part settings may show.
    pub fn prefix(&self) -> String {
        self.0[..10].to_string()
    }
}

/// SHA-256 of a presented key. Lookups go by this digest, so the database compares digests,
/// never secrets; an attacker learns nothing from timing that a hash preimage would not need.
pub fn hash_api_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A new webhook signing secret: `whsec_` and 32 bytes from the operating system's
/// generator, in hex.
pub fn new_webhook_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("whsec_{}", hex::encode(bytes))
}

/// Whether a header value even looks like a key; saves a database round trip on garbage.
pub fn looks_like_api_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Argon2's working memory, kept by a hashing thread between hashes (`src/passwords.rs`),
/// so that a hash neither allocates nor faults in ~19 MiB of fresh pages.
pub type PasswordMemory = Vec<argon2::Block>;

/// Stored hashes asking for more than this (64 MiB) are computed in memory of their own,
/// which is freed afterwards, instead of growing a thread's kept memory.
const MAX_KEPT_BLOCKS: usize = 64 * 1024;

/// Argon2id with the crate's default (OWASP-recommended) parameters. CPU-heavy by design:
/// callers run it on the password pool.
pub fn hash_password(password: &str, memory: &mut PasswordMemory) -> Result<String, DomainError> {
    use argon2::password_hash::{rand_core::OsRng, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    let argon = argon2::Argon2::default();
    let output = argon2_output(&argon, password, salt.as_salt(), memory)
        .map_err(|e| DomainError(format!("cannot hash password: {e}")))?;
    let params = argon2::password_hash::ParamsString::try_from(argon.params())
        .map_err(|e| DomainError(format!("cannot hash password: {e}")))?;
    let phc = argon2::password_hash::PasswordHash {
        algorithm: argon2::Algorithm::Argon2id.ident(),
        version: Some(argon2::Version::V0x13.into()),
        params,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches a stored PHC string (any Argon2 variant, version and
/// parameters it names); false for anything that does not parse.
pub fn verify_password(password: &str, phc: &str, memory: &mut PasswordMemory) -> bool {
    use argon2::password_hash::PasswordHash;
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(argon2::Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = argon2::Params::try_from(&parsed) else {
        return false;
    };
    let argon = argon2::Argon2::new(algorithm, version, params);
    match argon2_output(&argon, password, salt, memory) {
        // `Output`'s equality is constant-time.
        Ok(computed) => computed == expected,
        Err(_) => false,
    }
}

fn argon2_output(
    argon: &argon2::Argon2<'_>,
    password: &str,
    salt: argon2::password_hash::Salt<'_>,
    memory: &mut PasswordMemory,
) -> argon2::password_hash::Result<argon2::password_hash::Output> {
    let mut salt_buf = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buf)?;
    let params = argon.params();
    let len = params
        .output_len()
        .unwrap_or(argon2::Params::DEFAULT_OUTPUT_LEN);
    let blocks = params.block_count();
    let mut own = Vec::new();
    let memory = if blocks <= MAX_KEPT_BLOCKS {
        if memory.len() < blocks {
            memory.resize(blocks, argon2::Block::default());
        }
        memory
    } else {
        own.resize(blocks, argon2::Block::default());
        &mut own
    };
    // Every block is written before it is read on the first pass, so memory left over
    // from an earlier hash needs no clearing.
    argon2::password_hash::Output::init_with(len, |out| {
        argon
            .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut memory[..blocks])
            .map_err(Into::into)
    })
}

/// Passwords for protected links: 1-256 characters.
pub fn parse_password(p: &str) -> Result<&str, DomainError> {
    if p.is_empty() {
        Err(DomainError(
            "Password required for protected links".to_string(),
        ))
    } else if p.chars().count() > 256 {
        Err(DomainError(
            "password must be at most 256 characters".to_string(),
        ))
    } else {
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_code_accepts_the_alphabet_within_length() {
        assert!(ShortCode::parse("abc").is_ok());
        assert!(ShortCode::parse("aB3_x9Qz-").is_ok());
        assert!(ShortCode::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn short_code_rejects_bad_length_or_characters() {
        for bad in [
            "ab",
            "",
            "has space",
            "slash/x",
            "dot.x",
            "ümlaut",
            &"a".repeat(65),
        ] {
            assert!(ShortCode::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_codes_are_eight_characters_of_the_alphabet() {
        for _ in 0..100 {
            let c = ShortCode::generate();
            assert_eq!(c.as_str().len(), 8);
            assert!(ShortCode::parse(c.as_str()).is_ok());
        }
    }

    #[test]
    fn target_url_requires_absolute_http_or_https() {
        assert!(TargetUrl::parse("https://example.com/page?q=1").is_ok());
        assert!(TargetUrl::parse("http://127.0.0.1:8080/").is_ok());
        for bad in [
            "",
            "example.com",
            "ftp://x.example",
            "javascript:alert(1)",
            "https://",
            "http://a b.example",
        ] {
            assert!(TargetUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn target_url_is_stored_in_its_normalised_ascii_form() {
        for (given, stored) in [
            ("http://bücher.invalid/", "http://xn--bcher-kva.invalid/"),
            (
                "https://example.com/straße?q=é#ü",
                "https://example.com/stra%C3%9Fe?q=%C3%A9#%C3%BC",
            ),
            ("HTTPS://Example.COM", "https://example.com/"),
            ("https://example.com:443/a/../b", "https://example.com/b"),
            (
                "https://example.com/page?q=1",
                "https://example.com/page?q=1",
            ),
        ] {
            let url = TargetUrl::parse(given).unwrap_or_else(|e| panic!("{given}: {e}"));
            assert_eq!(url.as_str(), stored, "{given}");
            assert!(url.as_str().is_ascii());
        }
    }

    #[test]
    fn target_url_refuses_what_only_parses_by_repair() {
        for bad in [
            "http:/127.0.0.1",
            "http:\\\\127.0.0.1\\x",
            "https:example.com",
            "http:///example.com",
            "https://example.com/a\\b",
            "http://exa\tmple.com/",
        ] {
            assert!(TargetUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn target_url_enforces_the_length_cap() {
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(TargetUrl::parse(&long).is_err());
        let ok = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN - 20));
        assert!(TargetUrl::parse(&ok).is_ok());
    }

    #[test]
    fn max_clicks_per_min_range_is_enforced() {
        assert!(parse_max_clicks_per_min(0).is_err());
        assert!(parse_max_clicks_per_min(1_000_001).is_err());
        assert_eq!(parse_max_clicks_per_min(1).ok(), Some(1));
        assert_eq!(parse_max_clicks_per_min(1_000_000).ok(), Some(1_000_000));
    }

    #[test]
    fn api_keys_are_64_hex_and_hash_deterministically() {
        let k = ApiKeySecret::generate();
        assert!(looks_like_api_key(k.expose()));
        assert_eq!(k.hash(), hash_api_key(k.expose()));
        assert_eq!(k.prefix().len(), 10);
        assert!(!looks_like_api_key("xyz"));
    }

    #[test]
    fn password_hash_verifies_only_the_right_password() {
        let mut memory = PasswordMemory::new();
        let h = hash_password("s3cret", &mut memory).expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("s3cret", &h, &mut memory));
        assert!(!verify_password("wrong", &h, &mut memory));
        assert!(!verify_password("s3cret", "not a hash", &mut memory));
    }

    /// Hashes made with reused (dirty) memory are the crate's own, both ways: hashes stored
    /// before memory was kept still verify, and ours verify with the crate's verifier.
    #[test]
    fn kept_memory_hashes_exactly_as_the_argon2_crate_does() {
        use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
        let mut memory = PasswordMemory::new();
        let ours = hash_password("first", &mut memory).expect("hash");
        let ours_again = hash_password("second", &mut memory).expect("hash with dirty memory");
        let parsed = PasswordHash::new(&ours_again).expect("phc");
        assert!(argon2::Argon2::default()
            .verify_password(b"second", &parsed)
            .is_ok());
        assert!(argon2::Argon2::default()
            .verify_password(b"first", &parsed)
            .is_err());
        assert!(verify_password("first", &ours, &mut memory));
        let salt = SaltString::encode_b64(b"sixteen byte slt").expect("salt");
        let crate_made = argon2::Argon2::default()
            .hash_password(b"third", &salt)
            .expect("hash")
            .to_string();
        assert!(verify_password("third", &crate_made, &mut memory));
        assert!(!verify_password("thirds", &crate_made, &mut memory));
        // Other variants and cheaper parameters named by a stored hash are honoured.
        let params = argon2::Params::new(1024, 1, 1, None).expect("params");
        let argon2i =
            argon2::Argon2::new(argon2::Algorithm::Argon2i, argon2::Version::V0x10, params);
        let other = argon2i
            .hash_password(b"fourth", &salt)
            .expect("hash")
            .to_string();
        assert!(verify_password("fourth", &other, &mut memory));
        assert!(!verify_password("fifth", &other, &mut memory));
    }
}

/// What the redirect path needs to know about a link; the value of every link cache layer.
/// Deliberately excludes the password hash and anything the redirect does not use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RedirectTarget {
    pub link_id: uuid::Uuid,
    pub owner_key_id: uuid::Uuid,
    pub code: String,
    pub url: String,
    pub is_protected: bool,
    /// Unix milliseconds; `None` for links that never expire.
    pub expires_at_ms: Option<i64>,
    pub is_rate_limited: bool,
    pub max_clicks_per_min: u32,
    /// 301, 302, 307 or 308. (Entries cached before 0.2 have none: 302.)
    #[serde(default = "found_status")]
    pub redirect_type: u16,
    /// Add the request's query to the destination ([`crate::rules::forward_query`]).
    #[serde(default)]
    pub forward_query: bool,
    /// Tried in order on every visit ([`crate::rules::first_match`]); empty for most links.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<crate::rules::RedirectRule>,
    /// `url` as a `Location` header value, built by the first redirect and shared by every
    /// later one (a cached target lives in an `Arc`): no validation or copy per request.
    #[serde(skip)]
    pub location: LocationHeader,
}

fn found_status() -> u16 {
    302
}

impl RedirectTarget {
    /// Whether every visit gets the same answer: no rules, no query forwarding, so the
    /// prebuilt `Location` serves.
    pub fn is_plain(&self) -> bool {
        self.rules.is_empty() && !self.forward_query
    }

    pub fn is_expired_at(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|e| e <= now_ms)
    }

    /// `url` as a `Location` header value; `None` if it cannot be one (never for a URL that
    /// passed validation and [`location_of`], but a cache holds what it was given).
    pub fn location(&self) -> Option<&http::HeaderValue> {
        self.location
            .0
            .get_or_init(|| http::HeaderValue::from_str(&self.url).ok())
            .as_ref()
    }
}

/// A lazily built header value that is derived from the other fields, so it takes no part in
/// comparisons, debugging output or serialisation.
#[derive(Clone, Default)]
pub struct LocationHeader(std::sync::OnceLock<Option<http::HeaderValue>>);

impl PartialEq for LocationHeader {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for LocationHeader {}

impl std::fmt::Debug for LocationHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocationHeader")
    }
}
