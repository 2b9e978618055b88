//! Importing the JSON lines a store exports, on every backend: the new store answers as
//! the old one did, an import run again stores nothing twice, and a bad line stops the
//! import at its number with every record before it stored, from where it starts again.
#![cfg(feature = "sqlite")]

mod common;

use chrono::{Duration, DurationRound, Utc};
use common::db::fresh;
use common::history::{answers, builder, history, write};
use tower_usage::query::{Filter, TimeRange};
use tower_usage::store::{CsvColumns, DieselStore, Field, ImportError, TimeFormat};
use tower_usage::UsageSink;

/// A store with the history, its export as JSON lines, and the range they cover.
async fn exported() -> (DieselStore, Vec<u8>, TimeRange) {
    let now = Utc::now();
    let source = builder("sqlite::memory:").connect().await.unwrap();
    write(&source, &history(now)).await;
    let start = now.duration_trunc(Duration::days(1)).unwrap() - Duration::days(101);
    let range = TimeRange::between(start + Duration::seconds(7), now + Duration::days(1));
    let mut lines = Vec::new();
    let n = source
        .export_json_lines(&Filter::new(range), &mut lines)
        .await
        .unwrap();
    assert_eq!(n, 3_000);
    (source, lines, range)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_store_answers_as_the_one_exported() {
    let (source, lines, range) = exported().await;
    let expected = answers(&source, range).await;
    for db in fresh("import").await {
        let store = builder(&db.url).connect().await.unwrap();
        let report = store.import_json_lines(&lines[..], 0).await.unwrap();
        assert_eq!(
            (report.lines, report.records, report.rejected),
            (3_000, 3_000, 0)
        );
        assert_eq!(answers(&store, range).await, expected, "{}", db.backend);
        // Again, as after a crash: nothing counts twice.
        store.import_json_lines(&lines[..], 0).await.unwrap();
        assert_eq!(store.count().await.unwrap(), 3_000);
        assert_eq!(answers(&store, range).await, expected, "{}", db.backend);
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_line_stops_the_import_where_it_can_start_again() {
    let (source, lines, range) = exported().await;
    let expected = answers(&source, range).await;
    let text = String::from_utf8(lines).unwrap();
    let mut broken: Vec<&str> = text.lines().collect();
    broken.insert(2_500, "{\"id\": \"not a record\"}");
    broken.insert(10, "");
    let broken = broken.join("\n");
    for db in fresh("importbad").await {
        let store = builder(&db.url).connect().await.unwrap();
        let error = store
            .import_json_lines(broken.as_bytes(), 0)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ImportError::Line { line: 2_502, .. }),
            "{error}"
        );
        assert!(
            error.to_string().starts_with("line 2502: not a record"),
            "{error}"
        );
        assert_eq!(error.lines_done(), 2_501);
        // Every record before the bad line is stored (the blank line holds none).
        assert_eq!(store.count().await.unwrap(), 2_500, "{}", db.backend);
        // The line mended, the import goes on from where it stopped.
        let mended = broken.replace("{\"id\": \"not a record\"}", "");
        let report = store
            .import_json_lines(mended.as_bytes(), error.lines_done())
            .await
            .unwrap();
        assert_eq!(report.records, 500);
        assert_eq!(answers(&store, range).await, expected, "{}", db.backend);
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_csv_export_comes_back_whole() {
    let (source, _, range) = exported().await;
    // Text a spreadsheet would run, or that starts with the quote the export adds.
    let tricky: Vec<tower_usage::UsageRecord> = ["=cmd()", "'=x", "'", "-", "@a", "plain"]
        .iter()
        .enumerate()
        .map(|(i, text)| {
            tower_usage::UsageRecord::builder()
                .started_at(range.from + Duration::hours(i as i64 + 1))
                .user(*text)
                .service(*text)
                .metadata(serde_json::json!(text))
                .build()
        })
        .collect();
    source.write_batch(&tricky).await.unwrap();
    let mut csv = Vec::new();
    source
        .export_csv(&Filter::new(range), &mut csv)
        .await
        .unwrap();
    let expected = answers(&source, range).await;
    let columns = CsvColumns::export();
    for db in fresh("importcsv").await {
        let store = builder(&db.url).connect().await.unwrap();
        let report = store
            .import_csv(std::io::Cursor::new(csv.clone()), &columns, 0)
            .await;
        assert_eq!(report.unwrap().records, 3_006, "{}", db.backend);
        assert_eq!(answers(&store, range).await, expected, "{}", db.backend);
        let filter = Filter::new(TimeRange::between(
            range.from,
            range.from + Duration::hours(7),
        ));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        source.export_json_lines(&filter, &mut a).await.unwrap();
        store.export_json_lines(&filter, &mut b).await.unwrap();
        assert_eq!(String::from_utf8(b).unwrap(), String::from_utf8(a).unwrap());
        db.cleanup().await;
    }
}

/// A usage log of another tool: milliseconds since the epoch, its own column names, a
/// latency in milliseconds, no id and no outcome.
fn foreign_csv(records: &[tower_usage::UsageRecord]) -> String {
    let mut csv = String::from(
        "created_at,user_email,llm,prompt_tokens,completion_tokens,latency_ms,http_status\n",
    );
    for r in records {
        csv.push_str(&format!(
            "{},{},{},{},{},{:.3},{}\n",
            r.started_at.timestamp_millis(),
            r.user.as_deref().unwrap_or(""),
            r.model.as_deref().unwrap_or(""),
            r.tokens.input,
            r.tokens.output,
            r.duration.as_secs_f64() * 1e3,
            if r.outcome == tower_usage::Outcome::ServerError {
                500
            } else {
                200
            },
        ));
    }
    csv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_csv_comes_in_by_its_column_names_once() {
    let records = history(Utc::now());
    let csv = foreign_csv(&records);
    let columns = CsvColumns::new("created_at", TimeFormat::UnixMillis)
        .column(Field::User, "user_email")
        .column(Field::Model, "llm")
        .column(Field::TokensIn, "prompt_tokens")
        .column(Field::TokensOut, "completion_tokens")
        .column(Field::DurationMillis, "latency_ms")
        .column(Field::Status, "http_status");
    let start = records[0].started_at - Duration::days(1);
    let all = Filter::new(TimeRange::between(start, Utc::now() + Duration::days(1)));
    let errors = records
        .iter()
        .filter(|r| r.outcome == tower_usage::Outcome::ServerError)
        .count() as u64;
    let tokens: u64 = records
        .iter()
        .map(|r| r.tokens.input + r.tokens.output)
        .sum();
    for db in fresh("importforeign").await {
        let store = builder(&db.url).connect().await.unwrap();
        store
            .import_csv(std::io::Cursor::new(csv.clone()), &columns, 0)
            .await
            .unwrap();
        // Again: the ids derived from the rows keep every record once.
        store
            .import_csv(std::io::Cursor::new(csv.clone()), &columns, 0)
            .await
            .unwrap();
        let metrics = store.metrics(&all).await.unwrap();
        assert_eq!(metrics.requests, 3_000, "{}", db.backend);
        assert_eq!(metrics.errors, errors);
        assert_eq!(metrics.tokens.total, tokens);
        assert_eq!(metrics.unique_users, 10);

        // A bad cell stops it at its row, with the rows before it stored.
        let mut bad: Vec<&str> = csv.lines().collect();
        bad[2_001] = "1793836800000,x@y,gpt-4o,many,1,1.0,200";
        let bad = bad.join("\n");
        let fresh_store = builder(&db.url).connect().await.unwrap();
        fresh_store.revert_migrations().await.unwrap();
        fresh_store.migrate().await.unwrap();
        let error = fresh_store
            .import_csv(std::io::Cursor::new(bad), &columns, 0)
            .await
            .unwrap_err();
        assert!(
            matches!(error, ImportError::Row { row: 2_001, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("\"prompt_tokens\""), "{error}");
        assert_eq!(fresh_store.count().await.unwrap(), 2_000);
        let missing =
            CsvColumns::new("created_at", TimeFormat::UnixMillis).column(Field::User, "email");
        let error = fresh_store
            .import_csv(std::io::Cursor::new(csv.clone()), &missing, 0)
            .await
            .unwrap_err();
        assert!(matches!(error, ImportError::Columns(_)), "{error}");
        db.cleanup().await;
    }
}
