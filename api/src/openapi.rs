//! The OpenAPI document (generated from the handlers' annotations) and its interactive
//! page, whose assets are inside the binary (no CDN).
//!
//! The paths come from the routers themselves ([`crate::routes`]: each handler's
//! annotation gives its path, method, parameters, body, success response and scope);
//! [`complete_document`] then adds what is the same everywhere, so that the document
//! cannot drift from the server: the error statuses each operation can answer (each as
//! `application/problem+json` with the `Problem` schema), and the `RateLimit-*`,
//! `Retry-After`, `ETag` and `Location` headers.

use axum::Router;
use serde_json::{Map, Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

use crate::app::AppState;

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "keyledger", description = "An event-sourced API key service."),
    // The schemas that only query parameters name (`routes!` collects those of bodies and
    // responses, not of `IntoParams`); a test checks every `$ref` resolves.
    components(schemas(
        ScopeName,
        crate::routes::keys::KeyStatusName,
        crate::routes::keys::EnvironmentName,
        crate::routes::usage::GranularityName,
        crate::routes::audit::IncludeName,
    )),
    modifiers(&BearerAuth),
    tags((name = "api-keys", description = "Manage keys"), (name = "usage", description = "Usage analytics and the calling key"), (name = "verify", description = "Protect other APIs: verify a key, gateway auth"), (name = "platform", description = "Health and the scope catalogue"), (name = "work-orders", description = "Work orders (`work-orders:read`, `work-orders:write`)"), (name = "assets", description = "Assets (`assets:read`, `assets:write`)"), (name = "locations", description = "Locations (`locations:read`)"), (name = "iot", description = "IoT devices and sensor readings (`iot:read`; written with `assets:write`)"), (name = "forms", description = "Form submissions on work orders (`forms:read`; written with `work-orders:write`)"), (name = "users", description = "The organisation's users, technicians (`users:read`, `users:write`)"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("kl_live_...")
                    .build(),
            ),
        );
    }
}

/// Where the Swagger UI's assets are served (inside the binary).
const UI_PATH: &str = "/swagger-ui";

/// `GET /openapi.json` (`document`), and `GET /docs`: the interactive page, answered
/// directly (200, not a redirect) with its assets under `/swagger-ui/`.
pub fn router(document: utoipa::openapi::OpenApi) -> Router<AppState> {
    let ui = SwaggerUi::new(UI_PATH).url("/openapi.json", document);
    Router::new()
        .merge(ui)
        .route("/docs", axum::routing::get(docs))
        .route("/docs/", axum::routing::get(docs))
}

/// The Swagger UI page, with a `<base>` so its relative asset links resolve under
/// `/swagger-ui/`.
async fn docs() -> axum::response::Response {
    use axum::response::IntoResponse;
    let config = std::sync::Arc::new(utoipa_swagger_ui::Config::from("/openapi.json"));
    match utoipa_swagger_ui::serve("index.html", config) {
        Ok(Some(file)) => {
            let html = String::from_utf8_lossy(&file.bytes).replacen(
                "<head>",
                &format!("<head><base href=\"{UI_PATH}/\">"),
                1,
            );
            axum::response::Html(html).into_response()
        }
        _ => crate::http::error::ApiError::Internal("the Swagger UI page is missing".into())
            .into_response(),
    }
}

/// A scope of the catalogue (`GET /scopes`): the values a key's `scopes` may hold.
#[derive(Debug)]
pub struct ScopeName;

impl PartialSchema for ScopeName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(domain::Scope::all().names()))
            .description(Some("A scope of the catalogue"))
            .into()
    }
}

impl ToSchema for ScopeName {}

/// The document's common parts: title, shared schemas, the bearer scheme, tags. The routers
/// add the paths.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The served document: the routers' document with the contract's common parts added (see
/// the module comment).
pub fn complete_document(generated: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let Ok(mut value) = serde_json::to_value(&generated) else {
        return generated;
    };
    complete(&mut value);
    // A test checks that the completed document reads back; should it ever not, the
    // annotations' document is still served.
    serde_json::from_value(value).unwrap_or(generated)
}

/// The error statuses an operation can answer, with what each means.
fn error_description(status: u16) -> &'static str {
    match status {
        400 => "`malformed_json`: the body is not JSON; `bad_request`: a header is unusable",
        401 => "`invalid_token`: no valid bearer token (with `WWW-Authenticate`)",
        403 => {
            "`insufficient_scope` (the scope is named), `scope_not_held`, `ip_not_allowed`, \
             `plan_required`, `key_limit_reached`, or (gateway) `no_route_rule`"
        }
        404 => "`not_found`: no such resource in this organisation",
        409 => {
            "`key_revoked`, `key_expired`, `key_rotated`, `already_exists`, or `conflict` \
             (concurrent writers won every retry, or the same `Idempotency-Key` is in \
             flight: send it again)"
        }
        412 => "`precondition_failed`: `If-Match` names an older version",
        413 => "`payload_too_large`: the body is over 64 KiB",
        415 => "`unsupported_media_type`: the body is not `application/json`",
        422 => {
            "`validation_failed` (every invalid field is named in `errors`) or \
             `idempotency_key_reused`"
        }
        429 => {
            "`rate_limited`: over the key's rate limit; `too_many_failed_attempts`: too many \
             wrong tokens for this key id lately; `verification_busy`: too many unproven \
             tokens waiting (see `Retry-After`)"
        }
        503 => "`unavailable`: a store is unreachable; retry later",
        _ => "an error",
    }
}

fn success_description(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No content",
        _ => "Success",
    }
}

fn header_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/headers/{name}") })
}

/// The headers that several responses carry, under `components.headers`.
fn common_headers() -> Value {
    let int = |description: &str| json!({"description": description, "schema": {"type": "integer", "minimum": 0}});
    let text =
        |description: &str| json!({"description": description, "schema": {"type": "string"}});
    json!({
        "RateLimit-Limit": int("Requests per minute the key may make."),
        "RateLimit-Remaining": int("Requests it may still make now."),
        "RateLimit-Reset": int("Seconds until the allowance is whole again."),
        "RateLimit-Policy": text("The limit as the IETF draft's policy, e.g. `500;w=60`."),
        "RateLimit": text("The IETF draft's combined field."),
        "Retry-After": int("Seconds until a request may succeed."),
        "ETag": text("The key's version, quoted; send it back in `If-Match`."),
        "Location": text("Where the created resource is."),
    })
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Operations whose success response carries the key's version as `ETag`.
const WITH_ETAG: [&str; 6] = [
    "create_key",
    "get_key",
    "update_key",
    "revoke_key",
    "delete_key",
    "rotate_key",
];

/// Operations whose 201 carries `Location`.
const WITH_LOCATION: [&str; 9] = [
    "declare_scope",
    "create_key",
    "rotate_key",
    "create_work_order",
    "create_asset",
    "create_device",
    "create_reading",
    "create_form_submission",
    "create_user",
];

/// Operations whose body may be left out.
const OPTIONAL_BODY: [&str; 2] = ["revoke_key", "rotate_key"];

/// Management operations that change a key (409 applies).
const CHANGES_KEYS: [&str; 5] = [
    "create_key",
    "update_key",
    "revoke_key",
    "delete_key",
    "rotate_key",
];

fn complete(doc: &mut Value) {
    let Some(components) = doc.get_mut("components").and_then(Value::as_object_mut) else {
        return;
    };
    components.insert("headers".into(), common_headers());
    // A work-order PATCH must change something.
    if let Some(patch) = components
        .get_mut("schemas")
        .and_then(|s| s.get_mut("UpdateWorkOrderRequest"))
        .and_then(Value::as_object_mut)
    {
        patch.insert("minProperties".into(), json!(1));
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        for name in METHODS {
            if let Some(op) = item.get_mut(name).and_then(Value::as_object_mut) {
                complete_operation(path, op);
            }
        }
    }
}

fn complete_operation(path: &str, op: &mut Map<String, Value>) {
    let id = op
        .get("operationId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    // Behind the auth layer: the operations that declare a bearer requirement (the auth
    // layer's access table is read from the same declarations).
    let keyed = op.contains_key("security");
    // An optional header or query parameter is left out, never `null`: drop the `null`
    // that `Option<T>` adds to its type, or clients send the text "null".
    if let Some(ps) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        for p in ps {
            if let Some(types) = p
                .get_mut("schema")
                .and_then(|s| s.get_mut("type"))
                .and_then(Value::as_array_mut)
            {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types[0].clone();
                    if let Some(schema) = p.get_mut("schema").and_then(Value::as_object_mut) {
                        schema.insert("type".into(), only);
                    }
                }
            }
        }
    }
    let params: Vec<(String, String)> = op
        .get("parameters")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let get = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                    (get("in"), get("name"))
                })
                .collect()
        })
        .unwrap_or_default();
    let has_query = params.iter().any(|(at, _)| at == "query");
    let has_header = params.iter().any(|(at, _)| at == "header");
    let has_if_match = params.iter().any(|(_, n)| n == "If-Match");
    let has_body = op.contains_key("requestBody");
    if OPTIONAL_BODY.contains(&id.as_str())
        && let Some(body) = op.get_mut("requestBody").and_then(Value::as_object_mut)
    {
        body.insert("required".into(), json!(false));
    }

    let mut errors: Vec<u16> = Vec::new();
    if keyed {
        errors.extend([401, 403, 429, 503]);
        if path.contains('{') {
            errors.push(404);
        }
        if has_body || has_header {
            errors.push(400);
        }
        if has_body {
            errors.extend([413, 415, 422]);
        }
        if has_query || has_header {
            errors.push(422);
        }
        if CHANGES_KEYS.contains(&id.as_str()) {
            errors.push(409);
        }
        if has_if_match {
            errors.push(412);
        }
    }

    let responses = op
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    let Some(responses) = responses else {
        return;
    };
    for status in errors {
        responses
            .entry(status.to_string())
            .or_insert_with(|| json!({}));
    }
    for (code, response) in responses.iter_mut() {
        let status: u16 = code.parse().unwrap_or(0);
        let Some(response) = response.as_object_mut() else {
            continue;
        };
        let described = response
            .get("description")
            .and_then(Value::as_str)
            .is_some_and(|d| !d.is_empty());
        // /readyz's 503 is its own JSON body, not a problem.
        let problem = status >= 400 && keyed;
        if !described {
            let text = if status >= 400 {
                error_description(status)
            } else {
                success_description(status)
            };
            response.insert("description".into(), json!(text));
        }
        if problem {
            response.insert(
                "content".into(),
                json!({"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}),
            );
        }
        let mut headers = Map::new();
        if keyed && status != 401 {
            for name in [
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
                "RateLimit-Policy",
                "RateLimit",
            ] {
                headers.insert(name.into(), header_ref(name));
            }
        }
        if status == 429 {
            headers.insert("Retry-After".into(), header_ref("Retry-After"));
        }
        if (200..300).contains(&status) && WITH_ETAG.contains(&id.as_str()) {
            headers.insert("ETag".into(), header_ref("ETag"));
        }
        if status == 201 && WITH_LOCATION.contains(&id.as_str()) {
            headers.insert("Location".into(), header_ref("Location"));
        }
        if !headers.is_empty() {
            response.insert("headers".into(), Value::Object(headers));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::auth::scopes::{Access, AccessTable};
    use crate::routes;

    fn generated() -> utoipa::openapi::OpenApi {
        utoipa_axum::router::OpenApiRouter::<AppState>::with_openapi(base())
            .merge(routes::public())
            .merge(routes::protected())
            .into_openapi()
    }

    fn served() -> Value {
        serde_json::to_value(complete_document(generated())).unwrap()
    }

    #[test]
    fn it_should_serve_each_route_of_the_access_table_with_the_scope_it_declares() {
        let doc = served();
        let table = AccessTable::from_openapi(routes::protected().get_openapi()).unwrap();
        assert!(table.iter().count() >= 18, "routes went missing");
        for (method, path, rule) in table.iter() {
            let op = &doc["paths"][path][method.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "{method} {path} is not in the document");
            let want = match rule {
                Access::AnyKey => json!([]),
                Access::Scope(scope) => json!([scope.as_str()]),
            };
            assert_eq!(
                op["security"],
                json!([{ "bearer": want }]),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn it_should_resolve_every_reference_of_the_served_document() {
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let doc = served();
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let pointer = r.trim_start_matches('#');
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
    }

    #[test]
    fn it_should_give_every_operation_its_own_id() {
        let doc = served();
        let mut ids = std::collections::HashSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap_or_default().to_owned();
                assert!(
                    ids.insert(id.clone()),
                    "{method} {path}: operationId {id} twice"
                );
            }
        }
    }

    #[test]
    fn it_should_ask_for_a_key_on_every_operation_but_health() {
        let doc = served();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let public = ["/healthz", "/readyz", "/scopes"].contains(&path.as_str());
                assert_eq!(op.get("security").is_none(), public, "{method} {path}");
            }
        }
    }

    #[test]
    fn it_should_read_back_the_completed_document() {
        let generated = serde_json::to_value(generated()).unwrap();
        let mut completed = generated.clone();
        complete(&mut completed);
        let read_back: utoipa::openapi::OpenApi =
            serde_json::from_value(completed.clone()).unwrap();
        assert_eq!(serde_json::to_value(read_back).unwrap(), completed);
        assert_ne!(completed, generated);
    }

    #[test]
    fn it_should_describe_every_response_and_serve_errors_as_problems() {
        let doc = served();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, response) in op["responses"].as_object().unwrap() {
                    let described = response["description"].as_str().unwrap_or("");
                    assert!(!described.is_empty(), "{method} {path} {status}");
                    if status.starts_with('4') {
                        assert!(
                            response["content"]["application/problem+json"]["schema"]["$ref"]
                                .as_str()
                                .is_some_and(|r| r.ends_with("/Problem")),
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn it_should_make_list_filters_query_parameters_and_bodies_of_revoke_and_rotate_optional() {
        let doc = served();
        let list = &doc["paths"]["/organizations/{org}/work-orders"]["get"];
        for p in list["parameters"].as_array().unwrap() {
            let name = p["name"].as_str().unwrap();
            let want = if name == "org" { "path" } else { "query" };
            assert_eq!(p["in"], want, "{name}");
            if name != "org" {
                assert_ne!(p["required"], json!(true), "{name}");
            }
        }
        for path in [
            "/organizations/{org}/api-keys/{id}/revoke",
            "/organizations/{org}/api-keys/{id}/rotate",
        ] {
            let body = &doc["paths"][path]["post"]["requestBody"];
            assert_eq!(body["required"], json!(false), "{path}");
            let schema = &body["content"]["application/json"]["schema"];
            assert!(schema["$ref"].is_string(), "{path}: {schema}");
        }
        let limit = doc["paths"]["/organizations/{org}/api-keys"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap()
            .clone();
        assert_eq!(limit["schema"]["minimum"], 1);
        assert_eq!(limit["schema"]["maximum"], 100);
        let rotated =
            &doc["paths"]["/organizations/{org}/api-keys/{id}/rotate"]["post"]["responses"]["409"];
        assert!(
            rotated["description"]
                .as_str()
                .unwrap()
                .contains("key_rotated")
        );
        let limited = &doc["paths"]["/organizations/{org}/work-orders"]["get"]["responses"]["429"];
        assert!(limited["headers"]["Retry-After"].is_object());
    }
}
