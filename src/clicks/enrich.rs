//! Enrichment of click events (pure apart from the optional GeoIP lookup): device class,
//! browser and OS from the user agent (woothee), referrer host, bot flag, and the region
//! from `cf-ipcountry` or a MaxMind-format country database.
//!
//! The worker and the aggregator both enrich, with this one function, so the raw events and
//! the rollups always agree on a click's region, device class and bot flag.

use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;

use super::event::{ClickEvent, ClickKind};

pub const UNKNOWN_REGION: &str = "UNKNOWN";

/// Substrings (lowercase) of user agents of automated clients woothee does not call crawlers.
const BOT_MARKERS: &[&str] = &[
    "bot",
    "crawl",
    "spider",
    "slurp",
    "headless",
    "facebookexternalhit",
    "preview",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "go-http-client",
    "okhttp",
    "libwww",
    "scrapy",
    "httpclient",
    "java/",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enriched {
    pub event: ClickEvent,
    pub region: String,
    /// `desktop`, `mobile`, `tablet`, `bot` or `other`.
    pub device_class: &'static str,
    pub browser: String,
    pub os: String,
    pub referrer_host: Option<String>,
    pub is_bot: bool,
}

impl Enriched {
    /// Whether this event adds to `links.clicks` and the rollups' `clicks`.
    pub fn counts_as_click(&self, count_bots: bool) -> bool {
        self.event.kind == ClickKind::Click && (count_bots || !self.is_bot)
    }

    /// Whether it adds to the rollups' `gated` visits.
    pub fn counts_as_gated(&self, count_bots: bool) -> bool {
        self.event.kind == ClickKind::Gated && (count_bots || !self.is_bot)
    }
}

/// A country database; lookups that fail for any reason answer `None`.
pub struct Geo {
    reader: maxminddb::Reader<Vec<u8>>,
}

impl Geo {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let reader = maxminddb::Reader::open_readfile(path)
            .map_err(|e| anyhow::anyhow!("cannot open GEOIP_DB {}: {e}", path.display()))?;
        Ok(Self { reader })
    }

    /// The country of `ip`, from either layout a country database comes in: MaxMind's
    /// GeoIP2/GeoLite2 (`country.iso_code`, else `registered_country.iso_code`) or the
    /// CC0 ip-location-db databases (`country_code`). Only two-letter codes are answered.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        let result = self.reader.lookup(ip).ok()?;
        let record: CountryRecord<'_> = result.decode().ok()??;
        record
            .country
            .and_then(|c| c.iso_code)
            .or(record.registered_country.and_then(|c| c.iso_code))
            .or(record.country_code)
            .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
            .map(str::to_ascii_uppercase)
    }
}

/// The fields of a country record this reads, in both layouts; others are skipped.
#[derive(serde::Deserialize)]
struct CountryRecord<'a> {
    #[serde(borrow, default)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<IsoCode<'a>>,
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
}

#[derive(serde::Deserialize)]
struct IsoCode<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

fn parser() -> &'static woothee::parser::Parser {
    static PARSER: OnceLock<woothee::parser::Parser> = OnceLock::new();
    PARSER.get_or_init(woothee::parser::Parser::new)
}

/// What a user agent says about the client: the costly part of enrichment.
#[derive(Debug, Clone)]
struct AgentInfo {
    device_class: &'static str,
    browser: String,
    os: String,
    is_bot: bool,
}

fn classify(ua: &str) -> AgentInfo {
    let parsed = parser().parse(ua);
    let (category, browser, os) = match &parsed {
        Some(r) => (r.category, r.name, r.os),
        None => ("UNKNOWN", "UNKNOWN", "UNKNOWN"),
    };
    let lower = ua.to_ascii_lowercase();
    let is_bot = ua.trim().is_empty()
        || category == "crawler"
        || BOT_MARKERS.iter().any(|m| lower.contains(m));
    let device_class = if is_bot {
        "bot"
    } else {
        match category {
            "pc" => "desktop",
            "smartphone" | "mobilephone" if lower.contains("ipad") || lower.contains("tablet") => {
                "tablet"
            }
            "smartphone" | "mobilephone" => "mobile",
            _ => "other",
        }
    };
    AgentInfo {
        device_class,
        browser: browser.to_string(),
        os: os.to_string(),
        is_bot,
    }
}

/// User agents classified so far on this thread. Real traffic repeats a few hundred agents,
/// and parsing one costs far more than a lookup; the map is emptied when it reaches this size,
/// so a flood of unique agents costs memory no more than this.
const AGENT_CACHE_SIZE: usize = 4096;

fn classify_cached(ua: &str) -> AgentInfo {
    use std::cell::RefCell;
    use std::collections::HashMap;
    thread_local! {
        static CACHE: RefCell<HashMap<String, AgentInfo>> = RefCell::new(HashMap::new());
    }
    CACHE.with(|cache| {
        if let Some(info) = cache.borrow().get(ua) {
            return info.clone();
        }
        let info = classify(ua);
        let mut cache = cache.borrow_mut();
        if cache.len() >= AGENT_CACHE_SIZE {
            cache.clear();
        }
        cache.insert(ua.to_string(), info.clone());
        info
    })
}

/// The device class (as in [`Enriched::device_class`]) and OS family of a user agent, for
/// the device conditions of redirect rules ([`crate::rules`]); cached per thread like the
/// rest of enrichment.
pub fn device_of(ua: &str) -> (&'static str, crate::rules::OsFamily) {
    use crate::rules::OsFamily;
    let info = classify_cached(ua);
    let os = match info.os.as_str() {
        "iPhone" | "iPad" | "iPod" | "iOS" => OsFamily::Ios,
        "Android" => OsFamily::Android,
        _ => OsFamily::Other,
    };
    (info.device_class, os)
}

pub fn enrich(event: ClickEvent, geo: Option<&Geo>) -> Enriched {
    let AgentInfo {
        device_class,
        browser,
        os,
        is_bot,
    } = classify_cached(&event.user_agent);
    let region = if event.region != UNKNOWN_REGION && !event.region.is_empty() {
        event.region.clone()
    } else {
        event
            .client_ip
            .and_then(|ip| geo.and_then(|g| g.country(ip)))
            .unwrap_or_else(|| UNKNOWN_REGION.to_string())
    };
    let referrer_host = url::Url::parse(&event.referer)
        .ok()
        .and_then(|u| u.host_str().map(|h| h.to_ascii_lowercase()));
    Enriched {
        region,
        device_class,
        browser,
        os,
        referrer_host,
        is_bot,
        event,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ua: &str, region: &str, referer: &str) -> ClickEvent {
        ClickEvent {
            id: uuid::Uuid::now_v7(),
            link_id: uuid::Uuid::nil(),
            owner_key_id: uuid::Uuid::nil(),
            at_ms: 0,
            region: region.into(),
            user_agent: ua.into(),
            referer: referer.into(),
            latency_us: 100,
            kind: ClickKind::Click,
            client_ip: None,
            rule_url: None,
        }
    }

    const CHROME_DESKTOP: &str =
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
    const IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";

    #[test]
    fn desktop_and_mobile_browsers_get_their_class_browser_and_os() {
        let e = enrich(event(CHROME_DESKTOP, "DE", ""), None);
        assert_eq!(
            (e.device_class, e.browser.as_str(), e.is_bot),
            ("desktop", "Chrome", false)
        );
        assert!(e.os.starts_with("Windows"), "{}", e.os);
        let e = enrich(event(IPHONE, "US", ""), None);
        assert_eq!(e.device_class, "mobile");
        assert_eq!(e.os, "iPhone");
        assert_eq!(enrich(event(IPAD, "US", ""), None).device_class, "tablet");
    }

    #[test]
    fn a_cached_agent_gets_the_same_answer_before_and_after_the_cache_is_emptied() {
        let iphone = event(IPHONE, "US", "");
        let first = enrich(iphone.clone(), None);
        assert_eq!(enrich(iphone.clone(), None), first);
        // More unique agents than the cache holds: it empties and refills, answers unchanged.
        for i in 0..AGENT_CACHE_SIZE + 10 {
            let ua = format!("{CHROME_DESKTOP} build/{i}");
            let e = enrich(event(&ua, "DE", ""), None);
            assert_eq!(
                (e.device_class, e.browser.as_str()),
                ("desktop", "Chrome"),
                "{ua}"
            );
        }
        assert_eq!(enrich(iphone, None), first);
        assert_eq!(
            enrich(event("curl/8.0", "US", ""), None).device_class,
            "bot"
        );
    }

    #[test]
    fn crawlers_scripts_and_empty_agents_are_bots() {
        for ua in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "curl/8.4.0",
            "python-requests/2.31",
            "",
            "facebookexternalhit/1.1",
        ] {
            let e = enrich(event(ua, "US", ""), None);
            assert!(e.is_bot, "{ua}");
            assert_eq!(e.device_class, "bot");
            assert!(!e.counts_as_click(false));
            assert!(e.counts_as_click(true));
        }
    }

    #[test]
    fn region_comes_from_the_header_and_referrer_host_is_extracted() {
        let e = enrich(
            event(CHROME_DESKTOP, "FR", "https://News.Example.com/a?b=c"),
            None,
        );
        assert_eq!(e.region, "FR");
        assert_eq!(e.referrer_host.as_deref(), Some("news.example.com"));
        let e = enrich(event(CHROME_DESKTOP, "UNKNOWN", "not a url"), None);
        assert_eq!(e.region, "UNKNOWN");
        assert_eq!(e.referrer_host, None);
    }

    #[test]
    fn without_a_header_region_the_country_database_answers_from_the_client_address() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/country.mmdb");
        let geo = Geo::open(&path).expect("fixture database");
        let at = |ip: &str, header: &str| {
            let mut e = event(CHROME_DESKTOP, header, "");
            e.client_ip = Some(ip.parse().expect("ip"));
            enrich(e, Some(&geo)).region
        };
        assert_eq!(at("198.51.100.7", "UNKNOWN"), "DE");
        assert_eq!(
            at("203.0.113.9", "UNKNOWN"),
            "JP",
            "registered country as fallback"
        );
        assert_eq!(at("2001:db8::1", ""), "FR");
        assert_eq!(at("192.0.2.1", "UNKNOWN"), "UNKNOWN", "not in the database");
        assert_eq!(at("198.51.100.7", "BR"), "BR", "the header wins");
        let missing = Geo::open(Path::new("/nonexistent/country.mmdb"));
        assert!(missing.is_err());
    }

    #[test]
    fn gated_visits_are_not_clicks() {
        let mut ev = event(CHROME_DESKTOP, "US", "");
        ev.kind = ClickKind::Gated;
        let e = enrich(ev, None);
        assert!(!e.counts_as_click(false));
        assert!(e.counts_as_gated(false));
    }
}
