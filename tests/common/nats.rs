//! The machine's NATS server with JetStream for the tests (`TOWER_USAGE_NATS_URL`, which
//! `.ci/run` sets), and private servers a test may stop and start.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The NATS URL, or `None` (said) when it is not set; under `CI` a missing URL fails.
pub fn url() -> Option<String> {
    match std::env::var("TOWER_USAGE_NATS_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but TOWER_USAGE_NATS_URL is not: the NATS tests would not run")
        }
        Err(_) => {
            super::db::skipped("TOWER_USAGE_NATS_URL is not set");
            None
        }
    }
}

/// A stream and subject name no other test run shares.
pub fn names(test: &str) -> (String, String) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let tag = format!("{test}_{}_{nanos}", std::process::id()).to_uppercase();
    (format!("TU_{tag}"), format!("tu-test.{tag}"))
}

/// Deletes a test's stream from the shared server, so runs do not pile streams up on it.
pub async fn remove_stream(url: &str, stream: &str) {
    let client = async_nats::connect(url).await.unwrap();
    async_nats::jetstream::new(client)
        .delete_stream(stream)
        .await
        .unwrap();
}

/// A NATS server of the test's own, with JetStream keeping its files in a directory of
/// its own, on a port of its own: it can be killed and started again.
pub struct PrivateServer {
    pub url: String,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

fn binary() -> Option<PathBuf> {
    [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

impl PrivateServer {
    /// Starts one, or `None` (said) when the machine has no `nats-server`; under `CI` a
    /// missing binary fails.
    pub fn start(test: &str) -> Option<PrivateServer> {
        if binary().is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but nats-server is not installed"
            );
            super::db::skipped("nats-server is not installed");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir()
            .join("tower-usage-tests")
            .join(format!("nats-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = PrivateServer {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            dir,
            child: None,
        };
        server.start_again();
        Some(server)
    }

    /// Starts the server (after a kill), on the same port and files.
    pub fn start_again(&mut self) {
        let child = Command::new(binary().unwrap())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.join("store"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_for_port(self.port);
    }

    /// Kills the server with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("nats-server did not come up on port {port}");
}
