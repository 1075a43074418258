//! The data API (work orders, assets, locations) on the real binary, SQLite and Postgres:
//! the seeds' flow (a SCADA feed opens a work order, an ERP polls for completed ones),
//! scopes, tenancy, validation and pagination.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};

/// One call: status and JSON body (`null` if the body is not JSON).
async fn call(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let res = req.send().await.unwrap();
    let status = res.status();
    let body = res.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// A key of `org` with only `scopes`, created through the API with `root`: (id, secret).
async fn create_key(
    app: &TestApp,
    org: &str,
    root: &str,
    name: &str,
    scopes: &[&str],
) -> (String, String) {
    let (status, key) = call(
        app.client
            .post(app.url(&format!("/organizations/{org}/api-keys")))
            .bearer_auth(root)
            .json(&json!({"name": name, "scopes": scopes})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    (
        key["id"].as_str().unwrap().to_owned(),
        key["secret"].as_str().unwrap().to_owned(),
    )
}

fn work_orders_url(app: &TestApp, org: &str) -> String {
    app.url(&format!("/organizations/{org}/work-orders"))
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A 422 naming `field`.
fn assert_field(status: StatusCode, problem: &Value, field: &str) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["code"], "validation_failed", "{problem}");
    assert_eq!(problem["field"], field, "{problem}");
}

/// A 403 `insufficient_scope` naming `scope`.
fn assert_scope(status: StatusCode, problem: &Value, scope: &str) {
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(problem["code"], "insufficient_scope", "{problem}");
    assert_eq!(problem["scope"], scope, "{problem}");
}

async fn the_seeds_flow(backend: Backend) {
    // Arrange: a SCADA feed that may only open work orders, an ERP that may only read them.
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let c = &app.client;
    let url = work_orders_url(&app, &org);
    let (scada_id, scada) = create_key(
        &app,
        &org,
        &root,
        "SCADA fault feed",
        &["work-orders:write"],
    )
    .await;
    let (_, erp) = create_key(
        &app,
        &org,
        &root,
        "SAP ERP Integration",
        &["work-orders:read"],
    )
    .await;

    // Act: the SCADA key opens a work order.
    let res = c
        .post(&url)
        .bearer_auth(&scada)
        .json(&json!({
            "title": "Equipment Fault - AHU-01",
            "priority": "High",
            "description": "Fault code F47 detected",
        }))
        .send()
        .await
        .unwrap();

    // Assert: 201 with the work order, Open, created by the SCADA key.
    assert_eq!(res.status(), StatusCode::CREATED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let order: Value = res.json().await.unwrap();
    let id = order["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/organizations/{org}/work-orders/{id}"));
    assert_eq!(order["title"], "Equipment Fault - AHU-01");
    assert_eq!(order["priority"], "High");
    assert_eq!(order["description"], "Fault code F47 detected");
    assert_eq!(order["status"], "Open");
    assert_eq!(order["asset_id"], Value::Null);
    assert_eq!(order["completed_at"], Value::Null);
    assert_eq!(order["created_by"], scada_id.as_str());
    assert_eq!(order["org_id"], org.as_str());
    let created_at = order["created_at"].as_str().unwrap();
    assert!(
        created_at.ends_with('Z') && created_at.len() == 27,
        "{created_at}"
    );
    assert_eq!(order["updated_at"], order["created_at"]);

    // The SCADA key cannot read work orders, neither the list nor one.
    let (status, problem) = call(c.get(&url).bearer_auth(&scada)).await;
    assert_scope(status, &problem, "work-orders:read");
    let (status, problem) = call(c.get(format!("{url}/{id}")).bearer_auth(&scada)).await;
    assert_scope(status, &problem, "work-orders:read");
    // ... and the ERP key cannot create nor change them.
    let (status, problem) = call(
        c.post(&url)
            .bearer_auth(&erp)
            .json(&json!({"title": "nope", "priority": "Low"})),
    )
    .await;
    assert_scope(status, &problem, "work-orders:write");
    let (status, problem) = call(
        c.patch(format!("{url}/{id}"))
            .bearer_auth(&erp)
            .json(&json!({"status": "Cancelled"})),
    )
    .await;
    assert_scope(status, &problem, "work-orders:write");
    // Without a key: 401.
    let (status, _) = call(c.get(&url)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The ERP polls for completed work orders: not yet.
    let completed = format!("{url}?status=Completed");
    let (status, page) = call(c.get(&completed).bearer_auth(&erp)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(!ids(&page).contains(&id), "{page}");
    assert_eq!(page["next_cursor"], Value::Null);
    // It sees the open one in the unfiltered list and by id.
    let (_, page) = call(c.get(&url).bearer_auth(&erp)).await;
    assert_eq!(ids(&page), std::slice::from_ref(&id));
    let (status, got) = call(c.get(format!("{url}/{id}")).bearer_auth(&erp)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, order);

    // Work starts, then ends.
    let (status, started) = call(
        c.patch(format!("{url}/{id}"))
            .bearer_auth(&scada)
            .json(&json!({"status": "InProgress"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{started}");
    assert_eq!(started["status"], "InProgress");
    assert_eq!(started["completed_at"], Value::Null);
    assert_eq!(started["title"], order["title"]);
    let (_, page) = call(c.get(&completed).bearer_auth(&erp)).await;
    assert!(ids(&page).is_empty(), "{page}");
    let (_, page) = call(c.get(format!("{url}?status=InProgress")).bearer_auth(&erp)).await;
    assert_eq!(ids(&page), std::slice::from_ref(&id));

    let (status, done) = call(
        c.patch(format!("{url}/{id}"))
            .bearer_auth(&root)
            .json(&json!({"status": "Completed"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "Completed");
    let completed_at = done["completed_at"].as_str().unwrap().to_owned();
    assert!(completed_at.as_str() >= created_at);
    assert_eq!(done["updated_at"], completed_at.as_str());
    assert_eq!(done["created_by"], scada_id.as_str());

    // The ERP's poll finds it now.
    let (status, page) = call(c.get(&completed).bearer_auth(&erp)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&page), std::slice::from_ref(&id));
    assert_eq!(page["items"][0], done);

    // Completing again keeps the first completion time; reopening clears it.
    let (_, again) = call(
        c.patch(format!("{url}/{id}"))
            .bearer_auth(&root)
            .json(&json!({"status": "Completed", "priority": "Critical"})),
    )
    .await;
    assert_eq!(again["completed_at"], completed_at.as_str());
    assert_eq!(again["priority"], "Critical");
    let (_, reopened) = call(
        c.patch(format!("{url}/{id}"))
            .bearer_auth(&root)
            .json(&json!({"status": "Open", "description": null, "title": " Fixed? "})),
    )
    .await;
    assert_eq!(reopened["status"], "Open");
    assert_eq!(reopened["completed_at"], Value::Null);
    assert_eq!(reopened["description"], Value::Null);
    assert_eq!(reopened["title"], "Fixed?");
    assert_eq!(reopened["priority"], "Critical");

    // The OpenAPI document describes the data API.
    let (status, doc) = call(c.get(app.url("/openapi.json"))).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/organizations/{org}/work-orders",
        "/organizations/{org}/work-orders/{id}",
        "/organizations/{org}/assets",
        "/organizations/{org}/locations",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} not in /openapi.json"
        );
    }
    assert!(
        doc["paths"]["/organizations/{org}/work-orders/{id}"]
            .get("patch")
            .is_some()
    );
    assert!(doc["components"]["schemas"].get("WorkOrder").is_some());
}

async fn assets_and_locations(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let c = &app.client;
    let assets = app.url(&format!("/organizations/{org}/assets"));
    let locations = app.url(&format!("/organizations/{org}/locations"));

    // No locations until an asset names one.
    let (status, page) = call(c.get(&locations).bearer_auth(&root)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page, json!({"items": [], "next_cursor": null}));

    // Act: two assets in "Building A" (created once), one by the location's id.
    let (status, ahu1) = call(
        c.post(&assets)
            .bearer_auth(&root)
            .json(&json!({"name": "AHU-01", "kind": "HVAC", "location": "Building A"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{ahu1}");
    let building_a = ahu1["location_id"].as_str().unwrap().to_owned();
    let (status, ahu2) = call(
        c.post(&assets)
            .bearer_auth(&root)
            .json(&json!({"name": "AHU-02", "location": "Building A"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{ahu2}");
    assert_eq!(ahu2["location_id"], building_a.as_str());
    assert_eq!(ahu2["kind"], Value::Null);
    let (status, pump) = call(
        c.post(&assets)
            .bearer_auth(&root)
            .json(&json!({"name": "Pump 3", "location_id": building_a})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{pump}");
    let (status, roof) = call(
        c.post(&assets)
            .bearer_auth(&root)
            .json(&json!({"name": "Roof"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{roof}");
    assert_eq!(roof["location_id"], Value::Null);

    // Assert: the lists, newest first.
    let (_, page) = call(c.get(&locations).bearer_auth(&root)).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["items"][0]["id"], building_a.as_str());
    assert_eq!(page["items"][0]["name"], "Building A");
    let (_, page) = call(c.get(&assets).bearer_auth(&root)).await;
    assert_eq!(
        ids(&page),
        [&roof, &pump, &ahu2, &ahu1].map(|a| a["id"].as_str().unwrap().to_owned())
    );
    assert_eq!(page["items"][3], ahu1);
    let (_, page) = call(c.get(format!("{assets}?limit=3")).bearer_auth(&root)).await;
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, page) = call(
        c.get(format!("{assets}?limit=3&cursor={cursor}"))
            .bearer_auth(&root),
    )
    .await;
    assert_eq!(ids(&page), [ahu1["id"].as_str().unwrap().to_owned()]);
    assert_eq!(page["next_cursor"], Value::Null);

    // A work order on an asset.
    let (status, order) = call(
        c.post(work_orders_url(&app, &org))
            .bearer_auth(&root)
            .json(&json!({"title": "Replace filter", "priority": "Low", "asset_id": ahu1["id"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["asset_id"], ahu1["id"]);

    // Unknown references are 422 naming the field.
    let unknown = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    let (status, problem) = call(
        c.post(&assets)
            .bearer_auth(&root)
            .json(&json!({"name": "X", "location_id": unknown})),
    )
    .await;
    assert_field(status, &problem, "location_id");
    let (status, problem) = call(
        c.post(&assets)
            .bearer_auth(&root)
            .json(&json!({"name": "X", "location_id": "Building A"})),
    )
    .await;
    assert_field(status, &problem, "location_id");
    let (status, problem) = call(
        c.post(work_orders_url(&app, &org))
            .bearer_auth(&root)
            .json(&json!({"title": "X", "priority": "Low", "asset_id": unknown})),
    )
    .await;
    assert_field(status, &problem, "asset_id");
    let (status, problem) = call(
        c.post(&assets)
            .bearer_auth(&root)
            .json(&json!({"name": "X", "location": "B", "location_id": building_a})),
    )
    .await;
    assert_field(status, &problem, "location");
    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"kind": "HVAC"}), "name"),
        (json!({"name": "X", "kind": 3}), "kind"),
        (json!({"name": "X", "location": " "}), "location"),
        (json!({"name": "X", "colour": "red"}), "colour"),
    ] {
        let (status, problem) = call(c.post(&assets).bearer_auth(&root).json(&body)).await;
        assert_field(status, &problem, field);
    }

    // Scopes: assets and locations each need their own.
    let (_, wo_only) = create_key(
        &app,
        &org,
        &root,
        "wo",
        &["work-orders:read", "work-orders:write"],
    )
    .await;
    let (status, problem) = call(c.get(&assets).bearer_auth(&wo_only)).await;
    assert_scope(status, &problem, "assets:read");
    let (status, problem) = call(
        c.post(&assets)
            .bearer_auth(&wo_only)
            .json(&json!({"name": "X"})),
    )
    .await;
    assert_scope(status, &problem, "assets:write");
    let (status, problem) = call(c.get(&locations).bearer_auth(&wo_only)).await;
    assert_scope(status, &problem, "locations:read");
    let (_, reader) = create_key(
        &app,
        &org,
        &root,
        "reader",
        &["assets:read", "locations:read"],
    )
    .await;
    let (status, _) = call(c.get(&assets).bearer_auth(&reader)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(c.get(&locations).bearer_auth(&reader)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, problem) = call(
        c.post(&assets)
            .bearer_auth(&reader)
            .json(&json!({"name": "X"})),
    )
    .await;
    assert_scope(status, &problem, "assets:write");
}

async fn tenancy(backend: Backend) {
    // Arrange: a work order, an asset and a location in the first organisation.
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let c = &app.client;
    let (_, order) = call(
        c.post(work_orders_url(&app, &org))
            .bearer_auth(&root)
            .json(&json!({"title": "Equipment Fault - AHU-01", "priority": "High"})),
    )
    .await;
    let id = order["id"].as_str().unwrap().to_owned();
    let (_, asset) = call(
        c.post(app.url(&format!("/organizations/{org}/assets")))
            .bearer_auth(&root)
            .json(&json!({"name": "AHU-01", "location": "Building A"})),
    )
    .await;

    // Act: a second organisation.
    let other: Value = serde_json::from_str(&app.cli(&[
        "orgs",
        "create",
        "--name",
        "Other",
        "--plan",
        "enterprise",
        "--json",
    ]))
    .unwrap();
    let other_org = other["org_id"].as_str().unwrap();
    let other_root = other["root_key"].as_str().unwrap();
    let other_url = work_orders_url(&app, other_org);

    // Assert: the first organisation's work order is not there for it, by any path.
    let first_url = work_orders_url(&app, &org);
    for url in [format!("{first_url}/{id}"), format!("{other_url}/{id}")] {
        let (status, problem) = call(c.get(&url).bearer_auth(other_root)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{url}: {problem}");
        assert_eq!(problem["code"], "not_found");
        let (status, _) = call(
            c.patch(&url)
                .bearer_auth(other_root)
                .json(&json!({"status": "Cancelled"})),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{url}");
    }
    for path in ["work-orders", "assets", "locations"] {
        let (status, _) = call(
            c.get(app.url(&format!("/organizations/{org}/{path}")))
                .bearer_auth(other_root),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        let (status, page) = call(
            c.get(app.url(&format!("/organizations/{other_org}/{path}")))
                .bearer_auth(other_root),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        assert_eq!(page, json!({"items": [], "next_cursor": null}), "{path}");
    }
    let (status, _) = call(
        c.post(&first_url)
            .bearer_auth(other_root)
            .json(&json!({"title": "X", "priority": "Low"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Another organisation's asset or location cannot be referenced.
    let (status, problem) = call(
        c.post(&other_url)
            .bearer_auth(other_root)
            .json(&json!({"title": "X", "priority": "Low", "asset_id": asset["id"]})),
    )
    .await;
    assert_field(status, &problem, "asset_id");
    let (status, problem) = call(
        c.post(app.url(&format!("/organizations/{other_org}/assets")))
            .bearer_auth(other_root)
            .json(&json!({"name": "X", "location_id": asset["location_id"]})),
    )
    .await;
    assert_field(status, &problem, "location_id");
    // The same location name is a location of its own in each organisation.
    let (status, theirs) = call(
        c.post(app.url(&format!("/organizations/{other_org}/assets")))
            .bearer_auth(other_root)
            .json(&json!({"name": "X", "location": "Building A"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{theirs}");
    assert_ne!(theirs["location_id"], asset["location_id"]);

    // The first organisation's work order is untouched.
    let (_, again) = call(c.get(format!("{first_url}/{id}")).bearer_auth(&root)).await;
    assert_eq!(again, order);
}

async fn bad_input(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let c = &app.client;
    let url = work_orders_url(&app, &org);
    let (_, order) = call(
        c.post(&url)
            .bearer_auth(&root)
            .json(&json!({"title": "ok", "priority": "Medium"})),
    )
    .await;
    let id = order["id"].as_str().unwrap().to_owned();

    // Act / Assert: bodies of a create.
    let long = "x".repeat(201);
    for (body, field) in [
        (json!({"title": "t", "priority": "Urgent"}), "priority"),
        (json!({"title": "t", "priority": "high"}), "priority"),
        (json!({"title": "t"}), "priority"),
        (
            json!({"title": "t", "priority": "Low", "colour": "red"}),
            "colour",
        ),
        (json!({"title": "", "priority": "Low"}), "title"),
        (json!({"title": "   ", "priority": "Low"}), "title"),
        (json!({"title": long, "priority": "Low"}), "title"),
        (json!({"title": 5, "priority": "Low"}), "title"),
        (json!({"priority": "Low"}), "title"),
        (
            json!({"title": "t", "priority": "Low", "description": 7}),
            "description",
        ),
        (
            json!({"title": "t", "priority": "Low", "asset_id": "AHU-01"}),
            "asset_id",
        ),
        (
            json!({"title": "t", "priority": "Low", "status": "Completed"}),
            "status",
        ),
    ] {
        let (status, problem) = call(c.post(&url).bearer_auth(&root).json(&body)).await;
        assert_field(status, &problem, field);
    }
    let ok = "é".repeat(200);
    let (status, body) = call(
        c.post(&url)
            .bearer_auth(&root)
            .json(&json!({"title": ok, "priority": "Low"})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "200 characters is the limit: {body}"
    );
    let (status, _) = call(
        c.post(&url)
            .bearer_auth(&root)
            .header("content-type", "text/plain")
            .body(r#"{"title":"t","priority":"Low"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, problem) = call(
        c.post(&url)
            .bearer_auth(&root)
            .header("content-type", "application/json")
            .body(r#"{"title": "#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");

    // Bodies of a change.
    let one = format!("{url}/{id}");
    for (body, field) in [
        (json!({"status": "Done"}), "status"),
        (json!({"status": "Completed", "colour": "red"}), "colour"),
        (json!({"title": ""}), "title"),
        (json!({"priority": "Urgent"}), "priority"),
        (json!({}), "body"),
    ] {
        let (status, problem) = call(c.patch(&one).bearer_auth(&root).json(&body)).await;
        assert_field(status, &problem, field);
    }
    // Nothing changed.
    let (_, again) = call(c.get(&one).bearer_auth(&root)).await;
    assert_eq!(again, order);

    // Unknown ids.
    for missing in ["0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "nope"] {
        let (status, _) = call(c.get(format!("{url}/{missing}")).bearer_auth(&root)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
        let (status, _) = call(
            c.patch(format!("{url}/{missing}"))
                .bearer_auth(&root)
                .json(&json!({"status": "Completed"})),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    }

    // Query strings.
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("status=Done", "status"),
        ("status=completed", "status"),
        ("cursor=not-a-cursor", "cursor"),
        ("colour=red", "query"),
    ] {
        let (status, problem) = call(c.get(format!("{url}?{query}")).bearer_auth(&root)).await;
        assert_field(status, &problem, field);
    }
    for list in ["assets", "locations"] {
        let (status, problem) = call(
            c.get(app.url(&format!("/organizations/{org}/{list}?limit=0")))
                .bearer_auth(&root),
        )
        .await;
        assert_field(status, &problem, "limit");
    }
    // Present but empty is not a value: the document says enum.
    let (status, problem) =
        call(c.get(format!("{url}?limit=100&status=")).bearer_auth(&root)).await;
    assert_field(status, &problem, "status");
}

async fn pagination(backend: Backend) {
    // Arrange: five work orders; the second and fourth completed.
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let c = &app.client;
    let url = work_orders_url(&app, &org);
    let mut created = Vec::new();
    for i in 0..5 {
        let (status, order) = call(
            c.post(&url)
                .bearer_auth(&root)
                .json(&json!({"title": format!("WO {i}"), "priority": "Low"})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        created.push(order["id"].as_str().unwrap().to_owned());
    }
    for i in [1, 3] {
        let (status, _) = call(
            c.patch(format!("{url}/{}", created[i]))
                .bearer_auth(&root)
                .json(&json!({"status": "Completed"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }

    // Act: page through with limit 2.
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut next = format!("{url}?limit=2");
    loop {
        let (status, page) = call(c.get(&next).bearer_auth(&root)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        sizes.push(page["items"].as_array().unwrap().len());
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => next = format!("{url}?limit=2&cursor={cursor}"),
            None => break,
        }
    }

    // Assert: 2, 2, 1; each once; newest first.
    assert_eq!(sizes, [2, 2, 1]);
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    // The status filter pages the same way.
    let (_, page) = call(
        c.get(format!("{url}?status=Completed&limit=1"))
            .bearer_auth(&root),
    )
    .await;
    assert_eq!(ids(&page), [created[3].clone()]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page) = call(
        c.get(format!("{url}?status=Completed&limit=1&cursor={cursor}"))
            .bearer_auth(&root),
    )
    .await;
    assert_eq!(ids(&page), [created[1].clone()]);
    assert_eq!(page["next_cursor"], Value::Null);
    let (_, page) = call(c.get(format!("{url}?status=Open")).bearer_auth(&root)).await;
    assert_eq!(
        ids(&page),
        [created[4].clone(), created[2].clone(), created[0].clone()]
    );
}

async fn concurrent_writes(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let url = work_orders_url(&app, &org);
    let assets = app.url(&format!("/organizations/{org}/assets"));

    // Act: work orders and assets (in two locations) created at once, while the usage
    // of every call is being written too.
    let tasks = (0..30).map(|i| {
        let (c, url, assets, root) = (
            app.client.clone(),
            url.clone(),
            assets.clone(),
            root.clone(),
        );
        tokio::spawn(async move {
            let (s1, order) = call(
                c.post(&url)
                    .bearer_auth(&root)
                    .json(&json!({"title": format!("WO {i}"), "priority": "Medium"})),
            )
            .await;
            let (s2, _) = call(
                c.patch(format!("{url}/{}", order["id"].as_str().unwrap_or("none")))
                    .bearer_auth(&root)
                    .json(&json!({"status": "Completed"})),
            )
            .await;
            let (s3, asset) = call(c.post(&assets).bearer_auth(&root).json(
                &json!({"name": format!("Asset {i}"), "location": format!("Building {}", i % 2)}),
            ))
            .await;
            (s1, s2, s3, asset)
        })
    });
    let results = futures_join(tasks.collect()).await;

    // Assert: every call succeeded; two locations, thirty completed work orders.
    for (s1, s2, s3, asset) in results {
        assert_eq!(
            (s1, s2, s3),
            (StatusCode::CREATED, StatusCode::OK, StatusCode::CREATED),
            "{asset}"
        );
    }
    let c = &app.client;
    let (_, page) = call(
        c.get(format!("{url}?status=Completed&limit=100"))
            .bearer_auth(&root),
    )
    .await;
    assert_eq!(ids(&page).len(), 30);
    let (_, page) = call(
        c.get(app.url(&format!("/organizations/{org}/locations")))
            .bearer_auth(&root),
    )
    .await;
    assert_eq!(ids(&page).len(), 2, "{page}");
}

async fn futures_join<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// NUL and other control characters in any text field: 422 naming the field, on both back
/// ends (Postgres `text`/`jsonb` cannot hold NUL), and a revoke with such a reason leaves
/// nothing half done; a rotated key rotated again is 409 `key_rotated`, not a 503.
async fn control_characters_are_refused_by_name(backend: Backend) {
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let c = &app.client;
    for (body, field) in [
        (json!({"title": "Pump\u{0}7", "priority": "High"}), "title"),
        (
            json!({"title": "Pump 7", "priority": "High", "description": "ok\nthen\u{0}"}),
            "description",
        ),
    ] {
        let (status, problem) = call(
            c.post(work_orders_url(&app, &org))
                .bearer_auth(&root)
                .json(&body),
        )
        .await;
        assert_field(status, &problem, field);
    }
    let assets = app.url(&format!("/organizations/{org}/assets"));
    for (body, field) in [
        (json!({"name": "P\u{0}"}), "name"),
        (json!({"name": "Pump", "kind": "H\u{1b}[31mVAC"}), "kind"),
        (
            json!({"name": "Pump", "location": "Hall\u{0}A"}),
            "location",
        ),
    ] {
        let (status, problem) = call(c.post(&assets).bearer_auth(&root).json(&body)).await;
        assert_field(status, &problem, field);
    }
    let (id, _) = create_key(&app, &org, &root, "victim", &["work-orders:read"]).await;
    let (status, problem) = call(
        c.post(app.url(&format!("/organizations/{org}/api-keys")))
            .bearer_auth(&root)
            .json(&json!({"name": "bad\u{0}name"})),
    )
    .await;
    assert_field(status, &problem, "name");
    let key_url = app.url(&format!("/organizations/{org}/api-keys/{id}"));
    let (status, problem) = call(
        c.post(format!("{key_url}/revoke"))
            .bearer_auth(&root)
            .json(&json!({"reason": "leaked\u{0}"})),
    )
    .await;
    assert_field(status, &problem, "reason");
    let (_, details) = call(c.get(&key_url).bearer_auth(&root)).await;
    assert_eq!(details["status"], "active", "nothing was half written");
    // A multi-line reason is text: accepted.
    let (status, details) = call(
        c.post(format!("{key_url}/revoke"))
            .bearer_auth(&root)
            .json(&json!({"reason": "leaked:\nsee INC-42"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{details}");
    assert_eq!(details["status"], "revoked");

    let (other, _) = create_key(&app, &org, &root, "to rotate", &["work-orders:read"]).await;
    let rotate = app.url(&format!("/organizations/{org}/api-keys/{other}/rotate"));
    let (status, _) = call(c.post(&rotate).bearer_auth(&root)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, problem) = call(c.post(&rotate).bearer_auth(&root)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], "key_rotated", "{problem}");
    let (status, problem) = call(
        c.patch(app.url(&format!("/organizations/{org}/api-keys/{other}")))
            .bearer_auth(&root)
            .json(&json!({"expires_at": null})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], "key_rotated", "{problem}");
    let (status, problem) = call(c.post(format!("{key_url}/rotate")).bearer_auth(&root)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], "key_revoked", "{problem}");
}

test_support::backend_tests!(
    concurrent_writes,
    the_seeds_flow,
    assets_and_locations,
    tenancy,
    bad_input,
    pagination,
    control_characters_are_refused_by_name,
);
