//! A PostgreSQL primary and its streaming replica of the test's own: two small clusters
//! made with `initdb` and `pg_basebackup` from the machine's PostgreSQL binaries, on
//! ports of their own, so that a test may pause, stop and start the replica.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The primary and the replica; both stopped and removed when dropped.
pub struct Replicated {
    pub primary_url: String,
    pub replica_url: String,
    bin: PathBuf,
    dir: PathBuf,
    replica_port: u16,
}

/// The directory of `initdb`, `pg_ctl` and `pg_basebackup`, the newest version first.
fn bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("pg_basebackup").exists() && bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `program`, as `postgres` when this is root: PostgreSQL refuses to run as root.
fn command(program: &Path) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Runs `program` (see [`command`]) and checks that it succeeded.
fn run(program: &Path, args: &[&str]) -> Output {
    let output = command(program).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl Replicated {
    /// Makes and starts both, or `None` (said) when the machine has no PostgreSQL
    /// binaries; under `CI` that fails.
    pub fn start(test: &str) -> Option<Replicated> {
        let Some(bin) = bin() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but PostgreSQL's initdb and pg_basebackup are not installed"
            );
            super::db::skipped("PostgreSQL's initdb and pg_basebackup are not installed");
            return None;
        };
        let dir = std::env::temp_dir()
            .join("tower-usage-tests")
            .join(format!("replica-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let _ = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .output();
        let (primary_port, replica_port) = (free_port(), free_port());
        let primary = dir.join("primary");
        let path = |p: &Path| p.display().to_string();
        run(
            &bin.join("initdb"),
            &[
                "-D",
                &path(&primary),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        // Small and fast: nothing here needs to survive a crash of the machine. The
        // default pg_hba.conf of `initdb -A trust` lets replication in from localhost.
        let conf = format!(
            "\nport = {primary_port}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nfsync = off\nwal_level = replica\n\
             max_wal_senders = 4\nshared_buffers = 32MB\n",
            path(&dir)
        );
        append(&primary.join("postgresql.conf"), &conf);
        let server = Replicated {
            primary_url: format!("postgres://postgres@127.0.0.1:{primary_port}/postgres"),
            replica_url: format!("postgres://postgres@127.0.0.1:{replica_port}/postgres"),
            bin,
            dir,
            replica_port,
        };
        server.pg_ctl("primary", &["start", "-w"], Some("primary.log"));
        run(
            &server.bin.join("pg_basebackup"),
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary_port.to_string(),
                "-U",
                "postgres",
                "-D",
                &path(&server.dir.join("replica")),
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
        );
        server.start_replica();
        Some(server)
    }

    /// `pg_ctl` on a cluster's directory, its server's output into `log` when given.
    fn pg_ctl(&self, cluster: &str, args: &[&str], log: Option<&str>) {
        let data = self.dir.join(cluster).display().to_string();
        let log = log.map(|log| self.dir.join(log).display().to_string());
        let mut all = vec!["-D", data.as_str()];
        all.extend_from_slice(args);
        if let Some(log) = &log {
            all.extend(["-l", log.as_str()]);
        }
        run(&self.bin.join("pg_ctl"), &all);
    }

    /// Starts the replica (again), on its own port.
    pub fn start_replica(&self) {
        let port = format!("-p {}", self.replica_port);
        self.pg_ctl(
            "replica",
            &["start", "-w", "-o", &port],
            Some("replica.log"),
        );
    }

    /// Stops the replica at once, as a crash would.
    pub fn stop_replica(&self) {
        self.pg_ctl("replica", &["stop", "-m", "immediate", "-w"], None);
    }
}

fn append(file: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(file).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

impl Drop for Replicated {
    fn drop(&mut self) {
        for cluster in ["replica", "primary"] {
            let data = self.dir.join(cluster);
            if data.join("postmaster.pid").exists() {
                // No panic in a drop: a server already gone is fine.
                let _ = command(&self.bin.join("pg_ctl"))
                    .arg("-D")
                    .arg(&data)
                    .args(["stop", "-m", "immediate", "-w"])
                    .output();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
