//! Loads records from an export (JSON lines, or CSV for a file named `*.csv`) into a
//! store: moving from the embedded SQLite to PostgreSQL, or restoring a backup.
//!
//! ```sh
//! # from one store to another (DATABASE_URL, `sqlite://usage.db` by default)
//! curl -H "Authorization: Bearer $ADMIN_TOKEN" \
//!     "http://127.0.0.1:3000/api/analytics/export?format=jsonl&last=365d" > usage.jsonl
//! DATABASE_URL=postgres://localhost/usage cargo run --example import --features postgres -- usage.jsonl
//! ```
//!
//! `-` reads JSON lines from standard input. A record the store holds already is ignored,
//! so an import that stopped can be run again; `SKIP_LINES=n` starts after the first `n`
//! lines (rows after the header, for CSV), as the example prints when a line is bad or
//! the store fails. A CSV file of another tool needs its columns named in code
//! (`CsvColumns::new`); this example reads the crate's own CSV export.

use tokio::io::{AsyncBufRead, BufReader};
use tower_usage::store::{CsvColumns, DieselStore, ImportError};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: import <file.jsonl | ->  (into DATABASE_URL)")?;
    let database_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://usage.db".to_owned());
    let skip = match std::env::var("SKIP_LINES") {
        Ok(n) => n.parse().map_err(|e| format!("SKIP_LINES={n:?}: {e}"))?,
        Err(_) => 0,
    };
    let store = DieselStore::connect(&database_url).await?;
    let started = std::time::Instant::now();
    let imported = if path.ends_with(".csv") {
        let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        let file = std::io::BufReader::with_capacity(1 << 20, file);
        store.import_csv(file, &CsvColumns::export(), skip).await
    } else {
        let input: Box<dyn AsyncBufRead + Unpin + Send> = if path == "-" {
            Box::new(BufReader::new(tokio::io::stdin()))
        } else {
            let file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| format!("{path}: {e}"))?;
            Box::new(BufReader::with_capacity(1 << 20, file))
        };
        store.import_json_lines(input, skip).await
    };
    match imported {
        Ok(report) => {
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "{} records from {} lines into {} in {seconds:.1} s ({:.0} records/s); {} refused by the database",
                report.records,
                report.lines,
                store.backend_name(),
                report.records as f64 / seconds,
                report.rejected,
            );
            println!("{} records stored now", store.count().await?);
            Ok(())
        }
        Err(error) => {
            eprintln!("{error}");
            let done = error.lines_done();
            if let ImportError::Line { .. } | ImportError::Row { .. } = error {
                eprintln!("mend the line, then go on with SKIP_LINES={done}");
            } else {
                eprintln!("go on with SKIP_LINES={done}");
            }
            std::process::exit(1);
        }
    }
}
