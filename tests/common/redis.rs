//! The machine's Redis server for the tests (`TOWER_USAGE_REDIS_URL`, which `.ci/run`
//! sets), directly or through a proxy the test controls.

use super::proxy::Proxy;

/// The Redis URL, or `None` (said) when it is not set; under `CI` a missing URL fails.
pub fn url() -> Option<String> {
    match std::env::var("TOWER_USAGE_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but TOWER_USAGE_REDIS_URL is not: the Redis tests would not run")
        }
        Err(_) => {
            super::db::skipped("TOWER_USAGE_REDIS_URL is not set");
            None
        }
    }
}

/// A proxy in front of the server at `url`, and the URL that goes through it.
pub async fn behind_proxy(url: &str) -> (Proxy, String) {
    let host = url.trim_start_matches("redis://").trim_end_matches('/');
    let upstream = tokio::net::lookup_host(host).await.unwrap().next().unwrap();
    let proxy = Proxy::start(upstream).await;
    let through = format!("redis://{}/", proxy.addr);
    (proxy, through)
}

/// A key prefix no other test run shares.
pub fn prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("tu-test:{test}:{}:{nanos}", std::process::id())
}
