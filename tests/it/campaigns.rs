//! Campaigns over HTTP: create, list, read, change, delete, assign links, and live totals,
//! all owner-scoped (another key's campaign or link answers 404 as if it did not exist).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::support::{assert_fields, case_error, error_message, id_of, Says, TestApp};

const CAMPAIGN_FIELDS: &[&str] = &[
    "id",
    "name",
    "description",
    "createdAt",
    "totalLinks",
    "totalClicks",
];

fn assert_is_campaign_object(c: &Value) {
    assert_fields(c, CAMPAIGN_FIELDS, "campaign");
}

async fn create_campaign(app: &TestApp, key: &str, body: Value) -> Value {
    let resp = app
        .post_json("/api/campaigns", key, body)
        .send()
        .await
        .expect("create campaign");
    assert_eq!(resp.status(), 201, "create campaign answers 201");
    let c: Value = resp.json().await.expect("json");
    assert_is_campaign_object(&c);
    c
}

fn assign(app: &TestApp, key: &str, campaign_id: &str, link_id: &str) -> reqwest::RequestBuilder {
    app.post_json(
        "/api/campaigns/link",
        key,
        json!({"campaignId": campaign_id, "linkId": link_id}),
    )
}

async fn list_campaigns(app: &TestApp, key: &str) -> Vec<Value> {
    let resp = app
        .get_with_key("/api/campaigns", key)
        .send()
        .await
        .expect("list campaigns");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("array")
}

async fn fetch_campaign(app: &TestApp, key: &str, id: &str) -> Value {
    let c = app.campaigns().fetch(key, id).await;
    assert_is_campaign_object(&c);
    c
}

async fn campaign_row_exists(app: &TestApp, id: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM campaigns WHERE id = $1::uuid)")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .expect("exists query")
}

fn totals(c: &Value) -> (i64, i64) {
    (
        c["totalLinks"].as_i64().expect("totalLinks is a number"),
        c["totalClicks"].as_i64().expect("totalClicks is a number"),
    )
}

#[tokio::test]
async fn create_campaign_answers_201_with_the_campaign_object() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let before = Utc::now() - chrono::Duration::seconds(5);
    let c = create_campaign(
        &app,
        &key,
        json!({"name": "Black Friday", "description": "Deals week"}),
    )
    .await;
    uuid::Uuid::parse_str(&id_of(&c)).expect("id is a UUID");
    assert_eq!(c["name"], "Black Friday");
    assert_eq!(c["description"], "Deals week");
    assert_eq!(totals(&c), (0, 0));
    let created = c["createdAt"].as_str().expect("createdAt is a string");
    assert!(
        created.len() == 24 && created.ends_with('Z'),
        "createdAt {created:?} is RFC 3339 UTC with millis"
    );
    let created = DateTime::parse_from_rfc3339(created)
        .expect("RFC 3339")
        .with_timezone(&Utc);
    assert!(before < created && created < Utc::now() + chrono::Duration::seconds(5));

    let plain = create_campaign(&app, &key, json!({"name": "No description"})).await;
    assert_eq!(plain["description"], Value::Null);
}

#[tokio::test]
async fn campaign_bodies_without_a_required_field_answer_400_naming_it() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let c = create_campaign(&app, &key, json!({"name": "X"})).await;
    let cases = [
        ("/api/campaigns", json!({}), "name"),
        ("/api/campaigns", json!({"name": ""}), "name"),
        ("/api/campaigns", json!({"name": "   "}), "name"),
        ("/api/campaigns", json!({"name": null}), "name"),
        ("/api/campaigns", json!({"description": "no name"}), "name"),
        ("/api/campaigns", json!({"name": 5}), "name"),
        (
            "/api/campaigns/link",
            json!({"campaignId": c["id"]}),
            "linkId",
        ),
        (
            "/api/campaigns/link",
            json!({"linkId": c["id"]}),
            "campaignId",
        ),
        (
            "/api/campaigns/link",
            json!({"campaignId": "nope", "linkId": c["id"]}),
            "campaignId",
        ),
        (
            "/api/campaigns/link",
            json!({"campaignId": c["id"], "linkId": 12}),
            "linkId",
        ),
    ];
    for (path, body, field) in cases {
        let case = format!("POST {path} {body}");
        let resp = app
            .post_json(path, &key, body)
            .send()
            .await
            .expect("request");
        Says::Mentions(field).check(&case, &case_error(&case, resp, 400).await);
    }
    let listed = list_campaigns(&app, &key).await;
    assert_eq!(
        listed.len(),
        1,
        "no refused body created a campaign: {listed:?}"
    );
}

#[tokio::test]
async fn campaigns_are_listed_and_read_by_id_as_created() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let a = create_campaign(&app, &key, json!({"name": "A"})).await;
    let b = create_campaign(&app, &key, json!({"name": "B", "description": "bee"})).await;

    let listed = list_campaigns(&app, &key).await;
    assert_eq!(listed.len(), 2);
    for c in &listed {
        assert_is_campaign_object(c);
    }
    let ids: BTreeSet<String> = listed.iter().map(id_of).collect();
    assert_eq!(ids, BTreeSet::from([id_of(&a), id_of(&b)]));

    // Reading a campaign back gives exactly what creating it answered.
    assert_eq!(fetch_campaign(&app, &key, &id_of(&a)).await, a);
    assert_eq!(fetch_campaign(&app, &key, &id_of(&b)).await, b);
    for c in &listed {
        let created = if id_of(c) == id_of(&a) { &a } else { &b };
        assert_eq!(c, created);
    }
}

#[tokio::test]
async fn patch_campaign_changes_name_and_description() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let c = create_campaign(
        &app,
        &key,
        json!({"name": "Old", "description": "Old desc"}),
    )
    .await;
    let id = id_of(&c);

    let renamed = app
        .campaigns()
        .patch_ok(&key, &id, json!({"name": "New"}))
        .await;
    assert_is_campaign_object(&renamed);
    assert_eq!(renamed["id"], c["id"]);
    assert_eq!(renamed["name"], "New");
    assert_eq!(renamed["description"], "Old desc", "unnamed fields stay");
    assert_eq!(renamed["createdAt"], c["createdAt"]);

    let described = app
        .campaigns()
        .patch_ok(&key, &id, json!({"description": "New desc"}))
        .await;
    assert_eq!(described["name"], "New");
    assert_eq!(described["description"], "New desc");

    let cleared = app
        .campaigns()
        .patch_ok(&key, &id, json!({"description": null}))
        .await;
    assert_eq!(cleared["description"], Value::Null);

    for body in [
        json!({"name": ""}),
        json!({"name": "  "}),
        json!({"name": 7}),
    ] {
        let resp = app
            .campaigns()
            .patch(&key, &id, body.clone())
            .send()
            .await
            .expect("patch");
        let message = error_message(resp, 400).await;
        assert!(message.to_lowercase().contains("name"), "{body}: {message}");
    }
    assert_eq!(fetch_campaign(&app, &key, &id).await, cleared);
}

#[tokio::test]
async fn delete_campaign_answers_success_and_its_links_stay_unassigned() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let c = create_campaign(&app, &key, json!({"name": "Short-lived"})).await;
    let id = id_of(&c);
    let link = app
        .shorten(
            &key,
            json!({"url": "https://example.com/", "customCode": "in-campaign", "campaignId": id}),
        )
        .await;
    assert_eq!(link["campaignId"], id.as_str());

    assert_eq!(
        app.campaigns().delete_ok(&key, &id).await,
        json!({"success": true, "message": "Campaign deleted"})
    );
    assert!(!campaign_row_exists(&app, &id).await);
    let resp = app.campaigns().get(&key, &id).send().await.expect("get");
    assert_eq!(error_message(resp, 404).await, "Campaign not found");
    let resp = app
        .campaigns()
        .delete(&key, &id)
        .send()
        .await
        .expect("delete");
    assert_eq!(error_message(resp, 404).await, "Campaign not found");
    assert!(list_campaigns(&app, &key).await.is_empty());

    let survivor = app.links().fetch(&key, &id_of(&link)).await;
    assert_eq!(survivor["campaignId"], Value::Null);
    assert_eq!(survivor["shortCode"], "in-campaign");
}

#[tokio::test]
async fn assigning_a_link_to_a_campaign_answers_the_updated_link() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let c = create_campaign(&app, &key, json!({"name": "Launch"})).await;
    let link = app
        .shorten(&key, json!({"url": "https://example.com/launch"}))
        .await;
    assert_eq!(link["campaignId"], Value::Null);

    let resp = assign(&app, &key, &id_of(&c), &id_of(&link))
        .send()
        .await
        .expect("assign");
    assert_eq!(resp.status(), 200);
    let assigned: Value = resp.json().await.expect("json");
    assert_eq!(assigned["id"], link["id"]);
    assert_eq!(assigned["campaignId"], c["id"]);
    assert_eq!(assigned["shortCode"], link["shortCode"]);
    assert_eq!(assigned["originalUrl"], link["originalUrl"]);
    assert_eq!(assigned["shortUrl"], link["shortUrl"]);
    assert!(assigned.get("password").is_none());
    assert_eq!(app.links().fetch(&key, &id_of(&link)).await, assigned);

    // Moving it to another campaign works the same way.
    let d = create_campaign(&app, &key, json!({"name": "Relaunch"})).await;
    let resp = assign(&app, &key, &id_of(&d), &id_of(&link))
        .send()
        .await
        .expect("assign");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.expect("json")["campaignId"],
        d["id"]
    );
    assert_eq!(totals(&fetch_campaign(&app, &key, &id_of(&c)).await).0, 0);
    assert_eq!(totals(&fetch_campaign(&app, &key, &id_of(&d)).await).0, 1);
}

#[tokio::test]
async fn campaign_totals_reflect_assigned_links_and_their_clicks() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let c = create_campaign(&app, &key, json!({"name": "Totals"})).await;
    let id = id_of(&c);
    app.shorten(
        &key,
        json!({"url": "https://example.com/1", "customCode": "t-one", "campaignId": id}),
    )
    .await;
    let second = app
        .shorten(
            &key,
            json!({"url": "https://example.com/2", "customCode": "t-two"}),
        )
        .await;
    app.shorten(
        &key,
        json!({"url": "https://example.com/3", "customCode": "t-outside"}),
    )
    .await;
    let resp = assign(&app, &key, &id, &id_of(&second))
        .send()
        .await
        .expect("assign");
    assert_eq!(resp.status(), 200);
    app.set_clicks("t-one", 7).await;
    app.set_clicks("t-two", 35).await;
    app.set_clicks("t-outside", 1_000).await;

    assert_eq!(totals(&fetch_campaign(&app, &key, &id).await), (2, 42));
    let listed = list_campaigns(&app, &key).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(totals(&listed[0]), (2, 42));

    // Unassigning a link through PATCH takes it out of the totals.
    let resp = app
        .client
        .patch(app.url(&format!("/api/links/{}", id_of(&second))))
        .header("x-api-key", &key)
        .json(&json!({"campaignId": null}))
        .send()
        .await
        .expect("patch link");
    assert_eq!(resp.status(), 200);
    assert_eq!(totals(&fetch_campaign(&app, &key, &id).await), (1, 7));

    // A renamed campaign keeps its totals.
    let resp = app
        .campaigns()
        .patch(&key, &id, json!({"name": "Renamed"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 200);
    assert_eq!(totals(&resp.json::<Value>().await.expect("json")), (1, 7));
}

#[tokio::test]
async fn another_keys_campaign_answers_404_in_every_route() {
    let app = TestApp::start().await;
    let owner = app.key(false).await;
    let intruder = app.key(false).await;
    let c = create_campaign(&app, &owner, json!({"name": "Private", "description": "d"})).await;
    let id = id_of(&c);
    let intruder_link = app
        .shorten(&intruder, json!({"url": "https://example.com/i"}))
        .await;

    assert!(list_campaigns(&app, &intruder).await.is_empty());
    app.campaigns()
        .assert_item_routes_refuse(
            &intruder,
            &id,
            json!({"name": "Hijacked"}),
            404,
            "Campaign not found",
        )
        .await;
    let resp = assign(&app, &intruder, &id, &id_of(&intruder_link))
        .send()
        .await
        .expect("assign");
    assert_eq!(error_message(resp, 404).await, "Campaign not found");

    // Nothing changed: the campaign is intact and the intruder's link unassigned.
    assert!(campaign_row_exists(&app, &id).await);
    assert_eq!(fetch_campaign(&app, &owner, &id).await, c);
    assert_eq!(
        app.links().fetch(&intruder, &id_of(&intruder_link)).await["campaignId"],
        Value::Null
    );
}

#[tokio::test]
async fn assigning_another_keys_link_to_my_campaign_answers_404() {
    let app = TestApp::start().await;
    let me = app.key(false).await;
    let them = app.key(false).await;
    let mine = create_campaign(&app, &me, json!({"name": "Mine"})).await;
    let their_link = app
        .shorten(&them, json!({"url": "https://example.com/theirs"}))
        .await;

    let resp = assign(&app, &me, &id_of(&mine), &id_of(&their_link))
        .send()
        .await
        .expect("assign");
    assert_eq!(error_message(resp, 404).await, "Link not found");
    let resp = assign(&app, &me, &id_of(&mine), &uuid::Uuid::new_v4().to_string())
        .send()
        .await
        .expect("assign");
    assert_eq!(error_message(resp, 404).await, "Link not found");

    assert_eq!(
        app.links().fetch(&them, &id_of(&their_link)).await["campaignId"],
        Value::Null
    );
    assert_eq!(
        totals(&fetch_campaign(&app, &me, &id_of(&mine)).await),
        (0, 0)
    );
}

#[tokio::test]
async fn shorten_or_patch_with_another_keys_campaign_answers_400() {
    let app = TestApp::start().await;
    let me = app.key(false).await;
    let them = app.key(false).await;
    let theirs = create_campaign(&app, &them, json!({"name": "Theirs"})).await;

    for campaign_id in [id_of(&theirs), uuid::Uuid::new_v4().to_string()] {
        let resp = app
            .post_json(
                "/api/shorten",
                &me,
                json!({"url": "https://example.com/", "campaignId": campaign_id}),
            )
            .send()
            .await
            .expect("shorten");
        let message = error_message(resp, 400).await;
        assert!(message.contains("campaignId"), "{message}");
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM links")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(count, 0, "no link was created");

    let link = app
        .shorten(&me, json!({"url": "https://example.com/"}))
        .await;
    let resp = app
        .client
        .patch(app.url(&format!("/api/links/{}", id_of(&link))))
        .header("x-api-key", &me)
        .json(&json!({"campaignId": theirs["id"]}))
        .send()
        .await
        .expect("patch");
    let message = error_message(resp, 400).await;
    assert!(message.contains("campaignId"), "{message}");
    assert_eq!(
        app.links().fetch(&me, &id_of(&link)).await["campaignId"],
        Value::Null
    );
    assert_eq!(
        totals(&fetch_campaign(&app, &them, &id_of(&theirs)).await),
        (0, 0)
    );
}

#[tokio::test]
async fn an_admin_key_sees_and_changes_every_campaign() {
    let app = TestApp::start().await;
    let alice = app.key(false).await;
    let bob = app.key(false).await;
    let admin = app.key(true).await;
    let a = create_campaign(&app, &alice, json!({"name": "Alice's"})).await;
    let b = create_campaign(&app, &bob, json!({"name": "Bob's"})).await;

    let ids: BTreeSet<String> = list_campaigns(&app, &admin)
        .await
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(ids, BTreeSet::from([id_of(&a), id_of(&b)]));
    assert_eq!(
        fetch_campaign(&app, &admin, &id_of(&a)).await["name"],
        "Alice's"
    );

    let resp = app
        .campaigns()
        .patch(&admin, &id_of(&a), json!({"name": "Moderated"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        fetch_campaign(&app, &alice, &id_of(&a)).await["name"],
        "Moderated"
    );

    let resp = app
        .campaigns()
        .delete(&admin, &id_of(&b))
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 200);
    assert!(!campaign_row_exists(&app, &id_of(&b)).await);
}
