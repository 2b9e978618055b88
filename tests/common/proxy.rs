//! A TCP proxy the tests control, to take a database away for real without touching the
//! server: cut every connection, refuse new ones, or lose the answer to a COMMIT.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[cfg(feature = "postgres")]
use super::db::{fresh, TestDb};

const OPEN: u8 = 0;
const DOWN: u8 = 1;
const LOSE_NEXT_COMMIT_REPLY: u8 = 2;

#[derive(Debug, Clone)]
pub struct Proxy {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    /// Answers to a COMMIT that the server sent and the client never got.
    lost_commits: Arc<AtomicU8>,
    /// Bumped to end every open connection.
    generation: watch::Sender<u64>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            mode: Arc::new(AtomicU8::new(OPEN)),
            lost_commits: Arc::new(AtomicU8::new(0)),
            generation: watch::channel(0).0,
        };
        let accepting = proxy.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if accepting.mode.load(Ordering::SeqCst) == DOWN {
                    drop(client);
                    continue;
                }
                tokio::spawn(accepting.clone().pipe(client, upstream));
            }
        });
        proxy
    }

    /// Ends every connection and refuses new ones, as if the server went away.
    pub fn take_down(&self) {
        self.mode.store(DOWN, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Accepts connections again.
    pub fn bring_back(&self) {
        self.mode.store(OPEN, Ordering::SeqCst);
    }

    /// The next connection that sends `COMMIT` gets no answer to it, and is cut soon
    /// after: the server has committed, the client cannot know.
    pub fn lose_next_commit_reply(&self) {
        self.mode.store(LOSE_NEXT_COMMIT_REPLY, Ordering::SeqCst);
    }

    /// How many times the server's "COMMIT done" answer was swallowed.
    pub fn lost_commits(&self) -> u8 {
        self.lost_commits.load(Ordering::SeqCst)
    }

    async fn pipe(self, client: TcpStream, upstream: SocketAddr) {
        let Ok(server) = TcpStream::connect(upstream).await else {
            return;
        };
        // Without these, each small message waits on the peer's delayed ACK: tens of
        // milliseconds a round trip that the real server does not cost.
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        let mut ended = self.generation.subscribe();
        let (swallow_tx, swallow_rx) = watch::channel(false);
        let mode = Arc::clone(&self.mode);
        let lost_commits = Arc::clone(&self.lost_commits);
        let upward = async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match client_read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let data = &buf[..n];
                if data.windows(6).any(|w| w == b"COMMIT")
                    && mode
                        .compare_exchange(
                            LOSE_NEXT_COMMIT_REPLY,
                            OPEN,
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        )
                        .is_ok()
                {
                    let _ = swallow_tx.send(true);
                }
                if server_write.write_all(data).await.is_err() {
                    return;
                }
            }
        };
        let downward = async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match server_read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if *swallow_rx.borrow() {
                    // Read and drop the server's answers for a while, then cut the client off.
                    let mut swallowed = buf[..n].to_vec();
                    let until = tokio::time::Instant::now() + std::time::Duration::from_millis(300);
                    while let Ok(Ok(n)) =
                        tokio::time::timeout_at(until, server_read.read(&mut buf)).await
                    {
                        if n == 0 {
                            break;
                        }
                        swallowed.extend_from_slice(&buf[..n]);
                    }
                    if swallowed.windows(6).any(|w| w == b"COMMIT") {
                        lost_commits.fetch_add(1, Ordering::SeqCst);
                    }
                    return;
                }
                if client_write.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            () = upward => {}
            () = downward => {}
            _ = ended.changed() => {}
        }
    }
}

/// The test database on PostgreSQL, and its URL rewritten to go through a proxy.
#[cfg(feature = "postgres")]
pub async fn postgres_behind_proxy(test: &str) -> Option<(TestDb, Proxy, String)> {
    let db = fresh(test)
        .await
        .into_iter()
        .find(|db| db.backend == "postgres")?;
    let host_start = db
        .url
        .find('@')
        .map_or(db.url.find("://").unwrap() + 3, |at| at + 1);
    let host_end = host_start + db.url[host_start..].find('/').unwrap();
    let upstream: SocketAddr = tokio::net::lookup_host(&db.url[host_start..host_end])
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(upstream).await;
    let proxied = format!(
        "{}{}{}",
        &db.url[..host_start],
        proxy.addr,
        &db.url[host_end..]
    );
    Some((db, proxy, proxied))
}
