//! The OpenAPI document and the one route list it is generated from: [`routes`] registers
//! every operation with `utoipa-axum`'s `routes!`, so the router that serves and the document
//! that describes come from the same list (nothing is listed twice). [`document`] then applies
//! the conventions every operation shares, so handlers annotate only what is particular to them:
//!
//! - axum's catch-all `{*path}` templates become OpenAPI's `{path}`;
//! - every `operationId` is derived from method and path (`get_v1_files_path`), hence unique;
//! - every error response (4xx/5xx) is `application/problem+json` with the `Problem` schema
//!   (a `HEAD` error has no body), and the statuses the shared extractors return are listed:
//!   401 and 429 for every operation that takes a token, 400/413/415 for every JSON body, 400
//!   for every tenant path, and a `default` problem for 500/503.
//!
//! Adding an endpoint = one `.routes(routes!(handler))` line in [`routes`].

use std::sync::OnceLock;

use utoipa::openapi::content::Content;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::Response;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::files;
use crate::routes::{
    acl, audit, commands, dead_letters, event_stream, ops, reads, subscriptions, tasks, usage,
};
use crate::state::AppState;

/// The media type of every error body (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every served operation, one line per path (handlers of one path share a line).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(commands::post_command))
        .routes(routes!(tasks::get_task))
        .routes(routes!(reads::stat))
        .routes(routes!(reads::list))
        .routes(routes!(usage::usage))
        .routes(routes!(acl::list_rules, acl::grant))
        .routes(routes!(acl::revoke))
        .routes(routes!(acl::check))
        .routes(routes!(audit::query))
        .routes(routes!(audit::export::export))
        .routes(routes!(audit::verify))
        .routes(routes!(
            files::download::get_file,
            files::download::head_file,
            files::upload::put_file
        ))
        .routes(routes!(files::links::create_link))
        .routes(routes!(files::links::follow_link))
        .routes(routes!(subscriptions::list, subscriptions::create))
        .routes(routes!(subscriptions::delete))
        .routes(routes!(subscriptions::deliveries))
        .routes(routes!(event_stream::stream))
        .routes(routes!(dead_letters::list))
        .routes(routes!(dead_letters::retry))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi))
}

/// The served document (built once per process).
pub fn document() -> utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let (_, mut doc) = routes().split_for_parts();
        apply_conventions(&mut doc);
        doc
    })
    .clone()
}

#[derive(OpenApi)]
#[openapi(
    info(title = "File Engine API", version = "1", description = "Event-sourced multi-tenant file platform. Errors are RFC 9457 problem+json with a stable `code`."),
    components(schemas(crate::error::Problem)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

fn apply_conventions(doc: &mut utoipa::openapi::OpenApi) {
    let paths = std::mem::take(&mut doc.paths.paths);
    for (template, mut item) in paths {
        let path = template.replace("{*", "{");
        let methods = [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("head", &mut item.head),
            ("patch", &mut item.patch),
            ("options", &mut item.options),
            ("trace", &mut item.trace),
        ];
        for (method, operation) in methods {
            if let Some(operation) = operation {
                operation.operation_id = Some(operation_id(method, &path));
                shared_errors(operation, method == "head");
            }
        }
        doc.paths.paths.insert(path, item);
    }
}

/// `get /v1/files/{path}` → `get_v1_files_path`.
fn operation_id(method: &str, path: &str) -> String {
    let words: Vec<&str> = path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    format!("{method}_{}", words.join("_"))
}

fn shared_errors(op: &mut Operation, head: bool) {
    let mut add = |status: &str, why: &str| {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(Response::new(why)));
    };
    if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
        add("401", "missing or invalid token");
        add("429", "rate limited (`Retry-After`)");
    }
    if op
        .request_body
        .as_ref()
        .is_some_and(|b| b.content.contains_key("application/json"))
    {
        add("400", "malformed request");
        add("413", "body over the size limit");
        add("415", "the body must be `application/json`");
    }
    if op.parameters.iter().flatten().any(|p| {
        p.name == "path" && matches!(p.parameter_in, ParameterIn::Path | ParameterIn::Query)
    }) {
        add("400", "invalid path");
    }
    if !head {
        add(
            "default",
            "unexpected error (500 internal, 503 a dependency is unavailable)",
        );
    }
    for (status, response) in op.responses.responses.iter_mut() {
        let error = status == "default" || status.starts_with('4') || status.starts_with('5');
        if let (true, RefOr::T(response)) = (error, response) {
            response.content.clear();
            if !head {
                response.content.insert(
                    PROBLEM_JSON.to_owned(),
                    Content::new(Some(Ref::from_schema_name("Problem"))),
                );
            }
        }
    }
}
