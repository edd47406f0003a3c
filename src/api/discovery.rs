//! `GET /api/v1/discovery`: the OpenAPI 3.1 description of fedgate's API, where Quay serves its
//! Swagger document. It is built from the route table (`http::router::routes`), whose every
//! entry carries its handlers' `#[utoipa::path]` annotations, so the document lists exactly
//! the routes the router serves. It is built and serialized once per process (a few
//! milliseconds); each answer only adds the gateway's URL.

use std::sync::LazyLock;

use axum::extract::State;
use axum::response::IntoResponse;
use http::header::CONTENT_TYPE;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, InfoBuilder, LicenseBuilder, OpenApi, OpenApiBuilder, PathItem, Paths,
};
use utoipa::{PartialSchema, ToSchema};

use crate::app::AppState;
use crate::http::error::ErrorBody;
use crate::http::router::routes;

/// The security scheme of the admin API: `Authorization: Bearer <api token>`. An operation's
/// requirement lists the token scope it needs.
pub const API_TOKEN: &str = "api_token";
/// Basic `<robot full name>:<OIDC identity token>` (the exchange).
const ROBOT_IDENTITY: &str = "robot_identity";
/// Basic `<robot full name>:<robot token or minted token>` (`/v2/auth`).
const ROBOT_PASSWORD: &str = "robot_password";

/// The document without its `servers`, serialized: it depends on the code alone.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    serde_json::to_string(&openapi()).expect("the OpenAPI document serializes to JSON")
});

/// The document as JSON, with `public_url` as its server.
pub fn document_json(public_url: &str) -> String {
    let servers = serde_json::json!([{ "url": public_url.trim_end_matches('/') }]);
    // DOCUMENT is a JSON object without `servers`: open it, add them, keep the rest.
    let rest = DOCUMENT.strip_prefix('{').unwrap_or_default();
    format!("{{\"servers\":{servers},{rest}")
}

/// The document, without `servers` (they depend on the configuration).
pub fn openapi() -> OpenApi {
    let mut paths = Paths::new();
    // The error answers (`AdminErrors`) name this schema without bringing it along.
    let mut schemas = vec![(ErrorBody::name().into_owned(), ErrorBody::schema())];
    for (_, (route_schemas, route_paths, _)) in routes() {
        schemas.extend(route_schemas);
        paths.merge(route_paths);
    }
    for item in paths.paths.values_mut() {
        one_id_per_method(item);
    }
    let http = |scheme, description: &str| {
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(scheme)
                .description(Some(description))
                .build(),
        )
    };
    let components = ComponentsBuilder::new()
        .schemas_from_iter(schemas)
        .security_scheme(
            API_TOKEN,
            http(
                HttpAuthScheme::Bearer,
                "An API token from `fedgate token create`; each operation names the scope it needs",
            ),
        )
        .security_scheme(
            ROBOT_IDENTITY,
            http(
                HttpAuthScheme::Basic,
                "The robot's full name as user, an OIDC identity token as password",
            ),
        )
        .security_scheme(
            ROBOT_PASSWORD,
            http(
                HttpAuthScheme::Basic,
                "The robot's full name as user, its robot token or a minted robot token as password",
            ),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("fedgate")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(env!("CARGO_PKG_DESCRIPTION")))
                .license(Some(
                    LicenseBuilder::new()
                        .name(env!("CARGO_PKG_LICENSE"))
                        .identifier(Some(env!("CARGO_PKG_LICENSE")))
                        .build(),
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .build()
}

/// A handler annotated with several methods (`method(get, post)`) describes one operation per
/// method under one operation id; OpenAPI wants the ids unique, so all but the first method's
/// get the method appended (`federationRobotTokenPost`).
fn one_id_per_method(item: &mut PathItem) {
    let mut seen = Vec::new();
    let operations = [
        ("Get", &mut item.get),
        ("Put", &mut item.put),
        ("Post", &mut item.post),
        ("Delete", &mut item.delete),
    ];
    for (method, operation) in operations {
        if let Some(id) = operation.as_mut().and_then(|o| o.operation_id.as_mut()) {
            if seen.contains(id) {
                id.push_str(method);
            } else {
                seen.push(id.clone());
            }
        }
    }
}

/// The API's description (OpenAPI 3.1)
///
/// Every route fedgate serves, with its parameters, bodies and answers.
#[utoipa::path(
    get,
    path = "/api/v1/discovery",
    operation_id = "discovery",
    tag = "discovery",
    responses((status = 200, description = "The OpenAPI document", body = serde_json::Value)),
)]
pub async fn document(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "application/json")],
        document_json(&state.config.server.public_url),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_document_is_the_built_one_with_the_gateways_url() {
        let served: serde_json::Value =
            serde_json::from_str(&document_json("https://fed.example/")).unwrap();
        let mut built = serde_json::to_value(openapi()).unwrap();
        built["servers"] = serde_json::json!([{"url": "https://fed.example"}]);
        assert_eq!(served, built);
    }
}
