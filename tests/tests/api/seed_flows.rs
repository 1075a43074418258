//! The seeds' four integration flows, end to end on the real binary (SQLite and Postgres),
//! each with a key that holds only the scopes its integration needs.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::data_reads::{all_pages, assert_scope, create, ids, key_with, settle};
use crate::helpers::{Backend, spawn_app};

async fn an_erp_polls_completed_work_orders_getting_each_completion_once(backend: Backend) {
    // Arrange: an ERP key that may only read work orders; two orders, one already done.
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let admin = app.api(&org, &root);
    let orders = format!("/organizations/{org}/work-orders");
    let erp = app.api(
        &org,
        &key_with(&admin, "SAP ERP Integration", &["work-orders:read"]).await,
    );
    let a = create(&admin, &orders, json!({"title": "A", "priority": "Low"})).await;
    let b = create(&admin, &orders, json!({"title": "B", "priority": "High"})).await;
    let complete = |id: String| {
        let admin = &admin;
        let path = format!("{orders}/{id}");
        async move {
            let r = admin
                .call(Method::PATCH, &path, Some(json!({"status": "Completed"})))
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            settle().await;
        }
    };
    complete(a["id"].as_str().unwrap().to_owned()).await;

    // Act: the first poll reads everything completed so far and keeps the mark.
    let mut mark = "1970-01-01T00:00:00Z".to_owned();
    let mut received = Vec::new();
    let mut poll = async || {
        let page = erp
            .get(&format!("{orders}?status=Completed&completed_since={mark}"))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        if let Some(last) = page.body["items"].as_array().unwrap().last() {
            mark = last["completed_at"].as_str().unwrap().to_owned();
        }
        let got = ids(&page);
        received.extend(got.clone());
        got
    };
    let first = poll().await;
    let quiet = poll().await;
    complete(b["id"].as_str().unwrap().to_owned()).await;
    let second = poll().await;
    let third = poll().await;

    // Assert: each completion exactly once, nothing on a quiet poll.
    assert_eq!(first, [a["id"].as_str().unwrap()]);
    assert!(quiet.is_empty());
    assert_eq!(second, [b["id"].as_str().unwrap()]);
    assert!(third.is_empty());
    assert_eq!(received.len(), 2);
    assert_scope(
        &erp.call(
            Method::POST,
            &orders,
            Some(json!({"title": "x", "priority": "Low"})),
        )
        .await,
        "work-orders:write",
    );
}

async fn a_scada_system_opens_a_work_order_on_a_fault_and_sends_the_reading(backend: Backend) {
    // Arrange: the asset and its sensor exist; SCADA may write work orders and assets' data.
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let admin = app.api(&org, &root);
    let asset = create(
        &admin,
        &format!("/organizations/{org}/assets"),
        json!({"name": "AHU-01", "kind": "HVAC"}),
    )
    .await;
    let sensor = create(
        &admin,
        &format!("/organizations/{org}/iot-devices"),
        json!({"name": "AHU-01 supply temp", "asset_id": asset["id"]}),
    )
    .await;
    let scada = app.api(
        &org,
        &key_with(
            &admin,
            "SCADA fault feed",
            &["work-orders:write", "assets:write"],
        )
        .await,
    );

    // Act: the reading that tripped the alarm, then the work order for the fault.
    let readings = format!(
        "/organizations/{org}/iot-devices/{}/readings",
        sensor["id"].as_str().unwrap()
    );
    let reading = create(
        &scada,
        &readings,
        json!({"metric": "supply_temp", "value": 31.2, "unit": "°C"}),
    )
    .await;
    let orders = format!("/organizations/{org}/work-orders");
    let order = create(&scada, &orders, json!({
        "title": "Equipment Fault - AHU-01",
        "priority": "High",
        "description": format!("Fault code F47 detected (reading {})", reading["id"].as_str().unwrap()),
        "asset_id": asset["id"],
    })).await;

    // Assert: open, on the asset; the SCADA key cannot read anything back.
    assert_eq!(order["status"], "Open");
    assert_eq!(order["asset_id"], asset["id"]);
    let got = admin
        .get(&format!("{orders}/{}", order["id"].as_str().unwrap()))
        .await;
    assert_eq!(got.body, order);
    assert_scope(&scada.get(&orders).await, "work-orders:read");
    assert_scope(&scada.get(&readings).await, "iot:read");
}

async fn a_field_app_updates_a_work_order_and_submits_its_checklist(backend: Backend) {
    // Arrange: an open work order and a technician; the field app reads and writes orders.
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let admin = app.api(&org, &root);
    let orders = format!("/organizations/{org}/work-orders");
    let order = create(
        &admin,
        &orders,
        json!({"title": "Replace filter", "priority": "Medium"}),
    )
    .await;
    let tech = create(
        &admin,
        &format!("/organizations/{org}/users"),
        json!({"name": "Ada", "email": "ada@example.com"}),
    )
    .await;
    let field = app.api(
        &org,
        &key_with(
            &admin,
            "Field app",
            &["work-orders:read", "work-orders:write"],
        )
        .await,
    );
    let path = format!("{orders}/{}", order["id"].as_str().unwrap());

    // Act: start, submit the checklist, complete.
    let started = field
        .call(Method::PATCH, &path, Some(json!({"status": "InProgress"})))
        .await;
    let form = create(
        &field,
        &format!("{path}/form-submissions"),
        json!({
            "form": "Filter replacement checklist",
            "answers": {"old_filter_photo": true, "pressure_drop_pa": 120},
            "submitted_by": tech["id"],
        }),
    )
    .await;
    let done = field
        .call(
            Method::PATCH,
            &path,
            Some(json!({"status": "Completed", "description": "Filter replaced"})),
        )
        .await;

    // Assert
    assert_eq!(started.status, StatusCode::OK, "{}", started.text);
    assert_eq!(started.body["status"], "InProgress");
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(done.body["status"], "Completed");
    assert_eq!(done.body["description"], "Filter replaced");
    assert!(done.body["completed_at"].is_string());
    assert_eq!(field.get(&path).await.body, done.body);
    assert_eq!(form["submitted_by"], tech["id"]);
    // Reading forms back needs forms:read, which the field app does not hold.
    assert_scope(
        &field.get(&format!("{path}/form-submissions")).await,
        "forms:read",
    );
}

async fn a_data_warehouse_exports_work_orders_assets_and_iot_data(backend: Backend) {
    // Arrange: three work orders, two assets with a sensor each and readings.
    let app = spawn_app(backend).await;
    let (org, root) = app.bootstrap();
    let admin = app.api(&org, &root);
    let base = format!("/organizations/{org}");
    for n in 0..3 {
        create(
            &admin,
            &format!("{base}/work-orders"),
            json!({"title": format!("WO {n}"), "priority": "Low"}),
        )
        .await;
    }
    let mut readings_made = 0;
    for n in 0..2 {
        let asset = create(
            &admin,
            &format!("{base}/assets"),
            json!({"name": format!("Asset {n}"), "location": "Site 1"}),
        )
        .await;
        let device = create(
            &admin,
            &format!("{base}/iot-devices"),
            json!({"name": format!("Sensor {n}"), "asset_id": asset["id"]}),
        )
        .await;
        for v in 0..3 {
            let path = format!(
                "{base}/iot-devices/{}/readings",
                device["id"].as_str().unwrap()
            );
            create(&admin, &path, json!({"metric": "temperature", "value": v})).await;
            readings_made += 1;
        }
    }
    let scopes = [
        "work-orders:read",
        "assets:read",
        "locations:read",
        "iot:read",
    ];
    settle().await;
    let warehouse = app.api(&org, &key_with(&admin, "Data warehouse", &scopes).await);

    // Act: a full export, one small page at a time.
    let since = "1970-01-01T00:00:00Z";
    let orders = all_pages(
        &warehouse,
        &format!("{base}/work-orders?updated_since={since}&limit=2"),
    )
    .await;
    let assets = all_pages(
        &warehouse,
        &format!("{base}/assets?updated_since={since}&limit=1"),
    )
    .await;
    let locations = all_pages(&warehouse, &format!("{base}/locations?limit=1")).await;
    let devices = all_pages(&warehouse, &format!("{base}/iot-devices?limit=1")).await;
    let mut readings = Vec::new();
    for device in &devices {
        readings.extend(
            all_pages(
                &warehouse,
                &format!("{base}/iot-devices/{device}/readings?limit=2"),
            )
            .await,
        );
    }

    // Assert: everything, once each.
    assert_eq!(orders.len(), 3);
    assert_eq!(assets.len(), 2);
    assert_eq!(locations.len(), 1);
    assert_eq!(devices.len(), 2);
    assert_eq!(readings.len(), readings_made);
    let mut unique = readings.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), readings.len());
    // It reads only: no writes, no keys.
    assert_scope(
        &warehouse
            .call(
                Method::POST,
                &format!("{base}/assets"),
                Some(json!({"name": "x"})),
            )
            .await,
        "assets:write",
    );
    assert_eq!(warehouse.list_keys("").await.status, StatusCode::FORBIDDEN);
}

test_support::backend_tests!(
    an_erp_polls_completed_work_orders_getting_each_completion_once,
    a_scada_system_opens_a_work_order_on_a_fault_and_sends_the_reading,
    a_field_app_updates_a_work_order_and_submits_its_checklist,
    a_data_warehouse_exports_work_orders_assets_and_iot_data,
);
