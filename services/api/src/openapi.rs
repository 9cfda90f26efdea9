//! The OpenAPI document, generated from the handlers' annotations (never written by hand),
//! and checked by a test against the paths of API.md.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "File Engine API", version = "1", description = "Event-sourced multi-tenant file platform. Errors are RFC 9457 problem+json with a stable `code`."),
    paths(
        routes::commands::post_command,
        routes::tasks::get_task,
        routes::reads::stat,
        routes::reads::list,
        routes::usage::usage,
        routes::acl::grant,
        routes::acl::revoke,
        routes::acl::list_rules,
        routes::acl::check,
        routes::audit::query,
        routes::audit::export::export,
        routes::audit::verify,
        routes::dead_letters::list,
        routes::dead_letters::retry,
        crate::files::upload::put_file,
        crate::files::download::get_file,
        crate::files::download::head_file,
        crate::files::links::create_link,
        crate::files::links::follow_link,
        routes::subscriptions::create,
        routes::subscriptions::list,
        routes::subscriptions::delete,
        routes::subscriptions::deliveries,
        routes::event_stream::stream,
        routes::ops::healthz,
        routes::ops::readyz,
        routes::ops::metrics,
        routes::ops::openapi,
    ),
    components(schemas(crate::error::Problem, routes::commands::Accepted, routes::tasks::TaskView,
                       routes::reads::Stat, routes::usage::UsageView, routes::usage::Measure, crate::files::links::Link, routes::dead_letters::DeadLetters, routes::reads::Listing,
                       routes::acl::GrantRequest, routes::acl::RuleView, routes::acl::RuleList,
                       routes::acl::CheckResult,
                       routes::subscriptions::CreateRequest, routes::subscriptions::SubscriptionView,
                       routes::subscriptions::CreatedSubscription, routes::subscriptions::SubscriptionList,
                       routes::subscriptions::DeliveryView, routes::subscriptions::AttemptView,
                       routes::subscriptions::DeliveryLog,
                       routes::audit::AuditPage, routes::audit::AuditVerification)),
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

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
