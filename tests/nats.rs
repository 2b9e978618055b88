//! Records through NATS JetStream: producers publish with `NatsSink`, ingesters write into
//! the store. Count in = count out, without duplicates, when a publish is retried, when an
//! ingester dies mid-batch, and when the NATS server is killed and started again.
#![cfg(all(feature = "nats", feature = "sqlite"))]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::nats::{names, remove_stream, url, PrivateServer};
use tower_usage::recorder::Retry;
use tower_usage::sink::nats::{Encoding, Ingester, NatsConfig, NatsSink};
use tower_usage::store::DieselStore;
use tower_usage::{Recorder, SinkError, UsageRecord, UsageSink};

fn record(producer: usize, i: usize) -> UsageRecord {
    UsageRecord::builder()
        .user(format!("p{producer}-u{}", i % 7))
        .service("chat")
        .build()
}

fn config(url: &str, test: &str) -> NatsConfig {
    let (stream, subject) = names(test);
    NatsConfig::new(url).stream(stream).subject(subject)
}

/// Runs `ingester` in a task until the returned sender is dropped or sent to.
fn spawn(
    ingester: Arc<Ingester>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        ingester
            .run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (stop, task)
}

/// Waits until the store holds `n` records (60 s at most), and checks it holds no more.
async fn count_reaches(store: &DieselStore, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let count = store.count().await.unwrap();
        if count >= n {
            // A little longer: nothing more may come.
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(store.count().await.unwrap(), n);
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the store holds {count} records, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_starting_together_share_one_new_stream() {
    let Some(url) = url() else { return };
    // Each connect creates the missing stream; the server may refuse all but the first.
    // The race is narrow: run it on many new streams.
    for round in 0..50 {
        let config = config(&url, &format!("together_{round}"));
        let sinks =
            futures_util::future::join_all((0..8).map(|_| NatsSink::connect(&config))).await;
        for sink in sinks {
            sink.unwrap();
        }
        remove_stream(&url, config.stream_name()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_producers_and_a_retried_publish_reach_every_store_once() {
    let Some(url) = url() else { return };
    for db in common::db::fresh("natsflow").await {
        let store = DieselStore::connect(&db.url).await.unwrap();
        let config = config(&url, &format!("flow_{}", db.backend));
        // One producer writes JSON, the other the binary form: the ingester reads both.
        let encodings = [Encoding::Json, Encoding::Binary];
        let producers: Vec<Recorder> = futures_util::future::join_all(encodings.map(|encoding| {
            let config = config.clone().encoding(encoding);
            async move {
                let sink = NatsSink::connect(&config).await.unwrap();
                Recorder::builder(sink).batch_size(100).spawn()
            }
        }))
        .await;
        let ingester = Arc::new(
            Ingester::new(config.clone(), store.clone())
                .batch_size(200)
                .max_wait(Duration::from_millis(50)),
        );
        let (stop, task) = spawn(Arc::clone(&ingester));
        for (p, producer) in producers.iter().enumerate() {
            for i in 0..500 {
                producer.record(record(p, i)).unwrap();
            }
        }
        // A producer whose ack was lost publishes a batch again.
        let again: Vec<UsageRecord> = (0..50).map(|i| record(9, i)).collect();
        let sink = NatsSink::connect(&config.clone().encoding(Encoding::Binary))
            .await
            .unwrap();
        sink.write_batch(&again).await.unwrap();
        sink.write_batch(&again).await.unwrap();
        for producer in &producers {
            producer.shutdown().await;
            assert_eq!(producer.stats().written, 500);
        }
        count_reaches(&store, 1_050).await;
        let stats = ingester.stats();
        assert_eq!(
            (stats.received, stats.failed, stats.unreadable),
            (1_050, 0, 0),
            "{stats:?}"
        );
        let _ = stop.send(());
        task.await.unwrap();
        remove_stream(&url, config.stream_name()).await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packed_messages_reach_every_store_once() {
    let Some(url) = url() else { return };
    for db in common::db::fresh("natspacked").await {
        let store = DieselStore::connect(&db.url).await.unwrap();
        let config = config(&url, &format!("packed_{}", db.backend)).records_per_message(32);
        let ingester = Arc::new(
            Ingester::new(config.clone(), store.clone())
                .batch_size(200)
                .max_wait(Duration::from_millis(50)),
        );
        let (stop, task) = spawn(Arc::clone(&ingester));
        // Two producers, one in each encoding, 500 records in batches of 100: 32 + 32 +
        // 32 + 4 records a batch, 20 messages each.
        let encodings = [Encoding::Json, Encoding::Binary];
        futures_util::future::join_all(encodings.iter().enumerate().map(|(p, encoding)| {
            let config = config.clone().encoding(*encoding);
            async move {
                let sink = NatsSink::connect(&config).await.unwrap();
                let records: Vec<UsageRecord> = (0..500).map(|i| record(p, i)).collect();
                for batch in records.chunks(100) {
                    sink.write_batch(batch).await.unwrap();
                }
            }
        }))
        .await;
        let sink = NatsSink::connect(&config.clone().encoding(Encoding::Binary))
            .await
            .unwrap();
        let again: Vec<UsageRecord> = (0..50).map(|i| record(9, i)).collect();
        // Sent again the same way: the duplicate window drops both messages.
        sink.write_batch(&again).await.unwrap();
        sink.write_batch(&again).await.unwrap();
        // Sent again packed otherwise: new messages, whose records the store has.
        sink.write_batch(&again[10..]).await.unwrap();
        count_reaches(&store, 1_050).await;
        let stats = ingester.stats();
        assert_eq!(
            (stats.received, stats.failed, stats.unreadable),
            (2 * 5 * 4 + 2 + 2, 0, 0),
            "{stats:?}"
        );
        assert_eq!(stats.written, 1_090);
        let _ = stop.send(());
        task.await.unwrap();
        remove_stream(&url, config.stream_name()).await;
        db.cleanup().await;
    }
}

/// Writes into the store, then, while `hang` is set, never answers: an ingester that dies
/// after the commit and before its acks.
#[derive(Debug, Clone)]
struct CommitsThenHangs {
    store: DieselStore,
    hang: Arc<AtomicBool>,
}

#[async_trait]
impl UsageSink for CommitsThenHangs {
    async fn write_batch(&self, records: &[UsageRecord]) -> Result<(), SinkError> {
        self.store.write_batch(records).await?;
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingester_killed_mid_batch_leaves_its_batch_to_the_next_one() {
    let Some(url) = url() else { return };
    for db in common::db::fresh("natskill").await {
        let store = DieselStore::connect(&db.url).await.unwrap();
        let config = config(&url, &format!("kill_{}", db.backend));
        let sink = NatsSink::connect(&config).await.unwrap();
        let records: Vec<UsageRecord> = (0..300).map(|i| record(0, i)).collect();
        sink.write_batch(&records).await.unwrap();

        let dying = Arc::new(
            Ingester::new(
                config.clone(),
                CommitsThenHangs {
                    store: store.clone(),
                    hang: Arc::new(AtomicBool::new(true)),
                },
            )
            .batch_size(100)
            .max_wait(Duration::from_millis(50))
            .ack_wait(Duration::from_secs(1)),
        );
        let (_stop, task) = spawn(Arc::clone(&dying));
        // Its first batch is committed; it never acks.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while store.count().await.unwrap() < 100 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the first batch never landed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        task.abort();
        let _ = task.await;
        drop(dying);

        let next = Arc::new(
            Ingester::new(config.clone(), store.clone())
                .batch_size(100)
                .max_wait(Duration::from_millis(50)),
        );
        let (stop, task) = spawn(Arc::clone(&next));
        count_reaches(&store, 300).await;
        // The batch the first one committed comes again (once its ack wait is over), and
        // the ids absorb it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while next.stats().received < 300 {
            assert!(tokio::time::Instant::now() < deadline, "{:?}", next.stats());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(store.count().await.unwrap(), 300);
        assert_eq!(next.stats().written, 300);
        let _ = stop.send(());
        task.await.unwrap();
        remove_stream(&url, config.stream_name()).await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_killed_and_started_again_loses_nothing() {
    let Some(mut server) = PrivateServer::start("restart") else {
        return;
    };
    let db = common::db::fresh("natsrestart").await.remove(0);
    let store = DieselStore::connect(&db.url).await.unwrap();
    let config = NatsConfig::new(&server.url)
        .stream("TU_RESTART")
        .subject("tu.restart");
    let producer = Recorder::builder(NatsSink::connect(&config).await.unwrap())
        .batch_size(50)
        .flush_interval(Duration::from_millis(10))
        .write_timeout(Duration::from_secs(2))
        .retry(Retry::backoff(
            Duration::from_millis(50),
            Duration::from_millis(500),
        ))
        .spawn();
    let ingester = Arc::new(
        Ingester::new(config.clone(), store.clone())
            .batch_size(100)
            .max_wait(Duration::from_millis(50))
            .retry(Retry::backoff(
                Duration::from_millis(50),
                Duration::from_millis(500),
            )),
    );
    let (stop, task) = spawn(Arc::clone(&ingester));
    for i in 0..1_000 {
        producer.record(record(0, i)).unwrap();
        if i == 400 {
            server.kill();
        }
        if i == 600 {
            server.start_again();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    producer.flush().await;
    assert_eq!(producer.stats().written, 1_000, "{:?}", producer.stats());
    count_reaches(&store, 1_000).await;
    let _ = stop.send(());
    task.await.unwrap();
    producer.shutdown().await;
    assert!(server.dir().exists());
    db.cleanup().await;
}
