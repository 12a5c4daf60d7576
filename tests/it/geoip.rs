//! GeoIP against a real database: the CC0 ip-location-db country database (its
//! `country_code` layout), for region analytics (see also `pipeline.rs`) and the country
//! conditions of redirect rules.

use serde_json::json;

use boltlink::clicks::enrich::Geo;

use crate::support::{code_of, real_geoip_db, TestApp, TARGET};

#[test]
fn the_ip_location_db_layout_is_read() {
    let geo = Geo::open(std::path::Path::new(&real_geoip_db())).expect("open");
    for (ip, country) in [
        ("8.8.8.8", Some("US")),
        ("193.0.6.139", Some("NL")),
        ("133.11.0.1", Some("JP")),
        ("81.169.145.1", Some("DE")),
        ("2001:67c:2e8:22::c100:68b", Some("NL")),
        ("10.1.2.3", None),
        ("127.0.0.1", None),
    ] {
        assert_eq!(
            geo.country(ip.parse().expect("ip")).as_deref(),
            country,
            "{ip}"
        );
    }
}

#[tokio::test]
async fn country_rules_use_the_database_when_no_header_names_the_country() {
    let db = real_geoip_db();
    let app = TestApp::builder()
        .set("GEOIP_DB", &db)
        .set("TRUST_PROXY", "1")
        .start()
        .await;
    let key = app.key(false).await;
    let link = app
        .create_link(
            &key,
            json!({"redirectRules": [
                {"conditions": [{"type": "country", "value": "DE"}], "url": "https://example.com/de"},
                {"conditions": [{"type": "country", "value": "JP"}], "url": "https://example.com/jp"},
            ]}),
        )
        .await;
    let path = format!("/{}", code_of(&link));
    for (case, xff, header, expected) in [
        (
            "German address",
            "81.169.145.1",
            None,
            "https://example.com/de",
        ),
        (
            "Japanese address",
            "133.11.0.1",
            None,
            "https://example.com/jp",
        ),
        ("Dutch address", "193.0.6.139", None, TARGET),
        ("private address", "10.1.2.3", None, TARGET),
        (
            "the header wins",
            "81.169.145.1",
            Some("JP"),
            "https://example.com/jp",
        ),
    ] {
        let mut req = app.get(&path).header("x-forwarded-for", xff);
        if let Some(country) = header {
            req = req.header("cf-ipcountry", country);
        }
        let resp = req.send().await.expect("visit");
        assert_eq!(resp.status(), 302, "{case}");
        assert_eq!(resp.headers()["location"], expected, "{case}");
    }
}
