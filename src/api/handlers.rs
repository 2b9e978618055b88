//! One function per endpoint: the checked request in, the store's answer out.

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::header;

use super::auth::Principal;
use super::budgets::{self, MyUsage};
use super::download::{Download, PIPE_BYTES};
use super::error::ApiError;
use super::guard::Call;
use super::params::{Format, Params};
use super::Api;
use crate::query::{
    AuditEntry, AuditQuery, Breakdown, Dashboard, Dimension, LatencySeries, Metrics, TimeSeries,
    UserRank,
};

/// Rows of a breakdown or ranking when the request names no `limit`.
const DEFAULT_ROWS: usize = 10;
/// Audit entries when the request names no `limit`.
const DEFAULT_AUDIT_ROWS: usize = 100;

type Answer<T> = Result<Json<T>, ApiError>;

pub(crate) async fn dashboard(
    State(api): State<Api>,
    Extension(call): Extension<Call>,
) -> Answer<Dashboard> {
    let p = &call.params;
    api.store()
        .dashboard(&p.filter, p.tz)
        .await
        .map(Json)
        .map_err(ApiError::store)
}

pub(crate) async fn metrics(
    State(api): State<Api>,
    Extension(call): Extension<Call>,
) -> Answer<Metrics> {
    api.store()
        .metrics(&call.params.filter)
        .await
        .map(Json)
        .map_err(ApiError::store)
}

async fn breakdown(api: &Api, call: &Call, dimension: Dimension) -> Answer<Breakdown> {
    let p = &call.params;
    api.store()
        .breakdown(&p.filter, dimension, p.limit.unwrap_or(DEFAULT_ROWS))
        .await
        .map(Json)
        .map_err(ApiError::store)
}

pub(crate) async fn services(
    State(api): State<Api>,
    Extension(call): Extension<Call>,
) -> Answer<Breakdown> {
    breakdown(&api, &call, Dimension::Service).await
}

pub(crate) async fn models(
    State(api): State<Api>,
    Extension(call): Extension<Call>,
) -> Answer<Breakdown> {
    breakdown(&api, &call, Dimension::Model).await
}

pub(crate) async fn providers(
    State(api): State<Api>,
    Extension(call): Extension<Call>,
) -> Answer<Breakdown> {
    breakdown(&api, &call, Dimension::Provider).await
}

pub(crate) async fn platforms(
    State(api): State<Api>,
    Extension(call): Extension<Call>,
) -> Answer<Breakdown> {
    breakdown(&api, &call, Dimension::Client).await
}

pub(crate) async fn countries(
    State(api): State<Api>,
    Extension(call): Extension<Call>,
) -> Answer<Breakdown> {
    breakdown(&api, &call, Dimension::Country).await
}

pub(crate) async fn time_series(
    State(api): State<Api>,
    Extension(call): Extension<Call>,
) -> Answer<TimeSeries> {
    let p = &call.params;
    let store = api.store();
    match p.split {
        Some((dimension, top)) => {
            store
                .time_series_split(&p.filter, p.granularity, p.tz, dimension, top)
                .await
        }
        None => store.time_series(&p.filter, p.granularity, p.tz).await,
    }
    .map(Json)
    .map_err(ApiError::store)
}

pub(crate) async fn latency_series(
    State(api): State<Api>,
    Extension(call): Extension<Call>,
) -> Answer<LatencySeries> {
    let p = &call.params;
    api.store()
        .latency_series(&p.filter, p.granularity, p.tz)
        .await
        .map(Json)
        .map_err(ApiError::store)
}

pub(crate) async fn top_users(
    State(api): State<Api>,
    Extension(call): Extension<Call>,
) -> Answer<Vec<UserRank>> {
    let p = &call.params;
    api.store()
        .top_users(&p.filter, p.by, p.limit.unwrap_or(DEFAULT_ROWS))
        .await
        .map(Json)
        .map_err(ApiError::store)
}

/// The caller's own usage and budgets: the subject comes from the credentials, never
/// the query.
pub(crate) async fn my_usage(
    State(api): State<Api>,
    Extension(call): Extension<Call>,
) -> Answer<MyUsage> {
    let p = &call.params;
    let user = &call.principal.subject;
    let (usage, budgets) = tokio::join!(
        api.store().user_usage(user, &p.filter, p.tz),
        budgets::own(api.store(), user),
    );
    Ok(Json(MyUsage {
        usage: usage.map_err(ApiError::store)?,
        budgets: budgets?,
    }))
}

/// Who the credentials name: what a page needs to know which views to show.
pub(crate) async fn me(Extension(call): Extension<Call>) -> Answer<Principal> {
    Ok(Json(call.principal.clone()))
}

pub(crate) async fn audit(
    State(api): State<Api>,
    Extension(call): Extension<Call>,
) -> Answer<Vec<AuditEntry>> {
    let p = &call.params;
    let mut query = AuditQuery::new(p.filter.range).limit(p.limit.unwrap_or(DEFAULT_AUDIT_ROWS));
    query.subject = p.subject.clone();
    query.refused_only = p.refused;
    api.store()
        .audit_log(&query)
        .await
        .map(Json)
        .map_err(ApiError::store)
}

/// Streams the export: the filter is checked first, so a bad one is a 400, not a
/// broken download.
pub(crate) async fn export(
    State(api): State<Api>,
    Extension(call): Extension<Call>,
) -> Result<Response, ApiError> {
    let Params { filter, format, .. } = call.params;
    let store = api.store().clone();
    store
        .check_filter(&filter)
        .map_err(|e| ApiError::store(e.into()))?;
    let (content_type, extension) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::JsonLines => ("application/x-ndjson", "jsonl"),
    };
    let stamp = |t: chrono::DateTime<chrono::Utc>| t.format("%Y%m%dT%H%M%SZ");
    let disposition = format!(
        "attachment; filename=\"usage-{}-{}.{extension}\"",
        stamp(filter.range.from),
        stamp(filter.range.to),
    );
    let (reader, writer) = tokio::io::duplex(PIPE_BYTES);
    let task = tokio::spawn(async move {
        match format {
            Format::Csv => store.export_csv(&filter, writer).await,
            Format::JsonLines => store.export_json_lines(&filter, writer).await,
        }
    });
    let headers = [
        (header::CONTENT_TYPE, content_type.to_owned()),
        (header::CONTENT_DISPOSITION, disposition),
    ];
    Ok((headers, Body::new(Download::new(reader, task))).into_response())
}
