//! The recorder's spill: batches the sink cannot take go to disk and come back in order,
//! in this process or the next; a full or damaged spill is counted, never a panic; and a
//! PostgreSQL outage under load loses no answered request, even with the process killed.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::Outage;
use tower_usage::recorder::{RecorderBuilder, Retry, Spill, SpillError};
use tower_usage::{MemorySink, Recorder, RecorderStats, SinkError, UsageRecord, UsageSink};

fn record(i: usize) -> UsageRecord {
    UsageRecord::builder()
        .user(format!("u{i}"))
        .service("chat")
        .build()
}

fn fast_retry() -> Retry {
    Retry::backoff(Duration::from_millis(2), Duration::from_millis(20))
}

/// A recorder of small batches written at once, retried quickly, with a spill.
fn spilling(sink: impl UsageSink, batch_size: usize, spill: Spill) -> RecorderBuilder {
    Recorder::builder(sink)
        .batch_size(batch_size)
        .flush_interval(Duration::from_millis(1))
        .retry(fast_retry())
        .spill(spill)
}

/// A fresh spill directory for one test.
fn spill_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join("tower-usage-tests")
        .join(format!("spill-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

fn users(sink: &MemorySink) -> Vec<String> {
    sink.records()
        .into_iter()
        .map(|r| r.user.unwrap_or_default())
        .collect()
}

fn expected_users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("u{i}")).collect()
}

/// Waits until `done` holds of the recorder's stats (60 s at most).
async fn stats_until(recorder: &Recorder, done: impl Fn(&RecorderStats) -> bool) -> RecorderStats {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stats = recorder.stats();
        if done(&stats) {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the recorder never got there: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_failing_sink_spills_and_everything_comes_back_in_order() {
    let dir = spill_dir("order");
    let sink = Outage::default();
    let recorder = spilling(
        sink.clone(),
        8,
        Spill::open(&dir).unwrap().after(Duration::from_millis(20)),
    )
    .spawn();
    for i in 0..200 {
        recorder.record(record(i)).unwrap();
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // `flush` counts what is safe on disk as settled.
    recorder.flush().await;
    let stats = recorder.stats();
    assert_eq!((stats.written, stats.dropped, stats.failed), (0, 0, 0));
    assert_eq!(stats.spilled, 200, "{stats:?}");
    assert!(stats.spill_bytes > 0);
    assert_eq!(stats.queued, 200);
    assert!(!segments(&dir).is_empty());

    sink.up.store(true, Ordering::SeqCst);
    let stats = stats_until(&recorder, |s| s.queued == 0 && s.spill_bytes == 0).await;
    assert_eq!(
        (
            stats.written,
            stats.replayed,
            stats.failed,
            stats.spill_bytes
        ),
        (200, 200, 0, 0)
    );
    assert_eq!(users(&sink.memory), expected_users(200));
    assert!(segments(&dir).is_empty());

    // With the spill empty again, records go straight to the sink.
    recorder.record(record(200)).unwrap();
    recorder.flush().await;
    assert_eq!(recorder.stats().spilled, 200);
    assert_eq!(users(&sink.memory), expected_users(201));
    recorder.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_next_recorder_writes_what_a_stopped_one_left_and_two_cannot_share_a_spill() {
    let dir = spill_dir("reopen");
    let down = Outage::default();
    let recorder = spilling(down.clone(), 16, Spill::open(&dir).unwrap()).spawn();
    match Spill::open(&dir) {
        Err(error @ SpillError::Locked(_)) => {
            assert!(error.to_string().contains("in use"), "{error}");
        }
        other => panic!("a second opener got {other:?}"),
    }
    for i in 0..100 {
        recorder.record(record(i)).unwrap();
    }
    // Shutting down with the sink failing moves everything to the spill at once instead
    // of retrying until the shutdown deadline.
    let started = std::time::Instant::now();
    recorder.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let stats = recorder.stats();
    assert_eq!((stats.spilled, stats.failed, stats.written), (100, 0, 0));

    // The worker has let go of the directory: a new recorder opens it at once.
    let spill = Spill::open(&dir).unwrap();
    assert!(spill.bytes() > 0);
    let sink = MemorySink::new();
    let next = Recorder::builder(sink.clone()).spill(spill).spawn();
    let stats = stats_until(&next, |s| s.queued == 0 && s.spill_bytes == 0).await;
    assert_eq!(
        (
            stats.recorded,
            stats.recovered,
            stats.replayed,
            stats.spill_bytes
        ),
        (0, 100, 100, 0)
    );
    assert_eq!(users(&sink), expected_users(100));
    next.shutdown().await;
    assert!(segments(&dir).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_full_spill_gives_batches_up_and_counts_them_and_the_recorder_goes_on() {
    let dir = spill_dir("full");
    let sink = Outage::default();
    let recorder = spilling(
        sink.clone(),
        10,
        Spill::open(&dir)
            .unwrap()
            .max_bytes(20_000)
            .after(Duration::ZERO),
    )
    .spawn();
    for i in 0..300 {
        recorder.record(record(i)).unwrap();
        if i % 10 == 9 {
            recorder.flush().await;
        }
    }
    recorder.flush().await;
    let stats = recorder.stats();
    assert!(stats.spilled > 0 && stats.spill_refused > 0, "{stats:?}");
    assert_eq!(stats.spilled + stats.spill_refused, 300);
    assert_eq!(stats.failed, stats.spill_refused);
    assert!(stats.spill_bytes <= 20_000);

    // Once the sink is back, what the spill kept is written, in order, and the recorder
    // writes again.
    sink.up.store(true, Ordering::SeqCst);
    let stats = stats_until(&recorder, |s| s.queued == 0 && s.spill_bytes == 0).await;
    assert_eq!(stats.written, stats.spilled);
    recorder.record(record(300)).unwrap();
    recorder.flush().await;
    assert_eq!(recorder.stats().written, stats.spilled + 1);
    let kept = users(&sink.memory);
    assert_eq!(kept[..kept.len() - 1], expected_users(kept.len() - 1));
    recorder.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_torn_or_corrupt_segment_is_counted_and_what_precedes_the_damage_is_written() {
    let dir = spill_dir("damaged");
    let down = Outage::default();
    let recorder = spilling(down, 10, Spill::open(&dir).unwrap()).spawn();
    for i in 0..50 {
        recorder.record(record(i)).unwrap();
        if i % 10 == 9 {
            recorder.flush().await;
        }
    }
    recorder.shutdown().await;
    assert_eq!(recorder.stats().spilled, 50);
    // A crash mid-append leaves a torn frame at the end; a stray file is not a segment.
    let newest = segments(&dir).pop().unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, b'[', b'{']);
    std::fs::write(&newest, &bytes).unwrap();
    std::fs::write(dir.join("00000000000000099999.seg"), b"not a spill segment").unwrap();

    let sink = MemorySink::new();
    let next = Recorder::builder(sink.clone())
        .spill(Spill::open(&dir).unwrap())
        .spawn();
    let stats = stats_until(&next, |s| s.spill_bytes == 0 && s.written == 50).await;
    assert_eq!((stats.recovered, stats.spill_damaged), (50, 2));
    assert_eq!(users(&sink), expected_users(50));
    next.shutdown().await;
    assert!(segments(&dir).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_queue_past_high_water_spills_before_the_wait_is_over() {
    let dir = spill_dir("highwater");
    let sink = Outage::default();
    let recorder = spilling(
        sink.clone(),
        10,
        Spill::open(&dir)
            .unwrap()
            .after(Duration::from_secs(3600))
            .high_water(100),
    )
    .queue_capacity(200)
    .spawn();
    for i in 0..400 {
        recorder.record(record(i)).unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    recorder.flush().await;
    let stats = recorder.stats();
    assert_eq!((stats.dropped, stats.failed, stats.spilled), (0, 0, 400));
    sink.up.store(true, Ordering::SeqCst);
    stats_until(&recorder, |s| s.queued == 0 && s.spill_bytes == 0).await;
    assert_eq!(users(&sink.memory), expected_users(400));
    recorder.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A sink that hangs until switched on: a write from the spill that hangs must not hold
/// the queue up behind it.
#[derive(Debug, Clone, Default)]
struct Hangs {
    up: Arc<AtomicBool>,
    memory: MemorySink,
}

#[async_trait]
impl UsageSink for Hangs {
    async fn write_batch(&self, records: &[UsageRecord]) -> Result<(), SinkError> {
        if !self.up.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.memory.write_batch(records).await
    }
}

#[tokio::test]
async fn a_hanging_sink_does_not_fill_the_queue() {
    let dir = spill_dir("hangs");
    let sink = Hangs::default();
    let recorder = spilling(
        sink.clone(),
        10,
        Spill::open(&dir).unwrap().after(Duration::from_millis(5)),
    )
    .queue_capacity(200)
    .write_timeout(Duration::from_secs(3600))
    .shutdown_timeout(Duration::from_millis(300))
    .spawn();
    // Five times the queue: a worker waiting on the hung write would drop most of them.
    for i in 0..1_000 {
        recorder.record(record(i)).unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    recorder.flush().await;
    let stats = recorder.stats();
    assert_eq!((stats.dropped, stats.failed, stats.spilled), (0, 0, 1_000));
    // The write from the spill that hangs is cut short at the shutdown deadline.
    sink.up.store(true, Ordering::SeqCst);
    recorder.record(record(1_000)).unwrap();
    let started = std::time::Instant::now();
    recorder.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let stats = recorder.stats();
    assert_eq!(stats.written + stats.queued, 1_001, "{stats:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Loads a server with 8 connections, each sending `GET /` as fast as it is answered,
/// until `stop` turns true; returns how many requests were answered 200.
#[cfg(feature = "postgres")]
async fn load(addr: std::net::SocketAddr, stop: tokio::sync::watch::Receiver<bool>) -> u64 {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;

    let clients = (0..8).map(|client| {
        let stop = stop.clone();
        tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let mut answered = 0u64;
            while !*stop.borrow() {
                let request = http::Request::get("/")
                    .header("host", "localhost")
                    .header("x-user-id", format!("client-{client}"))
                    .body(Empty::<bytes::Bytes>::new())
                    .unwrap();
                let response = sender.send_request(request).await.unwrap();
                let ok = response.status() == http::StatusCode::OK;
                response.into_body().collect().await.unwrap();
                answered += u64::from(ok);
            }
            answered
        })
    });
    let mut answered = 0;
    for client in clients.collect::<Vec<_>>() {
        answered += client.await.unwrap();
    }
    answered
}

/// PostgreSQL taken away (every connection cut, new ones refused) for a few seconds while
/// 8 clients load a server whose recorder has a small queue: without the spill most
/// records would be dropped from the full queue; with it, every answered request is
/// stored, once.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_under_load_loses_no_answered_request() {
    use tower_usage::store::DieselStore;
    use tower_usage::{extract, UsageLayer};

    let Some((db, proxy, proxied_url)) = common::proxy::postgres_behind_proxy("spillout").await
    else {
        // `fresh` fails under CI without the server, and says the skip otherwise.
        return;
    };
    let dir = spill_dir("outage");
    let store = DieselStore::connect(&proxied_url).await.unwrap();
    let recorder = Recorder::builder(store.clone())
        .queue_capacity(2_048)
        .batch_size(512)
        .flush_interval(Duration::from_millis(20))
        .write_timeout(Duration::from_millis(500))
        .retry(Retry::backoff(
            Duration::from_millis(20),
            Duration::from_millis(200),
        ))
        .spill(Spill::open(&dir).unwrap().after(Duration::from_millis(200)))
        .spawn();
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .layer(
            UsageLayer::new(recorder.clone())
                .user(extract::header("x-user-id"))
                .service(extract::fixed("quickstart")),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let clients = tokio::spawn(load(addr, stopped));
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.take_down();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = recorder.stats();
    proxy.bring_back();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send_replace(true);
    let answered = clients.await.unwrap();

    let stats = stats_until(&recorder, |s| {
        s.recorded == answered && s.queued == 0 && s.spill_bytes == 0
    })
    .await;
    assert!(
        during.spilled > 2_048,
        "the outage was too short to fill the queue: {during:?}"
    );
    assert_eq!((stats.dropped, stats.failed), (0, 0), "{stats:?}");
    assert_eq!(store.count().await.unwrap(), answered);
    eprintln!(
        "{answered} requests answered, {} of their records went through the spill",
        stats.spilled
    );
    recorder.shutdown().await;
    drop(proxy);
    db.cleanup().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The quick-start example's binary, built beside this test by `cargo test`.
#[cfg(feature = "postgres")]
fn quickstart_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe
        .parent()?
        .parent()?
        .join("examples")
        .join(format!("quickstart{}", std::env::consts::EXE_SUFFIX));
    bin.exists().then_some(bin)
}

/// `GET /health` of a server, as JSON; `None` while it does not answer.
#[cfg(feature = "postgres")]
async fn health(addr: std::net::SocketAddr) -> Option<serde_json::Value> {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;

    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(connection);
    let request = http::Request::get("/health")
        .header("host", "localhost")
        .body(Empty::<bytes::Bytes>::new())
        .ok()?;
    let body = sender.send_request(request).await.ok()?.into_body();
    serde_json::from_slice(&body.collect().await.ok()?.to_bytes()).ok()
}

/// Waits until the server's recorder figures satisfy `done` (60 s at most).
#[cfg(feature = "postgres")]
async fn recorder_until(
    addr: std::net::SocketAddr,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let recorder = health(addr)
            .await
            .map(|report| report["checks"]["recorder"].clone());
        if let Some(recorder) = recorder.as_ref().filter(|r| done(r)) {
            return recorder.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server's recorder never got there: {recorder:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts the quick-start example recording into `database_url`, in `dir`, on a free port.
#[cfg(feature = "postgres")]
async fn start_quickstart(
    bin: &Path,
    dir: &Path,
    database_url: &str,
) -> (tokio::process::Child, std::net::SocketAddr) {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("quickstart.log"))
        .unwrap();
    let child = tokio::process::Command::new(bin)
        .current_dir(dir)
        .env("DATABASE_URL", database_url)
        .env("ADDR", addr.to_string())
        .env("ANSWER_CACHE_MB", "0")
        .env_remove("SPILL_DIR")
        .env_remove("REDIS_URL")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let recorder = recorder_until(addr, |_| true).await;
    assert!(
        recorder.get("spilled").is_some(),
        "{} is older than the crate (it reports no spill); `cargo test` rebuilds it",
        bin.display()
    );
    (child, addr)
}

/// The quick-start example as shipped, loaded by 8 clients while PostgreSQL goes away,
/// then killed with SIGKILL during the outage once its records are on disk, and started
/// again after PostgreSQL is back: every request it answered is in the database, once.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_killed_during_an_outage_loses_no_answered_request() {
    use tower_usage::store::DieselStore;

    let Some(bin) = quickstart_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the quickstart example is not built; `cargo test` builds it"
        );
        eprintln!("skipped: the quickstart example is not built (`cargo test` builds it)");
        return;
    };
    let Some((db, proxy, proxied_url)) = common::proxy::postgres_behind_proxy("spillkill").await
    else {
        // `fresh` fails under CI without the server, and says the skip otherwise.
        return;
    };
    let dir = spill_dir("quickstart");
    std::fs::create_dir_all(&dir).unwrap();

    let (mut first, addr) = start_quickstart(&bin, &dir, &proxied_url).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let clients = tokio::spawn(load(addr, stopped));
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.take_down();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.send_replace(true);
    let answered = clients.await.unwrap();
    // Every record is written or on disk before the kill: SIGKILL loses what is only in
    // memory (at most a flush interval of records).
    let before = recorder_until(addr, |r| {
        r["recorded"] == answered
            && r["spilled"].as_u64().unwrap_or(0) + r["written"].as_u64().unwrap_or(0) == answered
    })
    .await;
    assert!(before["spilled"].as_u64().unwrap() > 0, "{before}");
    assert_eq!(before["dropped"], 0, "{before}");
    first.kill().await.unwrap();

    proxy.bring_back();
    let (mut second, addr) = start_quickstart(&bin, &dir, &proxied_url).await;
    let after = recorder_until(addr, |r| {
        r["spill_bytes"] == 0 && r["queued"] == 0 && r["recovered"].as_u64().unwrap_or(0) > 0
    })
    .await;
    assert_eq!(after["recovered"], before["spilled"], "{after}");
    let store = DieselStore::connect(&db.url).await.unwrap();
    assert_eq!(store.count().await.unwrap(), answered);
    eprintln!(
        "{answered} requests answered; {} records were on disk at the kill",
        before["spilled"]
    );
    second.kill().await.unwrap();
    drop(proxy);
    db.cleanup().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
