//! A link's redirect behaviour beyond "302 to originalUrl" (API 0.2): redirect rules, query
//! forwarding, the redirect status, and tags. Pure: parsed and validated from the API's JSON
//! (every error names its field), stored as JSON in `links.redirect_rules`, cached with the
//! link ([`crate::domain::RedirectTarget`]), and evaluated on the redirect path against
//! what the request says ([`Visit`]) without any I/O beyond an optional GeoIP lookup.
//!
//! Rules are tried in order; the first whose conditions all hold gives the URL. A link
//! without rules costs the redirect one emptiness check.

use std::borrow::Cow;
use std::cell::OnceCell;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::TargetUrl;

pub const MAX_RULES: usize = 20;
pub const MAX_CONDITIONS: usize = 10;
pub const MAX_TAGS: usize = 10;
const MAX_TAG_LEN: usize = 32;
const MAX_QUERY_KEY: usize = 128;
const MAX_QUERY_VALUE: usize = 512;

/// An invalid field: the message names it (`redirectRules[2].conditions[0].value …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

fn err(msg: impl Into<String>) -> RuleError {
    RuleError(msg.into())
}

/// `{conditions: [{type, value}], url}`: the wire form, the stored form and the cached form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedirectRule {
    pub conditions: Vec<Condition>,
    pub url: String,
}

/// One condition, `{"type": "device", "value": "mobile"}` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum Condition {
    Device(Device),
    /// ISO 3166-1 alpha-2, upper case.
    Country(String),
    /// A primary language subtag, lower case.
    Language(String),
    /// `key=value`: that pair is in the request's query (compared after percent-decoding).
    Query(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// A phone.
    Mobile,
    Tablet,
    Desktop,
    /// iPhone, iPad or iPod.
    Ios,
    Android,
}

const DEVICES: &str = "mobile, tablet, desktop, ios, android";

impl Device {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "mobile" => Self::Mobile,
            "tablet" => Self::Tablet,
            "desktop" => Self::Desktop,
            "ios" => Self::Ios,
            "android" => Self::Android,
            _ => return None,
        })
    }
}

/// The HTTP status of a link's redirect.
pub fn parse_redirect_type(v: &Value) -> Result<u16, RuleError> {
    match v.as_u64() {
        Some(n @ (301 | 302 | 307 | 308)) => Ok(n as u16),
        _ => Err(err("redirectType must be one of 301, 302, 307, 308")),
    }
}

/// Up to 10 tags of 1–32 characters of `[a-z0-9_-]` (upper case is lowered); duplicates
/// (after lowering) are dropped, the first position kept.
pub fn parse_tags(v: &Value) -> Result<Vec<String>, RuleError> {
    let Some(items) = v.as_array() else {
        return Err(err("tags must be an array of strings"));
    };
    if items.len() > MAX_TAGS {
        return Err(err(format!("tags must have at most {MAX_TAGS} entries")));
    }
    let mut tags: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let tag = parse_tag(item.as_str().unwrap_or("\0")).map_err(|e| {
            err(format!(
                "tags[{i}] {}",
                if item.is_string() {
                    e.0
                } else {
                    "must be a string".into()
                }
            ))
        })?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Ok(tags)
}

/// One tag (also the list's `tag=` filter).
pub fn parse_tag(s: &str) -> Result<String, RuleError> {
    let tag = s.to_ascii_lowercase();
    if tag.is_empty()
        || tag.len() > MAX_TAG_LEN
        || !tag
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(err(format!(
            "must be 1-{MAX_TAG_LEN} characters of a-z, 0-9, _ and -"
        )));
    }
    Ok(tag)
}

/// `redirectRules`: validated and normalised (country upper case, language lower case,
/// every `url` normalised as `originalUrl` is).
pub fn parse_rules(v: &Value) -> Result<Vec<RedirectRule>, RuleError> {
    let Some(items) = v.as_array() else {
        return Err(err("redirectRules must be an array"));
    };
    if items.len() > MAX_RULES {
        return Err(err(format!(
            "redirectRules must have at most {MAX_RULES} rules"
        )));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, rule)| parse_rule(rule, &format!("redirectRules[{i}]")))
        .collect()
}

fn only_fields(
    obj: &serde_json::Map<String, Value>,
    at: &str,
    allowed: &[&str],
) -> Result<(), RuleError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(err(format!(
            "{at} has an unknown field {k:?} (allowed: {})",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn parse_rule(v: &Value, at: &str) -> Result<RedirectRule, RuleError> {
    let Some(obj) = v.as_object() else {
        return Err(err(format!("{at} must be an object {{conditions, url}}")));
    };
    only_fields(obj, at, &["conditions", "url"])?;
    let url = match obj.get("url") {
        Some(Value::String(u)) => TargetUrl::parse(u)
            .map_err(|e| err(format!("{at}.url: {e}")))?
            .into_string(),
        _ => {
            return Err(err(format!(
                "{at}.url is required (an absolute http(s) URL)"
            )))
        }
    };
    let Some(conditions) = obj.get("conditions").and_then(Value::as_array) else {
        return Err(err(format!("{at}.conditions is required (an array)")));
    };
    if conditions.is_empty() || conditions.len() > MAX_CONDITIONS {
        return Err(err(format!(
            "{at}.conditions must have 1-{MAX_CONDITIONS} conditions"
        )));
    }
    let conditions = conditions
        .iter()
        .enumerate()
        .map(|(j, c)| parse_condition(c, &format!("{at}.conditions[{j}]")))
        .collect::<Result<_, _>>()?;
    Ok(RedirectRule { conditions, url })
}

fn parse_condition(v: &Value, at: &str) -> Result<Condition, RuleError> {
    let Some(obj) = v.as_object() else {
        return Err(err(format!("{at} must be an object {{type, value}}")));
    };
    only_fields(obj, at, &["type", "value"])?;
    let Some(value) = obj.get("value").and_then(Value::as_str) else {
        return Err(err(format!("{at}.value is required (a string)")));
    };
    if value.contains('\0') {
        return Err(err(format!("{at}.value must not contain NUL")));
    }
    match obj.get("type").and_then(Value::as_str) {
        Some("device") => Device::parse(value)
            .map(Condition::Device)
            .ok_or_else(|| err(format!("{at}.value must be one of {DEVICES} for type device"))),
        Some("country") => {
            if value.len() == 2 && value.bytes().all(|b| b.is_ascii_alphabetic()) {
                Ok(Condition::Country(value.to_ascii_uppercase()))
            } else {
                Err(err(format!(
                    "{at}.value must be a two-letter ISO 3166-1 country code for type country"
                )))
            }
        }
        Some("language") => {
            if (2..=3).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphabetic()) {
                Ok(Condition::Language(value.to_ascii_lowercase()))
            } else {
                Err(err(format!(
                    "{at}.value must be a primary language subtag of 2-3 letters (e.g. en) for type language"
                )))
            }
        }
        Some("query") => match value.split_once('=') {
            Some((k, val))
                if !k.is_empty()
                    && k.chars().count() <= MAX_QUERY_KEY
                    && val.chars().count() <= MAX_QUERY_VALUE
                    && !value.contains('&') =>
            {
                Ok(Condition::Query(value.to_string()))
            }
            _ => Err(err(format!(
                "{at}.value must be key=value (a key of 1-{MAX_QUERY_KEY} characters, a value of at most {MAX_QUERY_VALUE}, no &) for type query"
            ))),
        },
        _ => Err(err(format!(
            "{at}.type must be one of device, country, language, query"
        ))),
    }
}

/// What a visit says about itself, read lazily: a rule set that never asks for the device
/// never parses the user agent, and the GeoIP lookup runs only for a country condition.
pub struct Visit<'a> {
    user_agent: &'a str,
    accept_language: Option<&'a str>,
    query: Option<&'a str>,
    country_of: &'a dyn Fn() -> Option<String>,
    device: OnceCell<(&'static str, OsFamily)>,
    country: OnceCell<Option<String>>,
    params: OnceCell<Vec<(Cow<'a, str>, Cow<'a, str>)>>,
}

/// The operating system family a device condition can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OsFamily {
    Ios,
    Android,
    Other,
}

impl<'a> Visit<'a> {
    /// `country_of` answers the visitor's country (header or GeoIP), called at most once.
    pub fn new(
        user_agent: &'a str,
        accept_language: Option<&'a str>,
        query: Option<&'a str>,
        country_of: &'a dyn Fn() -> Option<String>,
    ) -> Self {
        Self {
            user_agent,
            accept_language,
            query,
            country_of,
            device: OnceCell::new(),
            country: OnceCell::new(),
            params: OnceCell::new(),
        }
    }

    fn holds(&self, c: &Condition) -> bool {
        match c {
            Condition::Device(d) => {
                let (class, os) = *self
                    .device
                    .get_or_init(|| crate::clicks::enrich::device_of(self.user_agent));
                match d {
                    Device::Mobile => class == "mobile",
                    Device::Tablet => class == "tablet",
                    Device::Desktop => class == "desktop",
                    Device::Ios => os == OsFamily::Ios,
                    Device::Android => os == OsFamily::Android,
                }
            }
            Condition::Country(code) => self
                .country
                .get_or_init(|| (self.country_of)())
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case(code)),
            Condition::Language(lang) => self
                .accept_language
                .is_some_and(|header| accepts_language(header, lang)),
            Condition::Query(pair) => {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                self.params
                    .get_or_init(|| match self.query {
                        Some(q) => url::form_urlencoded::parse(q.as_bytes()).collect(),
                        None => Vec::new(),
                    })
                    .iter()
                    .any(|(k, v)| k == key && v == value)
            }
        }
    }
}

/// The first rule whose conditions all hold.
pub fn first_match<'r>(rules: &'r [RedirectRule], visit: &Visit<'_>) -> Option<&'r RedirectRule> {
    rules
        .iter()
        .find(|rule| rule.conditions.iter().all(|c| visit.holds(c)))
}

/// Whether `Accept-Language` lists `lang` as a primary subtag with q > 0.
fn accepts_language(header: &str, lang: &str) -> bool {
    header.split(',').any(|item| {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or("").trim();
        let primary = tag.split('-').next().unwrap_or("");
        if !primary.eq_ignore_ascii_case(lang) {
            return false;
        }
        // q defaults to 1; q=0 means "not acceptable". An unparsable q is treated as 1.
        !parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .or_else(|| p.strip_prefix("Q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        })
    })
}

/// `destination` with the request's query added: the destination's parameters first, minus
/// any the request also has, then the request's (so a parameter in both takes the request's
/// value). The fragment stays last. Parameters are compared after percent-decoding and
/// written as they came.
pub fn forward_query(destination: &str, request_query: &str) -> String {
    if request_query.is_empty() {
        return destination.to_string();
    }
    let (before_fragment, fragment) = match destination.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (destination, None),
    };
    let (base, own_query) = match before_fragment.split_once('?') {
        Some((b, q)) => (b, q),
        None => (before_fragment, ""),
    };
    let decoded_key = |pair: &str| -> String {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        url::form_urlencoded::parse(key.as_bytes())
            .next()
            .map(|(k, _)| k.into_owned())
            .unwrap_or_default()
    };
    let request_keys: Vec<String> = request_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(decoded_key)
        .collect();
    let mut out = String::with_capacity(destination.len() + request_query.len() + 1);
    out.push_str(base);
    let mut sep = '?';
    for pair in own_query
        .split('&')
        .filter(|p| !p.is_empty() && !request_keys.contains(&decoded_key(p)))
        .chain(request_query.split('&').filter(|p| !p.is_empty()))
    {
        out.push(sep);
        out.push_str(pair);
        sep = '&';
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
    const IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1";
    const ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";
    const DESKTOP: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

    fn rules(v: Value) -> Vec<RedirectRule> {
        parse_rules(&v).expect("valid rules")
    }

    fn no_country() -> Option<String> {
        None
    }

    #[test]
    fn rules_round_trip_in_the_wire_form() {
        let r = rules(json!([{"conditions": [{"type": "device", "value": "ios"},
            {"type": "country", "value": "de"}], "url": "https://example.com/de-ios"}]));
        assert_eq!(
            serde_json::to_value(&r).expect("json"),
            json!([{"conditions": [{"type": "device", "value": "ios"},
                {"type": "country", "value": "DE"}], "url": "https://example.com/de-ios"}])
        );
        let back: Vec<RedirectRule> =
            serde_json::from_value(serde_json::to_value(&r).expect("json")).expect("parse");
        assert_eq!(back, r);
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases = [
            (json!({}), "redirectRules must be an array"),
            (json!([1]), "redirectRules[0] must be an object"),
            (
                json!([{"conditions": [], "url": "https://a.example/"}]),
                "redirectRules[0].conditions must have 1-10",
            ),
            (
                json!([{"conditions": [{"type": "device", "value": "phone"}], "url": "https://a.example/"}]),
                "redirectRules[0].conditions[0].value must be one of mobile",
            ),
            (
                json!([{"conditions": [{"type": "planet", "value": "mars"}], "url": "https://a.example/"}]),
                "redirectRules[0].conditions[0].type must be one of",
            ),
            (
                json!([{"conditions": [{"type": "country", "value": "DEU"}], "url": "https://a.example/"}]),
                "two-letter",
            ),
            (
                json!([{"conditions": [{"type": "language", "value": "en-US"}], "url": "https://a.example/"}]),
                "primary language subtag",
            ),
            (
                json!([{"conditions": [{"type": "query", "value": "novalue"}], "url": "https://a.example/"}]),
                "key=value",
            ),
            (
                json!([{"conditions": [{"type": "query", "value": 3}], "url": "https://a.example/"}]),
                "conditions[0].value is required",
            ),
            (
                json!([{"conditions": [{"type": "device", "value": "ios"}], "url": "ftp://a.example/"}]),
                "redirectRules[0].url:",
            ),
            (
                json!([{"conditions": [{"type": "device", "value": "ios"}]}]),
                "redirectRules[0].url is required",
            ),
            (
                json!([{"conditions": [{"type": "device", "value": "ios"}], "url": "https://a.example/", "when": 1}]),
                "unknown field \"when\"",
            ),
        ];
        for (input, expected) in cases {
            let e = parse_rules(&input).expect_err("refused");
            assert!(e.0.contains(expected), "{input}: {e}");
        }
        let many: Vec<Value> = (0..21)
            .map(|_| json!({"conditions": [{"type": "device", "value": "ios"}], "url": "https://a.example/"}))
            .collect();
        assert!(parse_rules(&Value::Array(many))
            .expect_err("21")
            .0
            .contains("at most 20"));
    }

    #[test]
    fn tags_are_lowered_deduplicated_and_bounded() {
        assert_eq!(
            parse_tags(&json!(["Promo", "promo", "q4_2026", "a-b"])).expect("tags"),
            vec!["promo", "q4_2026", "a-b"]
        );
        for bad in [
            json!("promo"),
            json!([""]),
            json!(["has space"]),
            json!([7]),
            json!(["x".repeat(33)]),
        ] {
            assert!(parse_tags(&bad).is_err(), "{bad}");
        }
        let eleven: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
        assert!(parse_tags(&json!(eleven)).is_err());
    }

    #[test]
    fn redirect_types_are_the_four_redirect_statuses() {
        for ok in [301, 302, 307, 308] {
            assert_eq!(parse_redirect_type(&json!(ok)), Ok(ok));
        }
        for bad in [
            json!(300),
            json!(303),
            json!("301"),
            json!(null),
            json!(301.5),
        ] {
            assert!(parse_redirect_type(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_first_rule_whose_conditions_all_hold_wins() {
        let r = rules(json!([
            {"conditions": [{"type": "device", "value": "ios"}, {"type": "language", "value": "de"}], "url": "https://a.example/ios-de"},
            {"conditions": [{"type": "device", "value": "mobile"}], "url": "https://a.example/mobile"},
            {"conditions": [{"type": "device", "value": "ios"}], "url": "https://a.example/ios"},
            {"conditions": [{"type": "device", "value": "tablet"}], "url": "https://a.example/tablet"},
            {"conditions": [{"type": "query", "value": "src=mail list"}], "url": "https://a.example/mail"},
            {"conditions": [{"type": "country", "value": "FR"}], "url": "https://a.example/fr"},
        ]));
        let url = |ua: &str,
                   lang: Option<&str>,
                   query: Option<&str>,
                   country: &dyn Fn() -> Option<String>| {
            first_match(&r, &Visit::new(ua, lang, query, country)).map(|r| r.url.clone())
        };
        assert_eq!(
            url(IPHONE, Some("de-DE,en;q=0.5"), None, &no_country).as_deref(),
            Some("https://a.example/ios-de")
        );
        assert_eq!(
            url(IPHONE, Some("de;q=0"), None, &no_country).as_deref(),
            Some("https://a.example/mobile")
        );
        assert_eq!(
            url(ANDROID, None, None, &no_country).as_deref(),
            Some("https://a.example/mobile")
        );
        assert_eq!(
            url(IPAD, None, None, &no_country).as_deref(),
            Some("https://a.example/ios")
        );
        assert_eq!(
            url(DESKTOP, None, Some("a=1&src=mail%20list"), &no_country).as_deref(),
            Some("https://a.example/mail")
        );
        assert_eq!(url(DESKTOP, None, Some("src=mail"), &no_country), None);
        let france = || Some("FR".to_string());
        assert_eq!(
            url(DESKTOP, None, None, &france).as_deref(),
            Some("https://a.example/fr")
        );
        assert_eq!(url(DESKTOP, None, None, &no_country), None);
    }

    #[test]
    fn the_country_is_looked_up_only_for_a_country_condition() {
        let r = rules(
            json!([{"conditions": [{"type": "device", "value": "android"}], "url": "https://a.example/"}]),
        );
        let calls = std::cell::Cell::new(0);
        let country = || {
            calls.set(calls.get() + 1);
            Some("DE".to_string())
        };
        assert!(first_match(&r, &Visit::new(ANDROID, None, None, &country)).is_some());
        assert_eq!(calls.get(), 0);
    }

    #[test]
    fn the_request_query_is_merged_and_wins_on_a_shared_key() {
        assert_eq!(
            forward_query("https://a.example/p", "x=1"),
            "https://a.example/p?x=1"
        );
        assert_eq!(
            forward_query("https://a.example/p?a=1&b=2", "b=3&c=4"),
            "https://a.example/p?a=1&b=3&c=4"
        );
        assert_eq!(
            forward_query("https://a.example/p?a=1#top", "a=9"),
            "https://a.example/p?a=9#top"
        );
        assert_eq!(
            forward_query("https://a.example/p?utm%5Fsource=x", "utm_source=y"),
            "https://a.example/p?utm_source=y"
        );
        assert_eq!(
            forward_query("https://a.example/p?a=1", ""),
            "https://a.example/p?a=1"
        );
        assert_eq!(
            forward_query("https://a.example/p?", "k"),
            "https://a.example/p?k"
        );
    }

    #[test]
    fn accept_language_matches_primary_subtags_with_positive_q() {
        assert!(accepts_language("en-US,en;q=0.9", "en"));
        assert!(accepts_language("fr;q=0.1, de", "de"));
        assert!(!accepts_language("fr, de;q=0", "de"));
        assert!(!accepts_language("*", "en"));
        assert!(!accepts_language("english", "en"));
    }
}
