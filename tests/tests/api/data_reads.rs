//! The data API's discovery, single reads and changes, and incremental polling, on the real
//! binary, SQLite and Postgres: `GET /scopes`, `GET`/`PATCH /assets/{id}`,
//! `GET /locations/{id}`, and `updated_since` / `completed_since` on the lists.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Api, Backend, Reply, TestApp, spawn_app};

/// A 422 naming `field`.
pub fn assert_field(reply: &Reply, field: &str) {
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert_eq!(reply.body["code"], "validation_failed", "{}", reply.text);
    assert_eq!(reply.body["field"], field, "{}", reply.text);
}

/// A 403 naming the missing `scope`.
pub fn assert_scope(reply: &Reply, scope: &str) {
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert_eq!(reply.body["code"], "insufficient_scope", "{}", reply.text);
    assert_eq!(reply.body["scope"], scope, "{}", reply.text);
}

/// The ids of a page's items, in order.
pub fn ids(page: &Reply) -> Vec<String> {
    page.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {}", page.text))
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// `POST path body`, 201 asserted (with a `Location` to the new resource): its body.
pub async fn create(api: &Api<'_>, path: &str, body: Value) -> Value {
    let reply = api.call(Method::POST, path, Some(body)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let id = reply.str("id");
    assert_eq!(reply.header("location"), format!("{path}/{id}"));
    reply.body
}

/// A key of the organisation with only `scopes` (made by `root`): its secret.
pub async fn key_with(root: &Api<'_>, name: &str, scopes: &[&str]) -> String {
    let key = root.new_key(json!({"name": name, "scopes": scopes})).await;
    key["secret"].as_str().unwrap().to_owned()
}

/// A second organisation of `app` (through the CLI): its id and root key.
pub fn second_org(app: &TestApp) -> (String, String) {
    let args = [
        "orgs",
        "create",
        "--name",
        "Other",
        "--plan",
        "enterprise",
        "--json",
    ];
    let other: Value = serde_json::from_str(&app.cli(&args)).unwrap();
    (
        other["org_id"].as_str().unwrap().to_owned(),
        other["root_key"].as_str().unwrap().to_owned(),
    )
}

/// Waits until the changes made so far show in polling lists (which leave out the last
/// second's changes, `POLL_SETTLE`).
pub async fn settle() {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
}

/// Every page of `path` (which has a query string), following `next_cursor`.
pub async fn all_pages(api: &Api<'_>, path: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut next = path.to_owned();
    loop {
        let page = api.get(&next).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        seen.extend(ids(&page));
        match page.body["next_cursor"].as_str() {
            Some(cursor) => next = format!("{path}&cursor={cursor}"),
            None => return seen,
        }
    }
}

async fn the_scope_catalogue_is_public_and_describes_every_scope(backend: Backend) {
    let app = spawn_app(backend).await;
    let reply = app.anonymous("").get("/scopes").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let items = reply.body["items"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|s| s["name"].as_str().unwrap()).collect();
    for scope in [
        "work-orders:read",
        "work-orders:write",
        "assets:read",
        "assets:write",
        "locations:read",
        "forms:read",
        "iot:read",
        "users:read",
        "users:write",
        "api-keys:read",
        "api-keys:create",
        "api-keys:write",
        "api-keys:revoke",
    ] {
        assert!(names.contains(&scope), "{scope} missing from {names:?}");
    }
    assert_eq!(
        items[0],
        json!({"name": "work-orders:read", "description": "Read work orders"})
    );
    assert!(
        items
            .iter()
            .all(|s| !s["description"].as_str().unwrap().is_empty())
    );
    // The root key holds the whole catalogue.
    let (org, root) = app.bootstrap();
    let who = app.api(&org, &root).whoami().await;
    assert_eq!(
        who.body["scopes"].as_array().unwrap().len(),
        items.len(),
        "{}",
        who.text
    );
}

async fn an_asset_can_be_read_and_changed_by_id(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let admin = app.api(&org, &root);
    let assets = format!("/organizations/{org}/assets");
    let ahu = create(
        &admin,
        &assets,
        json!({"name": "AHU-01", "kind": "HVAC", "location": "Building A"}),
    )
    .await;
    let id = ahu["id"].as_str().unwrap();
    let building = ahu["location_id"].as_str().unwrap().to_owned();
    let other = create(
        &admin,
        &assets,
        json!({"name": "Pump", "location": "Building B"}),
    )
    .await;
    let building_b = other["location_id"].as_str().unwrap().to_owned();
    let reader = app.api(
        &org,
        &key_with(&admin, "reader", &["assets:read", "locations:read"]).await,
    );
    let writer = app.api(&org, &key_with(&admin, "writer", &["assets:write"]).await);
    assert_eq!(ahu["updated_at"], ahu["created_at"]);

    // Act / Assert: read by id, with assets:read only.
    let got = reader.get(&format!("{assets}/{id}")).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text);
    assert_eq!(got.body, ahu);
    assert_scope(&writer.get(&format!("{assets}/{id}")).await, "assets:read");
    // The location by id.
    let loc = reader
        .get(&format!("/organizations/{org}/locations/{building}"))
        .await;
    assert_eq!(loc.status, StatusCode::OK, "{}", loc.text);
    assert_eq!(loc.body["name"], "Building A");
    assert_scope(
        &writer
            .get(&format!("/organizations/{org}/locations/{building}"))
            .await,
        "locations:read",
    );

    // Changed with assets:write: only the fields given change; null removes kind.
    let path = format!("{assets}/{id}");
    let changed = writer
        .call(
            Method::PATCH,
            &path,
            Some(json!({"name": " AHU-01b ", "location_id": building_b})),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(changed.body["name"], "AHU-01b");
    assert_eq!(changed.body["kind"], "HVAC");
    assert_eq!(changed.body["location_id"], building_b.as_str());
    assert_eq!(changed.body["created_at"], ahu["created_at"]);
    assert!(changed.str("updated_at") > ahu["updated_at"].as_str().unwrap());
    let cleared = writer
        .call(
            Method::PATCH,
            &path,
            Some(json!({"kind": null, "location_id": null})),
        )
        .await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.text);
    assert_eq!(cleared.body["kind"], Value::Null);
    assert_eq!(cleared.body["location_id"], Value::Null);
    assert_eq!(cleared.body["name"], "AHU-01b");
    assert_eq!(reader.get(&path).await.body, cleared.body);
    assert_scope(
        &reader
            .call(Method::PATCH, &path, Some(json!({"name": "x"})))
            .await,
        "assets:write",
    );

    // Validation names the field; an empty change is refused.
    assert_field(
        &writer.call(Method::PATCH, &path, Some(json!({}))).await,
        "body",
    );
    assert_field(
        &writer
            .call(Method::PATCH, &path, Some(json!({"name": "  "})))
            .await,
        "name",
    );
    assert_field(
        &writer
            .call(Method::PATCH, &path, Some(json!({"kind": "x".repeat(101)})))
            .await,
        "kind",
    );
    assert_field(
        &writer
            .call(Method::PATCH, &path, Some(json!({"location_id": "nope"})))
            .await,
        "location_id",
    );
    let unknown = "0190d9a0-0000-7000-8000-000000000000";
    assert_field(
        &writer
            .call(Method::PATCH, &path, Some(json!({"location_id": unknown})))
            .await,
        "location_id",
    );
    assert_field(
        &writer
            .call(Method::PATCH, &path, Some(json!({"colour": "red"})))
            .await,
        "colour",
    );

    // Unknown ids and other organisations are 404 (before the body is read).
    assert_eq!(
        reader.get(&format!("{assets}/{unknown}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        reader.get(&format!("{assets}/not-a-uuid")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        writer
            .call(
                Method::PATCH,
                &format!("{assets}/{unknown}"),
                Some(json!({"name": "x"}))
            )
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let (org2, root2) = second_org(&app);
    let stranger = app.api(&org2, &root2);
    assert_eq!(
        stranger
            .get(&format!("/organizations/{org2}/assets/{id}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        stranger
            .get(&format!("/organizations/{org2}/locations/{building}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let theirs = stranger
        .call(Method::PATCH, &path, Some(json!({"bogus": 1})))
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{}", theirs.text);
    let mine_elsewhere = format!("/organizations/{org2}/assets/{id}");
    assert_eq!(
        stranger
            .call(Method::PATCH, &mine_elsewhere, Some(json!({"name": "x"})))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(reader.get(&path).await.body["name"], "AHU-01b");
}

async fn lists_can_be_polled_for_changes_each_change_once(backend: Backend) {
    // Arrange: five work orders and three assets.
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let admin = app.api(&org, &root);
    let orders = format!("/organizations/{org}/work-orders");
    let assets = format!("/organizations/{org}/assets");
    let mut made = Vec::new();
    for n in 0..5 {
        let order = create(
            &admin,
            &orders,
            json!({"title": format!("WO {n}"), "priority": "Low"}),
        )
        .await;
        made.push(order["id"].as_str().unwrap().to_owned());
    }
    let start = "2000-01-01T00:00:00Z";
    // A change of the last second is not shown yet (it may still be committing).
    let fresh = admin.get(&format!("{orders}?updated_since={start}")).await;
    assert!(!ids(&fresh).contains(&made[4]), "{}", fresh.text);
    settle().await;
    // Oldest change first, paged with the cursor through the same order.
    assert_eq!(
        all_pages(&admin, &format!("{orders}?updated_since={start}&limit=2")).await,
        made
    );

    // Act: the poller remembers the last change it saw; orders 3 then 1 change.
    let seen = admin.get(&format!("{orders}?updated_since={start}")).await;
    let mark = seen.body["items"][4]["updated_at"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        admin
            .get(&format!("{orders}?updated_since={mark}"))
            .await
            .body["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    for id in [&made[3], &made[1]] {
        let r = admin
            .call(
                Method::PATCH,
                &format!("{orders}/{id}"),
                Some(json!({"status": "Completed"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    settle().await;

    // Assert: exactly the two changes, in change order, once.
    let changed = admin.get(&format!("{orders}?updated_since={mark}")).await;
    assert_eq!(ids(&changed), [made[3].clone(), made[1].clone()]);
    let last = changed.body["items"][1]["updated_at"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(ids(&admin.get(&format!("{orders}?updated_since={last}")).await).is_empty());
    // The same through completed_since, with a status filter, in completion order.
    let done = admin
        .get(&format!("{orders}?status=Completed&completed_since={mark}"))
        .await;
    assert_eq!(ids(&done), [made[3].clone(), made[1].clone()]);
    let first_done = done.body["items"][0]["completed_at"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        ids(&admin
            .get(&format!("{orders}?completed_since={first_done}"))
            .await),
        [made[1].clone()]
    );
    assert_eq!(
        all_pages(&admin, &format!("{orders}?completed_since={start}&limit=1")).await,
        [made[3].clone(), made[1].clone()]
    );
    // Reopened: no longer completed.
    admin
        .call(
            Method::PATCH,
            &format!("{orders}/{}", made[3]),
            Some(json!({"status": "Open"})),
        )
        .await;
    settle().await;
    assert_eq!(
        ids(&admin
            .get(&format!("{orders}?completed_since={start}"))
            .await),
        [made[1].clone()]
    );
    // Both: changed after the mark and completed after the mark.
    assert_eq!(
        ids(&admin
            .get(&format!(
                "{orders}?updated_since={mark}&completed_since={mark}"
            ))
            .await),
        [made[1].clone()]
    );
    // Offsets other than Z are read as the same instant.
    let plus = admin
        .get(&format!(
            "{orders}?updated_since=2000-01-01T01:00:00%2B01:00&limit=1"
        ))
        .await;
    assert_eq!(ids(&plus), [made[0].clone()]);

    // Assets: the same polling.
    let mut asset_ids = Vec::new();
    for n in 0..3 {
        let a = create(&admin, &assets, json!({"name": format!("A{n}")})).await;
        asset_ids.push(a["id"].as_str().unwrap().to_owned());
    }
    settle().await;
    assert_eq!(
        all_pages(&admin, &format!("{assets}?updated_since={start}&limit=2")).await,
        asset_ids
    );
    let all = admin.get(&format!("{assets}?updated_since={start}")).await;
    let mark = all.body["items"][2]["updated_at"]
        .as_str()
        .unwrap()
        .to_owned();
    admin
        .call(
            Method::PATCH,
            &format!("{assets}/{}", asset_ids[0]),
            Some(json!({"name": "A0 renamed"})),
        )
        .await;
    settle().await;
    assert_eq!(
        ids(&admin.get(&format!("{assets}?updated_since={mark}")).await),
        [asset_ids[0].clone()]
    );

    // Bad timestamps are a 422 naming the parameter.
    assert_field(
        &admin
            .get(&format!("{orders}?updated_since=yesterday"))
            .await,
        "updated_since",
    );
    assert_field(
        &admin
            .get(&format!("{orders}?completed_since=2026-13-01T00:00:00Z"))
            .await,
        "completed_since",
    );
    assert_field(
        &admin.get(&format!("{assets}?updated_since=")).await,
        "updated_since",
    );
}

test_support::backend_tests!(
    the_scope_catalogue_is_public_and_describes_every_scope,
    an_asset_can_be_read_and_changed_by_id,
    lists_can_be_polled_for_changes_each_change_once,
);
