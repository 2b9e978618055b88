//! Reaching a Redis server (feature `redis`): the URL check and the connection settings
//! shared by what keeps state there for a fleet (the API's rate limits, the answer
//! cache's write log).

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// A Redis URL that cannot be used: not `redis://`, `rediss://` or `unix://`, or
/// malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a usable Redis URL ({url}): {reason}")]
pub struct BadRedisUrl {
    url: String,
    reason: String,
}

/// A client for `url`, without connecting.
pub(crate) fn client(url: &str) -> Result<redis::Client, BadRedisUrl> {
    redis::Client::open(url).map_err(|e| BadRedisUrl {
        url: url.chars().take(200).collect(),
        reason: e.to_string(),
    })
}

/// A connection that reconnects by itself, each step bounded by `timeout`: callers fall
/// back to what they can do alone rather than wait on a server that does not answer.
pub(crate) async fn connect(
    client: &redis::Client,
    timeout: Duration,
) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1);
    ConnectionManager::new_with_config(client.clone(), config).await
}
