//! The resources behind `iot:read`, `forms:read` and `users:read` on the real binary,
//! SQLite and Postgres: who may write and read them, validation naming the field,
//! tenancy and pagination.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::data_reads::{all_pages, assert_field, assert_scope, create, key_with, second_org};
use crate::helpers::{Backend, spawn_app};

async fn iot_devices_and_readings_are_written_with_assets_write_and_read_with_iot_read(
    backend: Backend,
) {
    // Arrange
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let admin = app.api(&org, &root);
    let gateway = app.api(
        &org,
        &key_with(&admin, "BMS gateway", &["assets:write"]).await,
    );
    let reader = app.api(&org, &key_with(&admin, "warehouse", &["iot:read"]).await);
    let asset = create(
        &gateway,
        &format!("/organizations/{org}/assets"),
        json!({"name": "AHU-01"}),
    )
    .await;
    let devices = format!("/organizations/{org}/iot-devices");

    // Act: the gateway registers a device and sends readings.
    let device = create(
        &gateway,
        &devices,
        json!({"name": "T-1", "asset_id": asset["id"], "kind": "temperature sensor"}),
    )
    .await;
    let device_id = device["id"].as_str().unwrap();
    let readings = format!("{devices}/{device_id}/readings");
    let first = create(&gateway, &readings, json!({"metric": "temperature", "value": 21.5, "unit": "°C", "recorded_at": "2026-12-01T10:00:00+01:00"})).await;
    let second = create(
        &gateway,
        &readings,
        json!({"metric": "temperature", "value": -3}),
    )
    .await;

    // Assert: what was stored, read with iot:read.
    assert_eq!(first["recorded_at"], "2026-12-01T09:00:00.000000Z");
    assert_eq!(first["value"], 21.5);
    assert_eq!(second["value"], -3.0);
    assert_eq!(second["unit"], Value::Null);
    assert_eq!(device["asset_id"], asset["id"]);
    let got = reader.get(&format!("{devices}/{device_id}")).await;
    assert_eq!(got.body, device, "{}", got.text);
    let page = reader.get(&readings).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(page.body["items"], json!([second, first]));
    let one = reader
        .get(&format!("{readings}/{}", first["id"].as_str().unwrap()))
        .await;
    assert_eq!(one.body, first, "{}", one.text);
    assert_eq!(reader.get(&devices).await.body["items"], json!([device]));
    assert_eq!(
        all_pages(&reader, &format!("{readings}?limit=1"))
            .await
            .len(),
        2
    );

    // Scopes: reading needs iot:read, writing assets:write.
    assert_scope(&gateway.get(&readings).await, "iot:read");
    assert_scope(&gateway.get(&devices).await, "iot:read");
    assert_scope(
        &reader
            .call(
                Method::POST,
                &readings,
                Some(json!({"metric": "t", "value": 1})),
            )
            .await,
        "assets:write",
    );
    assert_scope(
        &reader
            .call(
                Method::POST,
                &devices,
                Some(json!({"name": "x", "asset_id": asset["id"]})),
            )
            .await,
        "assets:write",
    );

    // Validation names the field.
    let unknown = "0190d9a0-0000-7000-8000-000000000000";
    assert_field(
        &gateway
            .call(
                Method::POST,
                &devices,
                Some(json!({"name": "x", "asset_id": "nope"})),
            )
            .await,
        "asset_id",
    );
    assert_field(
        &gateway
            .call(
                Method::POST,
                &devices,
                Some(json!({"name": "x", "asset_id": unknown})),
            )
            .await,
        "asset_id",
    );
    assert_field(
        &gateway
            .call(
                Method::POST,
                &devices,
                Some(json!({"name": " ", "asset_id": asset["id"]})),
            )
            .await,
        "name",
    );
    assert_field(
        &gateway
            .call(Method::POST, &devices, Some(json!({"name": "x"})))
            .await,
        "asset_id",
    );
    assert_field(
        &gateway
            .call(
                Method::POST,
                &readings,
                Some(json!({"metric": "t", "value": "hot"})),
            )
            .await,
        "value",
    );
    assert_field(
        &gateway
            .call(
                Method::POST,
                &readings,
                Some(json!({"metric": "", "value": 1})),
            )
            .await,
        "metric",
    );
    assert_field(
        &gateway
            .call(
                Method::POST,
                &readings,
                Some(json!({"metric": "t", "value": 1, "recorded_at": "noon"})),
            )
            .await,
        "recorded_at",
    );
    assert_field(
        &gateway
            .call(
                Method::POST,
                &readings,
                Some(json!({"metric": "t", "value": 1, "unit": "a\u{0}b"})),
            )
            .await,
        "unit",
    );

    // Unknown devices and readings are 404; so is another organisation's device.
    assert_eq!(
        reader
            .get(&format!("{devices}/{unknown}/readings"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        gateway
            .call(
                Method::POST,
                &format!("{devices}/{unknown}/readings"),
                Some(json!({"metric": "t", "value": 1}))
            )
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        reader.get(&format!("{readings}/{unknown}")).await.status,
        StatusCode::NOT_FOUND
    );
    let (org2, root2) = second_org(&app);
    let stranger = app.api(&org2, &root2);
    let theirs = format!("/organizations/{org2}/iot-devices/{device_id}");
    assert_eq!(stranger.get(&theirs).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        stranger.get(&format!("{theirs}/readings")).await.status,
        StatusCode::NOT_FOUND
    );
    let sent = stranger
        .call(
            Method::POST,
            &format!("{theirs}/readings"),
            Some(json!({"bogus": true})),
        )
        .await;
    assert_eq!(sent.status, StatusCode::NOT_FOUND, "{}", sent.text);
    assert_eq!(stranger.get(&readings).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        reader.get(&readings).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // A reading is found only under its own device.
    let other_device = create(
        &gateway,
        &devices,
        json!({"name": "T-2", "asset_id": asset["id"]}),
    )
    .await;
    let wrong = format!(
        "{devices}/{}/readings/{}",
        other_device["id"].as_str().unwrap(),
        first["id"].as_str().unwrap()
    );
    assert_eq!(reader.get(&wrong).await.status, StatusCode::NOT_FOUND);
}

async fn form_submissions_and_users_are_guarded_by_their_scopes(backend: Backend) {
    // Arrange: a work order, a user sync key, a field app and a reader of forms and users.
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let admin = app.api(&org, &root);
    let order = create(
        &admin,
        &format!("/organizations/{org}/work-orders"),
        json!({"title": "Inspect AHU-01", "priority": "Medium"}),
    )
    .await;
    let order_id = order["id"].as_str().unwrap();
    let hr = app.api(&org, &key_with(&admin, "HR sync", &["users:write"]).await);
    let field = app.api(
        &org,
        &key_with(&admin, "field app", &["work-orders:write"]).await,
    );
    let reader = app.api(
        &org,
        &key_with(&admin, "reader", &["forms:read", "users:read"]).await,
    );
    let users = format!("/organizations/{org}/users");
    let forms = format!("/organizations/{org}/work-orders/{order_id}/form-submissions");

    // Act
    let tech = create(
        &hr,
        &users,
        json!({"name": "Ada Tech", "email": "Ada@Example.com"}),
    )
    .await;
    let boss = create(
        &hr,
        &users,
        json!({"name": "Bo", "email": "bo@example.com", "role": "Supervisor"}),
    )
    .await;
    let answers = json!({"filter_clean": true, "pressure_bar": 2.5, "notes": "ok"});
    let form = create(
        &field,
        &forms,
        json!({"form": "Safety checklist", "answers": answers, "submitted_by": tech["id"]}),
    )
    .await;

    // Assert: users.
    assert_eq!(tech["email"], "ada@example.com");
    assert_eq!(tech["role"], "Technician");
    assert_eq!(boss["role"], "Supervisor");
    assert_eq!(reader.get(&users).await.body["items"], json!([boss, tech]));
    assert_eq!(
        reader
            .get(&format!("{users}/{}", tech["id"].as_str().unwrap()))
            .await
            .body,
        tech
    );
    assert_scope(&field.get(&users).await, "users:read");
    assert_scope(
        &reader
            .call(
                Method::POST,
                &users,
                Some(json!({"name": "x", "email": "x@y.z"})),
            )
            .await,
        "users:write",
    );
    assert_field(
        &hr.call(
            Method::POST,
            &users,
            Some(json!({"name": "Ada 2", "email": "ADA@example.com"})),
        )
        .await,
        "email",
    );
    assert_field(
        &hr.call(
            Method::POST,
            &users,
            Some(json!({"name": "x", "email": "not-an-address"})),
        )
        .await,
        "email",
    );
    assert_field(
        &hr.call(
            Method::POST,
            &users,
            Some(json!({"name": "x", "email": "a@b", "role": "Boss"})),
        )
        .await,
        "role",
    );
    assert_field(
        &hr.call(Method::POST, &users, Some(json!({"email": "a@b"})))
            .await,
        "name",
    );

    // Form submissions.
    assert_eq!(form["answers"], answers);
    assert_eq!(form["work_order_id"], order_id);
    assert_eq!(form["submitted_by"], tech["id"]);
    assert_eq!(reader.get(&forms).await.body["items"], json!([form]));
    assert_eq!(
        reader
            .get(&format!("{forms}/{}", form["id"].as_str().unwrap()))
            .await
            .body,
        form
    );
    assert_scope(&field.get(&forms).await, "forms:read");
    assert_scope(
        &reader
            .call(
                Method::POST,
                &forms,
                Some(json!({"form": "x", "answers": {}})),
            )
            .await,
        "work-orders:write",
    );
    assert_field(
        &field
            .call(
                Method::POST,
                &forms,
                Some(json!({"form": "x", "answers": [1]})),
            )
            .await,
        "answers",
    );
    assert_field(
        &field
            .call(
                Method::POST,
                &forms,
                Some(json!({"form": "", "answers": {}})),
            )
            .await,
        "form",
    );
    let unknown = "0190d9a0-0000-7000-8000-000000000000";
    assert_field(
        &field
            .call(
                Method::POST,
                &forms,
                Some(json!({"form": "x", "answers": {}, "submitted_by": unknown})),
            )
            .await,
        "submitted_by",
    );
    let missing = format!("/organizations/{org}/work-orders/{unknown}/form-submissions");
    assert_eq!(
        field
            .call(
                Method::POST,
                &missing,
                Some(json!({"form": "x", "answers": {}}))
            )
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(reader.get(&missing).await.status, StatusCode::NOT_FOUND);

    // Tenancy: another organisation sees none of it, and cannot name this one's user.
    let (org2, root2) = second_org(&app);
    let stranger = app.api(&org2, &root2);
    assert_eq!(
        stranger
            .get(&format!(
                "/organizations/{org2}/users/{}",
                tech["id"].as_str().unwrap()
            ))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        stranger
            .get(&format!(
                "/organizations/{org2}/work-orders/{order_id}/form-submissions"
            ))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(stranger.get(&forms).await.status, StatusCode::NOT_FOUND);
    let their_order = create(
        &stranger,
        &format!("/organizations/{org2}/work-orders"),
        json!({"title": "t", "priority": "Low"}),
    )
    .await;
    let their_forms = format!(
        "/organizations/{org2}/work-orders/{}/form-submissions",
        their_order["id"].as_str().unwrap()
    );
    assert_field(
        &stranger
            .call(
                Method::POST,
                &their_forms,
                Some(json!({"form": "x", "answers": {}, "submitted_by": tech["id"]})),
            )
            .await,
        "submitted_by",
    );
    assert!(
        stranger
            .get(&format!("/organizations/{org2}/users"))
            .await
            .body["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // The same address may be used in another organisation.
    create(
        &stranger,
        &format!("/organizations/{org2}/users"),
        json!({"name": "Ada", "email": "ada@example.com"}),
    )
    .await;
}

test_support::backend_tests!(
    iot_devices_and_readings_are_written_with_assets_write_and_read_with_iot_read,
    form_submissions_and_users_are_guarded_by_their_scopes,
);
