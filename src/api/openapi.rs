//! The OpenAPI 3.1 document of the router, built from the same endpoint table the
//! router and the parameter parser use.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HttpMethod, InfoBuilder, OpenApi, PathItem, PathsBuilder, Ref, RefOr, Required,
    ResponseBuilder, Schema,
};
use utoipa::OpenApi as _;

use super::auth::{Principal, Role};
use super::budgets::MyUsage;
use super::endpoint::{Endpoint, Param};
use super::error::ErrorBody;
use super::guard::AGGREGATE_ONLY_BEFORE;
use crate::alert::{
    AlertEvent, Budget, BudgetStatus, Condition, EventKind, Measure, Period, Rule, RuleFilter,
    Scope, Signal,
};
use crate::notify::{Webhook, WebhookView};
use crate::query::{
    AuditEntry, Breakdown, Dashboard, LatencySeries, Metrics, TimeSeries, UserRank, UserUsage,
};

/// Where the document is served, relative to the router.
pub(crate) const PATH: &str = "/openapi.json";

#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(
    Dashboard,
    Metrics,
    Breakdown,
    TimeSeries,
    LatencySeries,
    UserRank,
    UserUsage,
    MyUsage,
    AuditEntry,
    ErrorBody,
    Principal,
    Role,
    Budget,
    BudgetStatus,
    Scope,
    Measure,
    Period,
    Rule,
    RuleFilter,
    Signal,
    Condition,
    AlertEvent,
    EventKind,
    Webhook,
    WebhookView
)))]
struct Schemas;

/// The whole document.
pub(crate) fn document() -> OpenApi {
    let mut doc = Schemas::openapi();
    doc.info = InfoBuilder::new()
        .title("tower-usage analytics")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Usage analytics over HTTP. Paths are relative to where the router is mounted. \
             Every endpoint but this document needs `Authorization: Bearer <token>`; only \
             `/my-usage` and `/me` are open to the `user` role, and they answer for the \
             token's subject.",
        ))
        .build();
    if let Some(components) = doc.components.as_mut() {
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
    let mut paths = PathsBuilder::new();
    for endpoint in Endpoint::ALL {
        let method = match endpoint.method() {
            http::Method::PUT => HttpMethod::Put,
            http::Method::DELETE => HttpMethod::Delete,
            _ => HttpMethod::Get,
        };
        paths = paths.path(endpoint.path(), PathItem::new(method, operation(endpoint)));
    }
    let own = OperationBuilder::new()
        .operation_id(Some("openapi"))
        .summary(Some("This document"))
        .response(
            "200",
            ResponseBuilder::new()
                .description("The OpenAPI 3.1 document")
                .content("application/json", ContentBuilder::new().build()),
        );
    doc.paths = paths
        .path(PATH, PathItem::new(HttpMethod::Get, own))
        .build();
    doc
}

fn operation(endpoint: Endpoint) -> OperationBuilder {
    let path = endpoint
        .path()
        .trim_start_matches('/')
        .replace(['{', '}'], "")
        .replace(['/', '-'], "_");
    let id = match endpoint.method() {
        http::Method::GET => path,
        other => format!("{}_{path}", other.as_str().to_ascii_lowercase()),
    };
    let mut op = OperationBuilder::new()
        .operation_id(Some(id))
        .summary(Some(endpoint.summary()))
        .tag("analytics")
        .security(SecurityRequirement::new("bearer", Vec::<String>::new()));
    if endpoint.path().contains("{name}") {
        op = op.parameter(
            ParameterBuilder::new()
                .name("name")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("The name of what is created, replaced or deleted"))
                .schema(Some(param_schema(Param::Subject))),
        );
    }
    if endpoint.method() == http::Method::PUT {
        let body = ContentBuilder::new()
            .schema(endpoint.body_schema().map(Ref::from_schema_name))
            .build();
        op = op.request_body(Some(
            utoipa::openapi::request_body::RequestBodyBuilder::new()
                .content("application/json", body)
                .required(Some(Required::True))
                .build(),
        ));
    }
    for param in endpoint.params() {
        op = op.parameter(
            ParameterBuilder::new()
                .name(param.name())
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(param.description()))
                .schema(Some(param_schema(param))),
        );
    }
    let ok = match endpoint.schema() {
        Some(name) => {
            let one = Ref::from_schema_name(name);
            let schema: RefOr<Schema> = if endpoint.is_list() {
                ArrayBuilder::new().items(one).build().into()
            } else {
                one.into()
            };
            ResponseBuilder::new().description("The answer").content(
                "application/json",
                ContentBuilder::new().schema(Some(schema)).build(),
            )
        }
        None if endpoint.method() == http::Method::DELETE => {
            op = op.response(
                "404",
                ResponseBuilder::new()
                    .description("Nothing of this name")
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    ),
            );
            ResponseBuilder::new().description("Deleted")
        }
        None if endpoint == Endpoint::Live => ResponseBuilder::new()
            .description(
                "Events named `metrics`, each a JSON `Metrics` of the selected records; \
                 without `to`, the range runs up to the moment of each event",
            )
            .content("text/event-stream", ContentBuilder::new().build()),
        None => ResponseBuilder::new()
            .description("The records, streamed as an attachment")
            .content("text/csv", ContentBuilder::new().build())
            .content("application/x-ndjson", ContentBuilder::new().build()),
    };
    let ok = if endpoint.reads_usage() {
        ok.header(
            AGGREGATE_ONLY_BEFORE,
            HeaderBuilder::new()
                .description(Some(
                    "Present when records in the range were removed by retention: before this \
                     instant (RFC 3339) the answer counts what the rollups keep (whole \
                     15-minute slots; no per-user detail, client or country)",
                ))
                .build(),
        )
    } else {
        ok
    };
    let ok_status = if endpoint.method() == http::Method::DELETE {
        "204"
    } else {
        "200"
    };
    op = op.response(ok_status, ok);
    for (status, why) in [
        (
            "400",
            "A bad parameter or request body: the answer names it and says why",
        ),
        ("401", "No valid credentials (see `WWW-Authenticate`)"),
        (
            "403",
            "The caller's role may not call this endpoint or ask for another user",
        ),
        ("429", "Rate limited (see `Retry-After`)"),
        (
            "500",
            "The store failed; the details are in the server's log",
        ),
    ] {
        let content = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build();
        op = op.response(
            status,
            ResponseBuilder::new()
                .description(why)
                .content("application/json", content),
        );
    }
    op
}

fn param_schema(param: Param) -> Schema {
    let mut schema = ObjectBuilder::new();
    if param.is_integer() {
        schema = schema.schema_type(Type::Integer).minimum(Some(1));
    } else {
        schema = schema.schema_type(Type::String);
    }
    if let Some(choices) = param.choices() {
        schema = schema.enum_values(Some(choices.iter().copied()));
    }
    schema.build().into()
}
