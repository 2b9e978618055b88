//! Records per second written through `Recorder` + `DieselStore`, against the raw ceiling
//! of the same backend in the same run:
//!
//! * SQLite: a plain multi-row INSERT in one transaction per batch through the same driver
//!   (diesel's synchronous `SqliteConnection`), same batch size, same pragmas.
//! * PostgreSQL (when `TOWER_USAGE_POSTGRES_URL` is set): `COPY … FROM STDIN` of the same
//!   rows through tokio-postgres.
//!
//! With feature `nats` and `TOWER_USAGE_NATS_URL`, `postgres/nats_ingest` sends them from
//! two producers through `NatsSink` → JetStream → one `Ingester` → PostgreSQL, as JSON,
//! `postgres/nats_ingest_binary` the same in the binary encoding, and the `_packed` cases
//! the same with 64 records a message.
//!
//! Each backend also writes the same records back from the recorder's spill (`spill_replay`:
//! a spill left by a recorder whose sink was down, written by the next recorder that opens
//! it), against `recorder_store`, the direct path.
//!
//! Then it streams 1,000,000 records through the recorder into SQLite and prints the
//! process's resident memory as it goes: it should stay flat, bounded by the queue.
//!
//! `cargo bench --bench ingest --features postgres`
#![allow(missing_docs)] // a bench, and diesel's table macro

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use futures_util::SinkExt;
#[path = "shared/pump.rs"]
mod pump;

use pump::pump;
use tower_usage::recorder::Spill;
use tower_usage::store::DieselStore;
use tower_usage::{ClientPlatform, Recorder, SinkError, TokenUsage, UsageRecord, UsageSink};

const RECORDS: u64 = 50_000;
/// The recorder's default batch size, used by the baselines too.
const BATCH: usize = 1_024;

diesel::table! {
    usage_records (started_at_us, id) {
        id -> Binary,
        started_at_us -> BigInt,
        method -> Nullable<Text>,
        route -> Nullable<Text>,
        status -> Nullable<SmallInt>,
        outcome -> Text,
        ttfb_us -> Nullable<BigInt>,
        duration_us -> BigInt,
        request_bytes -> Nullable<BigInt>,
        response_bytes -> BigInt,
        user_id -> Nullable<Text>,
        service -> Nullable<Text>,
        model -> Nullable<Text>,
        provider -> Nullable<Text>,
        client -> Text,
        country -> Nullable<Text>,
        tokens_in -> BigInt,
        tokens_out -> BigInt,
        tokens_cached_in -> BigInt,
        cost_micros -> Nullable<BigInt>,
        metadata -> Nullable<Text>,
    }
}

/// The same row the store writes, for the raw baselines.
#[derive(Insertable, Clone)]
#[diesel(table_name = usage_records)]
#[diesel(treat_none_as_default_value = false)]
struct RawRow {
    id: Vec<u8>,
    started_at_us: i64,
    method: Option<String>,
    route: Option<String>,
    status: Option<i16>,
    outcome: String,
    ttfb_us: Option<i64>,
    duration_us: i64,
    request_bytes: Option<i64>,
    response_bytes: i64,
    user_id: Option<String>,
    service: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    client: String,
    country: Option<String>,
    tokens_in: i64,
    tokens_out: i64,
    tokens_cached_in: i64,
    cost_micros: Option<i64>,
    metadata: Option<String>,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A realistic record: 10,000 users, a handful of models.
fn record() -> UsageRecord {
    let i = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    UsageRecord::builder()
        .user(format!("user-{}", i % 10_000))
        .service(["chat", "embeddings", "mcp"][(i % 3) as usize])
        .model(["gpt-4o", "gpt-4o-mini", "claude-sonnet"][(i % 3) as usize])
        .provider("openai")
        .route("/v1/chat/completions")
        .method(http::Method::POST)
        .status(http::StatusCode::OK)
        .ttfb(Duration::from_micros(1_000 + i % 5_000))
        .duration(Duration::from_micros(50_000 + i % 100_000))
        .request_bytes(512)
        .response_bytes(2_048)
        .client(ClientPlatform::Sdk)
        .tokens(TokenUsage::new(1_000 + i % 500, 200))
        .cost_micros(1_234)
        .build()
}

fn raw(r: &UsageRecord) -> RawRow {
    RawRow {
        id: r.id.as_bytes().to_vec(),
        started_at_us: r.started_at.timestamp_micros(),
        method: r.method.as_ref().map(|m| m.as_str().to_owned()),
        route: r.route.clone(),
        status: r.status.map(|s| s.as_u16() as i16),
        outcome: r.outcome.as_str().to_owned(),
        ttfb_us: r.ttfb.map(|d| d.as_micros() as i64),
        duration_us: r.duration.as_micros() as i64,
        request_bytes: r.request_bytes.map(|b| b as i64),
        response_bytes: r.response_bytes as i64,
        user_id: r.user.clone(),
        service: r.service.clone(),
        model: r.model.clone(),
        provider: r.provider.clone(),
        client: r.client.as_str().to_owned(),
        country: r.country.clone(),
        tokens_in: r.tokens.input as i64,
        tokens_out: r.tokens.output as i64,
        tokens_cached_in: r.tokens.cached_input as i64,
        cost_micros: r.cost_micros,
        metadata: None,
    }
}

/// A sink that is down: every batch goes to the spill.
#[derive(Debug)]
struct Down;

#[async_trait::async_trait]
impl UsageSink for Down {
    async fn write_batch(&self, _: &[UsageRecord]) -> Result<(), SinkError> {
        Err(SinkError::transient("down"))
    }
}

fn spill_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir()
        .join("tower-usage-bench")
        .join(format!("{name}-{}.spill", std::process::id()))
}

/// Leaves `RECORDS` records in the spill at `dir`, from a recorder whose sink was down.
async fn spilled(dir: &std::path::Path) {
    let _ = std::fs::remove_dir_all(dir);
    let spill = Spill::open(dir).unwrap().after(Duration::ZERO);
    let recorder = Recorder::builder(Down)
        .batch_size(BATCH)
        .spill(spill)
        .spawn();
    pump(&recorder, records(RECORDS)).await;
    recorder.shutdown().await;
    assert_eq!(recorder.stats().spilled, RECORDS);
}

/// Writes what the spill at `dir` holds into `store`, as the next process would.
async fn replay(store: DieselStore, dir: &std::path::Path) {
    let recorder = Recorder::builder(store)
        .batch_size(BATCH)
        .spill(Spill::open(dir).unwrap())
        .spawn();
    while recorder.stats().spill_bytes > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    recorder.shutdown().await;
    assert_eq!(recorder.stats().replayed, RECORDS);
}

fn records(n: u64) -> Vec<UsageRecord> {
    (0..n).map(|_| record()).collect()
}

fn temp_db(name: &str) -> String {
    let dir = std::env::temp_dir().join("tower-usage-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path.display().to_string()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn ingest(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("ingest");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(RECORDS));

    // SQLite through the pipeline.
    let path = temp_db("pipeline");
    let store = runtime
        .block_on(DieselStore::connect(&format!("sqlite://{path}")))
        .unwrap();
    let recorder = runtime.block_on(async { Recorder::builder(store).batch_size(BATCH).spawn() });
    group.bench_function("sqlite/recorder_store", |b| {
        b.iter_batched(
            || records(RECORDS),
            |records| runtime.block_on(pump(&recorder, records)),
            criterion::BatchSize::PerIteration,
        )
    });
    runtime.block_on(recorder.shutdown());

    // SQLite, the same records written back from a spill.
    let spill = spill_dir("sqlite");
    let store = runtime
        .block_on(DieselStore::connect(&format!(
            "sqlite://{}",
            temp_db("replay")
        )))
        .unwrap();
    group.bench_function("sqlite/spill_replay", |b| {
        b.iter_batched(
            || runtime.block_on(spilled(&spill)),
            |()| runtime.block_on(replay(store.clone(), &spill)),
            criterion::BatchSize::PerIteration,
        )
    });

    // SQLite raw: the same rows, batch and pragmas, straight through the driver.
    let path = temp_db("raw");
    runtime
        .block_on(DieselStore::connect(&format!("sqlite://{path}")))
        .unwrap();
    let mut conn = SqliteConnection::establish(&path).unwrap();
    conn.batch_execute("PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536;")
        .unwrap();
    group.bench_function("sqlite/raw_insert", |b| {
        b.iter_batched(
            || (0..RECORDS).map(|_| raw(&record())).collect::<Vec<_>>(),
            |rows| {
                // One transaction per batch; inside it, one prepared statement of 64 rows
                // reused (a fixed-size array gives diesel a cacheable query).
                for batch in rows.chunks(BATCH) {
                    conn.transaction(|c| {
                        let mut exact = batch.chunks_exact(64);
                        for chunk in &mut exact {
                            let chunk: &[RawRow; 64] = chunk.try_into().unwrap();
                            diesel::insert_or_ignore_into(usage_records::table)
                                .values(chunk)
                                .execute(c)?;
                        }
                        for row in exact.remainder() {
                            diesel::insert_or_ignore_into(usage_records::table)
                                .values(std::array::from_ref(row))
                                .execute(c)?;
                        }
                        QueryResult::Ok(())
                    })
                    .unwrap();
                }
            },
            criterion::BatchSize::PerIteration,
        )
    });

    if let Ok(admin) = std::env::var("TOWER_USAGE_POSTGRES_URL") {
        runtime.block_on(postgres(&mut group, &runtime, &admin));
    } else {
        println!("TOWER_USAGE_POSTGRES_URL is not set: PostgreSQL cases skipped");
    }
    group.finish();

    // Memory while 1,000,000 records stream through into SQLite.
    let path = temp_db("memory");
    let store = runtime
        .block_on(DieselStore::connect(&format!("sqlite://{path}")))
        .unwrap();
    let recorder = runtime.block_on(async { Recorder::builder(store).batch_size(BATCH).spawn() });
    let started = Instant::now();
    println!("resident memory while 1,000,000 records stream through the recorder into SQLite:");
    for step in 1..=10 {
        runtime.block_on(pump(&recorder, records(100_000)));
        println!("  {:>9} records  {:>7} KiB", step * 100_000, rss_kib());
    }
    runtime.block_on(recorder.shutdown());
    println!(
        "  {:.0} records/s overall",
        1_000_000.0 / started.elapsed().as_secs_f64()
    );
}

async fn postgres(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    runtime: &tokio::runtime::Runtime,
    admin: &str,
) {
    let _ = runtime;
    let store = DieselStore::connect(admin).await.unwrap();
    store.revert_migrations().await.unwrap();
    store.migrate().await.unwrap();
    let recorder = Recorder::builder(store.clone()).batch_size(BATCH).spawn();
    let handle = tokio::runtime::Handle::current();
    group.bench_function("postgres/recorder_store", |b| {
        b.iter_batched(
            || records(RECORDS),
            |records| tokio::task::block_in_place(|| handle.block_on(pump(&recorder, records))),
            criterion::BatchSize::PerIteration,
        )
    });
    recorder.shutdown().await;

    #[cfg(feature = "nats")]
    match std::env::var("TOWER_USAGE_NATS_URL") {
        Ok(nats) => nats_ingest(group, &handle, &store, &nats).await,
        Err(_) => println!("TOWER_USAGE_NATS_URL is not set: the NATS case skipped"),
    }

    let spill = spill_dir("postgres");
    group.bench_function("postgres/spill_replay", |b| {
        b.iter_batched(
            || tokio::task::block_in_place(|| handle.block_on(spilled(&spill))),
            |()| tokio::task::block_in_place(|| handle.block_on(replay(store.clone(), &spill))),
            criterion::BatchSize::PerIteration,
        )
    });

    let (client, connection) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    group.bench_function("postgres/copy", |b| {
        b.iter_batched(
            || (0..RECORDS).map(|_| copy_line(&raw(&record()))).collect::<Vec<_>>(),
            |lines| {
                tokio::task::block_in_place(|| {
                    handle.block_on(async {
                        for batch in lines.chunks(BATCH) {
                            let sink = client
                                .copy_in::<_, bytes::Bytes>(
                                    "COPY usage_records (id, started_at_us, method, route, status, outcome, \
                                     ttfb_us, duration_us, request_bytes, response_bytes, user_id, service, \
                                     model, provider, client, country, tokens_in, tokens_out, \
                                     tokens_cached_in, cost_micros, metadata) FROM STDIN",
                                )
                                .await
                                .unwrap();
                            futures_util::pin_mut!(sink);
                            sink.send(bytes::Bytes::from(batch.concat())).await.unwrap();
                            sink.finish().await.unwrap();
                        }
                    })
                })
            },
            criterion::BatchSize::PerIteration,
        )
    });
    store.revert_migrations().await.unwrap();
}

/// Two producers publish `RECORDS` records through `NatsSink`, one `Ingester` writes them
/// into PostgreSQL: timed until the ingester has written the last one.
#[cfg(feature = "nats")]
async fn nats_ingest(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    handle: &tokio::runtime::Handle,
    store: &DieselStore,
    url: &str,
) {
    use std::sync::Arc;
    use tower_usage::sink::nats::{Encoding, Ingester, NatsConfig, NatsSink};

    /// Records a message in the packed cases.
    const PACKED: usize = 64;
    let client = async_nats::connect(url).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let mut round = 0;
    for (name, encoding, per_message) in [
        ("postgres/nats_ingest", Encoding::Json, 1),
        ("postgres/nats_ingest_binary", Encoding::Binary, 1),
        ("postgres/nats_ingest_packed", Encoding::Json, PACKED),
        (
            "postgres/nats_ingest_binary_packed",
            Encoding::Binary,
            PACKED,
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    round += 1;
                    let config = NatsConfig::new(url)
                        .stream(format!("TU_BENCH_{}_{round}", std::process::id()))
                        .subject(format!("tu-bench.{}.{round}", std::process::id()))
                        .encoding(encoding)
                        .records_per_message(per_message);
                    tokio::task::block_in_place(|| {
                        handle.block_on(async {
                            let mut producers = Vec::new();
                            for _ in 0..2 {
                                let sink = NatsSink::connect(&config).await.unwrap();
                                producers.push(Recorder::builder(sink).batch_size(BATCH).spawn());
                            }
                            let ingester = Arc::new(
                                Ingester::new(config.clone(), store.clone())
                                    .batch_size(BATCH)
                                    // The direct path's last batch is flushed at once;
                                    // the ingester's should not wait 500 ms to fill.
                                    .max_wait(Duration::from_millis(20)),
                            );
                            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                            let running = Arc::clone(&ingester);
                            let task = tokio::spawn(async move {
                                running
                                    .run(async {
                                        let _ = stopped.await;
                                    })
                                    .await
                                    .unwrap();
                            });
                            (config, producers, ingester, stop, task, records(RECORDS))
                        })
                    })
                },
                |(config, producers, ingester, stop, task, records)| {
                    tokio::task::block_in_place(|| {
                        handle.block_on(async {
                            let half = records.len() / 2;
                            let mut records = records;
                            let second = records.split_off(half);
                            tokio::join!(pump(&producers[0], records), pump(&producers[1], second));
                            while ingester.stats().written < RECORDS {
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                            let _ = stop.send(());
                            task.await.unwrap();
                            for producer in &producers {
                                producer.shutdown().await;
                            }
                            jetstream.delete_stream(config.stream_name()).await.unwrap();
                        })
                    })
                },
                criterion::BatchSize::PerIteration,
            )
        });
    }
}

/// One row in COPY's text format.
fn copy_line(r: &RawRow) -> String {
    fn opt<T: ToString>(v: &Option<T>) -> String {
        v.as_ref().map_or_else(|| "\\N".to_owned(), T::to_string)
    }
    let hex: String = r.id.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "\\\\x{hex}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
        r.started_at_us,
        opt(&r.method),
        opt(&r.route),
        opt(&r.status),
        r.outcome,
        opt(&r.ttfb_us),
        r.duration_us,
        opt(&r.request_bytes),
        r.response_bytes,
        opt(&r.user_id),
        opt(&r.service),
        opt(&r.model),
        opt(&r.provider),
        r.client,
        opt(&r.country),
        r.tokens_in,
        r.tokens_out,
        r.tokens_cached_in,
        opt(&r.cost_micros),
        opt(&r.metadata),
    )
}

criterion_group!(benches, ingest);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
