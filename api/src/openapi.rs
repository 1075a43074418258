//! The OpenAPI document (generated from the handlers' annotations) and its interactive
//! page, whose assets are inside the binary (no CDN).

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::app::AppState;
use crate::error::{FieldError, Problem};
use crate::routes::{keys, platform, usage};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "keyledger", description = "An event-sourced API key service."),
    paths(
        platform::healthz,
        platform::readyz,
        keys::create_key,
        keys::list_keys,
        keys::get_key,
        keys::update_key,
        keys::revoke_key,
        keys::delete_key,
        keys::rotate_key,
        usage::key_usage,
        usage::org_usage,
        usage::whoami,
        crate::routes::audit::key_events,
        crate::routes::data::work_orders::list_work_orders,
        crate::routes::data::work_orders::create_work_order,
        crate::routes::data::work_orders::get_work_order,
        crate::routes::data::work_orders::update_work_order,
        crate::routes::data::assets::list_assets,
        crate::routes::data::assets::create_asset,
        crate::routes::data::assets::list_locations,
    ),
    components(schemas(
        Problem,
        FieldError,
        keys::CreateKeyRequest,
        keys::UpdateKeyRequest,
        keys::RevokeKeyRequest,
        keys::RotateKeyRequest,
        keys::CreatedKeyResponse,
        keys::KeySummary,
        keys::KeyPage,
        keys::KeyDetails,
        keys::UsageSummary,
        usage::UsageCountsView,
        usage::UsageTotalsView,
        usage::BucketView,
        usage::RouteUsageView,
        usage::KeyUsageResponse,
        usage::OrgUsageResponse,
        usage::RateLimitView,
        usage::WhoAmI,
        crate::routes::data::work_orders::CreateWorkOrderRequest,
        crate::routes::data::work_orders::UpdateWorkOrderRequest,
        crate::routes::data::work_orders::WorkOrder,
        crate::routes::data::work_orders::WorkOrderPage,
        crate::routes::data::work_orders::Priority,
        crate::routes::data::work_orders::WorkOrderStatus,
        crate::routes::data::assets::CreateAssetRequest,
        crate::routes::data::assets::Asset,
        crate::routes::data::assets::AssetPage,
        crate::routes::data::assets::Location,
        crate::routes::data::assets::LocationPage,
    )),
    modifiers(&BearerAuth),
    tags((name = "api-keys", description = "Manage keys"), (name = "usage", description = "Usage analytics and the calling key"), (name = "platform", description = "Health"))
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

/// `GET /openapi.json`, and `GET /docs`: the interactive page, answered directly (200,
/// not a redirect) with its assets under `/swagger-ui/`.
pub fn router() -> Router<AppState> {
    let ui = SwaggerUi::new(UI_PATH).url("/openapi.json", ApiDoc::openapi());
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
        _ => crate::error::ApiError::Internal("the Swagger UI page is missing".into())
            .into_response(),
    }
}
