//! Importing the JSON lines a store exports, on every backend: the new store answers as
//! the old one did, an import run again stores nothing twice, and a bad line stops the
//! import at its number with every record before it stored, from where it starts again.
#![cfg(feature = "sqlite")]

mod common;

use chrono::{Duration, DurationRound, Utc};
use common::db::fresh;
use common::history::{answers, builder, history, write};
use tower_usage::query::{Filter, TimeRange};
use tower_usage::store::{DieselStore, ImportError};

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
