//! Importing the JSON lines a store exports, on every backend: the new store answers as
//! the old one did, in whatever order the lines come and beside records stored before;
//! an import run again stores nothing twice; the blocks a crash left pending (records
//! waiting, rollups missing) are settled at the next connect; and a bad line stops the import at its number with
//! every record before it stored, from where it starts again.
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

/// The 7-day blocks (of the per-user sums) the records of `lines` fall in.
fn weeks(lines: &[u8]) -> std::collections::BTreeSet<i64> {
    String::from_utf8_lossy(lines)
        .lines()
        .map(|line| {
            let record: tower_usage::UsageRecord = serde_json::from_str(line).unwrap();
            record
                .started_at
                .timestamp_micros()
                .div_euclid(604_800_000_000)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shuffled_import_beside_stored_records_answers_as_in_order() {
    let (source, lines, range) = exported().await;
    let expected = answers(&source, range).await;
    let text = String::from_utf8(lines).unwrap();
    let mut shuffled: Vec<&str> = text.lines().collect();
    // A fixed shuffle: every 7th line first, then every 7th from the next, ...
    shuffled = (0..7)
        .flat_map(|k| {
            shuffled
                .iter()
                .skip(k)
                .step_by(7)
                .copied()
                .collect::<Vec<_>>()
        })
        .collect();
    let stored: Vec<tower_usage::UsageRecord> = text
        .lines()
        .skip(1_000)
        .step_by(3)
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    for db in fresh("importshuffled").await {
        let store = builder(&db.url).connect().await.unwrap();
        // Records already stored through the write path, in every block: their blocks
        // are sealed, and the import's blocks are rebuilt around them.
        write(&store, &stored).await;
        let report = store
            .import_json_lines(shuffled.join("\n").as_bytes(), 0)
            .await
            .unwrap();
        assert_eq!(report.records, 3_000);
        assert_eq!(store.count().await.unwrap(), 3_000);
        assert_eq!(answers(&store, range).await, expected, "{}", db.backend);
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_crowded_in_time_come_in_through_the_write_path_exactly() {
    // The history squeezed into its last two hours: its batches crowd into few
    // 15-minute slots, as an export in time order of a busy service does.
    let now = Utc::now();
    let records: Vec<tower_usage::UsageRecord> = history(now)
        .into_iter()
        .enumerate()
        .map(|(i, mut r)| {
            r.started_at =
                now - Duration::seconds(7_200) + Duration::milliseconds(i as i64 * 2_400);
            r
        })
        .collect();
    let source = builder("sqlite::memory:").connect().await.unwrap();
    write(&source, &records).await;
    let range = TimeRange::between(now - Duration::hours(3), now + Duration::hours(1));
    let expected = answers(&source, range).await;
    let mut lines = Vec::new();
    for record in &records {
        serde_json::to_writer(&mut lines, record).unwrap();
        lines.push(b'\n');
    }
    for db in fresh("importcrowded").await {
        let store = builder(&db.url).connect().await.unwrap();
        let report = store.import_json_lines(&lines[..], 0).await.unwrap();
        assert_eq!(report.records, 3_000);
        assert_eq!(answers(&store, range).await, expected, "{}", db.backend);
        db.cleanup().await;
    }
}

/// The records' columns.
const COLUMNS: &str = "id, started_at_us, method, route, status, outcome, ttfb_us, \
     duration_us, request_bytes, response_bytes, user_id, service, model, provider, client, \
     country, tokens_in, tokens_out, tokens_cached_in, tokens_cache_write_in, cost_micros, \
     metadata, requested_model, unpriced";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_an_import_left_pending_are_settled_after_connect() {
    let (source, lines, range) = exported().await;
    let expected = answers(&source, range).await;
    let listed: Vec<String> = weeks(&lines).iter().map(|w| format!("({w})")).collect();
    for db in fresh("importcrash").await {
        let store = builder(&db.url).connect().await.unwrap();
        store.import_json_lines(&lines[..], 0).await.unwrap();
        drop(store);
        // What a crash between the records' transactions and the settle leaves: their
        // blocks listed, their rollups not (here, none at all), and records still
        // pending (here, half of them) beside those a settle had moved.
        let divide = if db.backend == "mysql" { "DIV" } else { "/" };
        let mut crash = format!(
            "INSERT INTO usage_pending_records (block, {COLUMNS}) \
             SELECT started_at_us {divide} 604800000000, {COLUMNS} FROM usage_records \
             WHERE started_at_us % 2 = 0;\n\
             DELETE FROM usage_records WHERE started_at_us % 2 = 0;\n"
        );
        for table in [
            "usage_rollup_15m",
            "usage_rollup_1d",
            "usage_user_1d",
            "usage_user_7d",
            "usage_totals_15m",
            "usage_user_hours",
            "usage_user_hist",
            "usage_user_blocks",
        ] {
            crash.push_str(&format!("DELETE FROM {table};\n"));
        }
        crash.push_str(&format!(
            "INSERT INTO usage_pending_blocks (block) VALUES {};",
            listed.join(", ")
        ));
        db.execute(&crash).await;
        // Connecting starts the rebuild beside the answers, not before them.
        let store = builder(&db.url).connect().await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while answers(&store, range).await != expected {
            assert!(std::time::Instant::now() < deadline, "{}", db.backend);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(store.settle().await.unwrap(), 0, "nothing left pending");
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
