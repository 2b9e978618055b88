//! The optional process-wide recorder. One test binary, so the install is not shared with
//! other tests.

use tower_usage::{MemorySink, RecordError, Recorder};

#[tokio::test]
async fn record_usage_goes_through_the_installed_recorder() {
    assert!(tower_usage::recorder::installed().is_none());
    assert_eq!(
        tower_usage::record_usage("u", "s", None, 1, 2, serde_json::Value::Null),
        Err(RecordError::NotInstalled)
    );

    let sink = MemorySink::new();
    let recorder = Recorder::builder(sink.clone()).spawn();
    tower_usage::install(recorder.clone()).unwrap();
    let second = Recorder::builder(MemorySink::new()).spawn();
    assert!(
        tower_usage::install(second).is_err(),
        "only the first install wins"
    );

    let id = tower_usage::record_usage("u", "s", Some("m"), 1, 2, serde_json::Value::Null).unwrap();
    recorder.shutdown().await;
    let records = sink.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].id, id);
    assert_eq!(
        tower_usage::record_usage("u", "s", None, 1, 2, serde_json::Value::Null),
        Err(RecordError::Closed),
        "after shutdown the installed recorder refuses"
    );
}
