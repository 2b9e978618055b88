//! The recorder: batching, retries without double counting, failures, overflow, shutdown.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::{Hangs, Outage};
use tower_usage::recorder::{Overflow, Retry};
use tower_usage::{
    FanoutSink, JsonLinesSink, MemorySink, RecordError, Recorder, SinkError, UsageRecord, UsageSink,
};

fn record(user: &str) -> UsageRecord {
    UsageRecord::builder().user(user).build()
}

fn fast_retry() -> Retry {
    Retry::backoff(Duration::from_millis(1), Duration::from_millis(5))
}

/// Remembers the size of every batch, then stores it.
#[derive(Debug, Clone, Default)]
struct BatchSizes {
    sizes: Arc<Mutex<Vec<usize>>>,
    memory: MemorySink,
}

#[async_trait]
impl UsageSink for BatchSizes {
    async fn write_batch(&self, records: &[UsageRecord]) -> Result<(), SinkError> {
        self.sizes.lock().unwrap().push(records.len());
        self.memory.write_batch(records).await
    }
}

/// Amounts past what a record keeps reach the sink clamped, and the recorder counts the
/// records it clamped; `record_usage` and hand-made records alike.
#[tokio::test]
async fn absurd_amounts_are_clamped_and_counted() {
    let (recorder, sink) = common::memory_recorder();
    let mut absurd = record("big");
    absurd.tokens = tower_usage::TokenUsage::new(u64::MAX, 5);
    absurd.cost_micros = Some(i64::MIN);
    absurd.duration = Duration::MAX;
    recorder.record(absurd).unwrap();
    recorder.record(record("small")).unwrap();
    recorder.flush().await;
    let stored = sink.records();
    let big = stored
        .iter()
        .find(|r| r.user.as_deref() == Some("big"))
        .unwrap();
    let max = UsageRecord::MAX_AMOUNT;
    assert_eq!((big.tokens.input, big.tokens.output), (max, 5));
    assert_eq!(big.cost_micros, Some(-(max as i64)));
    assert_eq!(big.duration, Duration::from_micros(max));
    let stats = recorder.stats();
    assert_eq!((stats.clamped, stats.written), (1, 2));
}

#[tokio::test]
async fn a_full_batch_is_written_without_waiting_for_the_interval() {
    let sink = BatchSizes::default();
    let recorder = Recorder::builder(sink.clone())
        .batch_size(10)
        .flush_interval(Duration::from_secs(3600))
        .spawn();
    for i in 0..25 {
        recorder.record(record(&i.to_string())).unwrap();
    }
    tokio::time::timeout(Duration::from_secs(5), async {
        while sink.memory.len() < 20 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("two full batches written long before the interval");
    assert_eq!(sink.sizes.lock().unwrap()[..2], [10, 10]);
    recorder.shutdown().await;
    assert_eq!(
        *sink.sizes.lock().unwrap(),
        [10, 10, 5],
        "shutdown writes the rest"
    );
    let stats = recorder.stats();
    assert_eq!((stats.recorded, stats.written, stats.queued), (25, 25, 0));
}

#[tokio::test(start_paused = true)]
async fn a_partial_batch_is_written_when_the_interval_passes() {
    let sink = MemorySink::new();
    let recorder = Recorder::builder(sink.clone())
        .batch_size(100)
        .flush_interval(Duration::from_secs(2))
        .spawn();
    recorder.record(record("a")).unwrap();
    tokio::time::sleep(Duration::from_millis(1900)).await;
    assert_eq!(sink.len(), 0, "not before the interval");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.len(), 1, "after the interval");
    recorder.shutdown().await;
}

/// Stores the batch, then reports failure a number of times: the answer was lost after
/// the write was committed.
#[derive(Debug, Clone)]
struct CommitThenFail {
    memory: MemorySink,
    failures_left: Arc<AtomicUsize>,
}

#[async_trait]
impl UsageSink for CommitThenFail {
    async fn write_batch(&self, records: &[UsageRecord]) -> Result<(), SinkError> {
        self.memory.write_batch(records).await?;
        if self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(SinkError::transient("connection reset before the answer"));
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_retried_batch_never_counts_twice() {
    let sink = CommitThenFail {
        memory: MemorySink::new(),
        failures_left: Arc::new(AtomicUsize::new(3)),
    };
    let recorder = Recorder::builder(sink.clone()).retry(fast_retry()).spawn();
    for i in 0..50 {
        recorder.record(record(&i.to_string())).unwrap();
    }
    recorder.shutdown().await;
    let stats = recorder.stats();
    assert_eq!(sink.memory.len(), 50);
    assert!(
        sink.memory.duplicates_ignored() >= 50,
        "the batch was really sent again"
    );
    assert_eq!((stats.written, stats.failed, stats.retried), (50, 0, 3));
}

#[tokio::test]
async fn an_outage_loses_nothing_that_fits_in_the_queue() {
    let sink = Outage::default();
    let recorder = Recorder::builder(sink.clone())
        .batch_size(8)
        .flush_interval(Duration::from_millis(1))
        .retry(fast_retry())
        .spawn();
    for i in 0..100 {
        recorder.record(record(&i.to_string())).unwrap();
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(sink.memory.len(), 0);
    assert!(recorder.stats().retried > 0);
    sink.up.store(true, Ordering::SeqCst);
    recorder.flush().await;
    assert_eq!(sink.memory.len(), 100);
    let stats = recorder.stats();
    assert_eq!(
        (stats.written, stats.failed, stats.dropped, stats.queued),
        (100, 0, 0, 0)
    );
    recorder.shutdown().await;
}

#[derive(Debug)]
struct Fails(fn() -> SinkError);

#[async_trait]
impl UsageSink for Fails {
    async fn write_batch(&self, _: &[UsageRecord]) -> Result<(), SinkError> {
        Err((self.0)())
    }
}

#[tokio::test]
async fn permanent_failures_and_rejections_are_counted_not_retried() {
    let recorder = Recorder::builder(Fails(|| SinkError::permanent("schema mismatch"))).spawn();
    for _ in 0..3 {
        recorder.record(record("u")).unwrap();
    }
    recorder.shutdown().await;
    let stats = recorder.stats();
    assert_eq!((stats.written, stats.failed, stats.retried), (0, 3, 0));

    let recorder = Recorder::builder(Fails(|| SinkError::rejected(1, "NUL byte in user"))).spawn();
    for _ in 0..3 {
        recorder.record(record("u")).unwrap();
    }
    recorder.shutdown().await;
    let stats = recorder.stats();
    assert_eq!((stats.written, stats.failed, stats.retried), (2, 1, 0));

    // A sink claiming more rejections than records cannot make the counters lie.
    let recorder = Recorder::builder(Fails(|| SinkError::rejected(99, "nonsense"))).spawn();
    recorder.record(record("u")).unwrap();
    recorder.shutdown().await;
    let stats = recorder.stats();
    assert_eq!((stats.written, stats.failed, stats.queued), (0, 1, 0));
}

#[tokio::test]
async fn retries_stop_at_the_configured_limit() {
    let recorder = Recorder::builder(Fails(|| SinkError::transient("down")))
        .retry(fast_retry().max_retries(2))
        .spawn();
    recorder.record(record("u")).unwrap();
    recorder.flush().await;
    let stats = recorder.stats();
    assert_eq!((stats.retried, stats.failed, stats.queued), (2, 1, 0));
    recorder.shutdown().await;
}

/// Panics on its first batch, then works.
#[derive(Debug, Clone, Default)]
struct PanicsOnce {
    calls: Arc<AtomicUsize>,
    memory: MemorySink,
}

#[async_trait]
impl UsageSink for PanicsOnce {
    async fn write_batch(&self, records: &[UsageRecord]) -> Result<(), SinkError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("sink bug");
        }
        self.memory.write_batch(records).await
    }
}

#[tokio::test]
async fn a_panicking_sink_costs_its_batch_and_the_worker_goes_on() {
    let sink = PanicsOnce::default();
    let recorder = Recorder::builder(sink.clone()).spawn();
    recorder.record(record("first")).unwrap();
    recorder.flush().await;
    recorder.record(record("second")).unwrap();
    recorder.flush().await;
    let stats = recorder.stats();
    assert_eq!((stats.failed, stats.written), (1, 1));
    assert_eq!(sink.memory.records()[0].user.as_deref(), Some("second"));
    recorder.shutdown().await;
}

#[tokio::test]
async fn a_hung_sink_times_out_and_shutdown_still_ends() {
    let recorder = Recorder::builder(Hangs)
        .queue_capacity(4)
        .write_timeout(Duration::from_millis(20))
        .shutdown_timeout(Duration::from_millis(100))
        .retry(fast_retry())
        .spawn();
    for _ in 0..20 {
        let _ = recorder.record(record("u"));
    }
    let stats = recorder.stats();
    assert!(
        stats.dropped > 0,
        "a full queue drops instead of waiting: {stats:?}"
    );
    tokio::time::timeout(Duration::from_secs(10), recorder.shutdown())
        .await
        .expect("shutdown gives up on a hung sink");
    let stats = recorder.stats();
    assert!(stats.retried > 0);
    assert_eq!(stats.queued, 0);
    assert_eq!(stats.recorded, stats.failed);
    assert_eq!(stats.recorded + stats.dropped, 20);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_by_default() {
    let (recorder, worker) = Recorder::builder(MemorySink::new())
        .queue_capacity(3)
        .build();
    let results: Vec<_> = (0..5).map(|_| recorder.record(record("u"))).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
    assert_eq!(results[4], Err(RecordError::QueueFull));
    let stats = recorder.stats();
    assert_eq!((stats.recorded, stats.dropped, stats.queued), (3, 2, 3));
    let running = tokio::spawn(worker.run());
    recorder.shutdown().await;
    running.await.unwrap();
    assert_eq!(recorder.stats().written, 3);
}

#[tokio::test]
async fn overflow_wait_keeps_every_record() {
    let sink = MemorySink::new();
    let (recorder, worker) = Recorder::builder(sink.clone())
        .queue_capacity(2)
        .overflow(Overflow::Wait)
        .build();
    for i in 0..10 {
        recorder.record(record(&i.to_string())).unwrap();
    }
    tokio::spawn(worker.run());
    recorder.flush().await;
    assert_eq!(sink.len(), 10);
    let stats = recorder.stats();
    assert_eq!((stats.dropped, stats.written), (0, 10));
    recorder.shutdown().await;
}

#[tokio::test]
async fn records_after_shutdown_are_refused_and_counted() {
    let sink = MemorySink::new();
    let recorder = Recorder::builder(sink.clone())
        .flush_interval(Duration::from_secs(3600))
        .spawn();
    let clone = recorder.clone();
    for _ in 0..7 {
        recorder.record(record("u")).unwrap();
    }
    recorder.shutdown().await;
    assert_eq!(
        sink.len(),
        7,
        "shutdown flushed the queue without waiting for the interval"
    );
    assert_eq!(clone.record(record("late")), Err(RecordError::Closed));
    clone.shutdown().await; // a second shutdown returns at once
    clone.flush().await; // and so does a flush
    let stats = recorder.stats();
    assert_eq!((stats.written, stats.dropped), (7, 1));
}

#[tokio::test]
async fn dropping_every_handle_flushes_and_stops_the_worker() {
    let sink = MemorySink::new();
    let (recorder, worker) = Recorder::builder(sink.clone())
        .flush_interval(Duration::from_secs(3600))
        .build();
    let running = tokio::spawn(worker.run());
    recorder.record(record("u")).unwrap();
    drop(recorder);
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sink.len(), 1);
}

#[tokio::test]
async fn record_usage_builds_a_plain_record() {
    let sink = MemorySink::new();
    let recorder = Recorder::builder(sink.clone()).spawn();
    let id = recorder
        .record_usage(
            "u-1",
            "batch",
            Some("gpt-4"),
            1000,
            100,
            serde_json::json!({"customField": "value"}),
        )
        .unwrap();
    recorder.shutdown().await;
    let record = &sink.records()[0];
    assert_eq!(record.id, id);
    assert_eq!(
        (record.user.as_deref(), record.service.as_deref()),
        (Some("u-1"), Some("batch"))
    );
    assert_eq!(record.model.as_deref(), Some("gpt-4"));
    assert_eq!((record.tokens.input, record.tokens.output), (1000, 100));
    assert_eq!(record.metadata["customField"], "value");
    assert_eq!((record.method.as_ref(), record.status), (None, None));
}

#[tokio::test]
async fn json_lines_and_fanout_write_the_same_records() {
    let dir = std::env::temp_dir().join(format!("tower-usage-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("usage.jsonl");
    let memory = MemorySink::new();
    let sink = FanoutSink::new()
        .with(memory.clone())
        .with(JsonLinesSink::file(&path).unwrap());
    let recorder = Recorder::builder(sink).spawn();
    for user in ["a", "b\n\"c\""] {
        recorder.record(record(user)).unwrap();
    }
    recorder.shutdown().await;
    let text = std::fs::read_to_string(&path).unwrap();
    let from_file: Vec<UsageRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(from_file, memory.records());
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn fanout_reports_the_most_serious_failure() {
    let sink = FanoutSink::new()
        .with(Fails(|| SinkError::rejected(1, "x")))
        .with(Fails(|| SinkError::transient("down")))
        .with(Fails(|| SinkError::permanent("bad")));
    let error = sink.write_batch(&[record("u")]).await.unwrap_err();
    assert!(matches!(error, SinkError::Transient(_)), "{error}");
}

fn uuid_like() -> String {
    format!("{}-{:?}", std::process::id(), std::thread::current().id()).replace(['(', ')'], "")
}

#[tokio::test]
async fn a_batch_larger_than_the_queue_is_written_when_the_queue_fills() {
    let sink = MemorySink::new();
    let recorder = Recorder::builder(sink.clone())
        .queue_capacity(8)
        .batch_size(1_000)
        .flush_interval(Duration::from_secs(3600))
        .spawn();
    for i in 0..8 {
        recorder.record(record(&i.to_string())).unwrap();
    }
    tokio::time::timeout(Duration::from_secs(5), async {
        while sink.len() < 8 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("a full queue is a full batch; the hour-long interval is not waited for");
    recorder.shutdown().await;
}
