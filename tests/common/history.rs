//! A deterministic history of records for the retention and partitioning tests.

use chrono::{DateTime, Duration, Utc};
use tower_usage::query::{Filter, Granularity, TimeRange, Tz};
use tower_usage::store::{DieselStore, DieselStoreBuilder};
use tower_usage::{Outcome, TokenUsage, UsageRecord, UsageSink};

/// 3,000 records over the 100 days before `now`, in time order, of ten users, three
/// services, two countries and a few outcomes.
pub fn history(now: DateTime<Utc>) -> Vec<UsageRecord> {
    let span = 100 * 86_400;
    let mut records: Vec<UsageRecord> = (0..3_000i64)
        .map(|i| {
            let back = (i * 7_919 * 13) % span;
            let at = now - Duration::seconds(back) - Duration::microseconds(i % 1_000);
            let mut builder = UsageRecord::builder()
                .started_at(at)
                .user(format!("u{}", i % 10))
                .service(["chat", "embed", "images"][(i % 3) as usize])
                .model(["gpt-4o", "gpt-4o-mini"][(i % 2) as usize])
                .country(["FR", "JP"][(i % 5 == 0) as usize])
                .duration(std::time::Duration::from_millis(20 + (i % 37) as u64 * 9))
                .tokens(TokenUsage::new(100 + i as u64, 10))
                .cost_micros(1_000 + i);
            if i % 11 == 0 {
                builder = builder.outcome(Outcome::ServerError);
            }
            builder.build()
        })
        .collect();
    records.sort_by_key(|r| r.started_at);
    records
}

/// A store at `url` where every user of [`history`] is heavy: their own usage keeps
/// hourly detail past their records.
pub fn builder(url: &str) -> DieselStoreBuilder {
    DieselStore::builder(url).user_detail_min_records(5)
}

/// Writes `records` in batches of 500.
pub async fn write(store: &DieselStore, records: &[UsageRecord]) {
    for chunk in records.chunks(500) {
        store.write_batch(chunk).await.unwrap();
    }
}

/// What the comparisons read, as one text: the dashboard, the breakdown by country (read
/// from the records), an hourly series, a heavy user's usage and the CSV export.
pub async fn answers(store: &DieselStore, range: TimeRange) -> String {
    let filter = Filter::new(range);
    let utc: Tz = "UTC".parse().unwrap();
    let dashboard = store.dashboard(&filter, utc).await.unwrap();
    let countries = store.by_country(&filter, 10).await.unwrap();
    let hourly = store
        .time_series(&filter, Granularity::Hour, utc)
        .await
        .unwrap();
    let user = store.user_usage("u4", &filter, utc).await.unwrap();
    let mut export = Vec::new();
    store.export_csv(&filter, &mut export).await.unwrap();
    format!(
        "{}\n{}\n{}\n{}\n{}",
        serde_json::to_string(&dashboard).unwrap(),
        serde_json::to_string(&countries).unwrap(),
        serde_json::to_string(&hourly).unwrap(),
        serde_json::to_string(&user).unwrap(),
        String::from_utf8(export).unwrap()
    )
}

/// Shuffles `items` in a fixed random order (xorshift from a fixed seed).
pub fn shuffle<T>(items: &mut [T]) {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
}
