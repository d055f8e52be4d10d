//! A throwaway PostgreSQL server for tests: `initdb` into a temporary directory, `pg_ctl start` on 127.0.0.1
//! with a free port and the unix socket inside that directory, trust authentication on loopback; stopped
//! (`pg_ctl stop -m immediate`) and deleted when the [`PgCluster`] is dropped, also when the test panics.
//!
//! The server binaries come from the Debian `postgresql` package (`/usr/lib/postgresql/<version>/bin`;
//! `PG_BIN` overrides). They refuse to run as root, so as root the cluster belongs to the `postgres` OS user
//! (`runuser -u postgres --`). Without PostgreSQL the test fails and says how to install it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Run the server binaries as the `postgres` OS user (we are root).
    as_postgres: bool,
    /// Extra server options.
    extra: String,
}

/// The newest `/usr/lib/postgresql/*/bin` (or `PG_BIN`).
fn bin_dir() -> PathBuf {
    if let Some(b) = std::env::var_os("PG_BIN") {
        return PathBuf::from(b);
    }
    bin_dir_in(Path::new("/usr/lib/postgresql"))
}

/// The newest `<root>/<version>/bin` holding `initdb`; panics saying how to install PostgreSQL when none does.
pub fn bin_dir_in(root: &Path) -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed: run `bash tests/setup.sh`, which installs the Debian `postgresql` \
             package (no {}/*/bin/initdb; PG_BIN may name another bin directory)",
            root.display()
        ),
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn check(what: &str, out: std::io::Result<Output>) -> Output {
    let out = out.unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgCluster {
    /// Creates and starts a cluster (blocking: a second or a few).
    pub fn start() -> PgCluster {
        Self::start_with(|_| String::new())
    }

    /// [`PgCluster::start`], with `setup` writing files into the cluster's directory before the server starts
    /// (they are handed to the server's user) and returning extra server options (`-c ssl=on …`).
    pub fn start_with(setup: impl FnOnce(&Path) -> String) -> PgCluster {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("mcp-gateway-pg-")
            .tempdir()
            .unwrap();
        let as_postgres = is_root();
        if as_postgres {
            let uid = check(
                "id -u postgres",
                Command::new("id").args(["-u", "postgres"]).output(),
            );
            let gid = check(
                "id -g postgres",
                Command::new("id").args(["-g", "postgres"]).output(),
            );
            let num = |o: &Output| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<u32>()
                    .unwrap()
            };
            std::os::unix::fs::chown(dir.path(), Some(num(&uid)), Some(num(&gid))).unwrap();
        }
        let mut cluster = PgCluster {
            dir,
            bin,
            port: 0,
            as_postgres,
            extra: String::new(),
        };
        let data = cluster.data();
        check(
            "initdb",
            cluster
                .server_cmd("initdb")
                .args(["-D", data.to_str().unwrap()])
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
                .arg("--locale=C")
                .output(),
        );
        let extra = setup(cluster.dir.path());
        if cluster.as_postgres {
            check(
                "chown",
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(cluster.dir.path())
                    .output(),
            );
        }
        cluster.extra = extra;
        // A port taken between our probe and the server's bind: try another.
        let mut last = None;
        for _ in 0..3 {
            cluster.port = free_port();
            let out = cluster.pg_ctl_start();
            if out.status.success() {
                return cluster;
            }
            last = Some(out);
        }
        let out = last.unwrap();
        panic!(
            "pg_ctl start failed:\n{}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(cluster.dir.path().join("server.log")).unwrap_or_default()
        );
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A server binary, as the `postgres` user when we are root.
    fn server_cmd(&self, name: &str) -> Command {
        let exe = self.bin.join(name);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c.current_dir(self.dir.path());
            c
        } else {
            Command::new(exe)
        }
    }

    fn pg_ctl_start(&self) -> Output {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=200 {}",
            self.port,
            self.dir.path().display(),
            self.extra
        );
        self.server_cmd("pg_ctl")
            .args(["-D", self.data().to_str().unwrap()])
            .args(["-l", self.dir.path().join("server.log").to_str().unwrap()])
            .args(["-w", "-t", "30", "-o", &opts, "start"])
            .output()
            .expect("cannot run pg_ctl")
    }

    /// Stops the server (immediately: what a crash or a network cut looks like to clients).
    pub fn stop(&self) {
        check(
            "pg_ctl stop",
            self.server_cmd("pg_ctl")
                .args(["-D", self.data().to_str().unwrap()])
                .args(["-w", "-m", "immediate", "stop"])
                .output(),
        );
    }

    /// Starts it again on the same port.
    pub fn restart(&self) {
        let out = self.pg_ctl_start();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs SQL as the superuser on database `db`; the output (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = check(
            "psql",
            Command::new(self.bin.join("psql"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args([
                    "-U",
                    "postgres",
                    "-d",
                    db,
                    "-X",
                    "-A",
                    "-t",
                    "-v",
                    "ON_ERROR_STOP=1",
                ])
                .args(["-c", sql])
                .output(),
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Creates database `name`; its connection string.
    pub fn create_db(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(name)
    }

    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// Cuts every client connection to `db` (the server stays up): what an idle timeout or a failover does.
    pub fn terminate_connections(&self, db: &str) -> usize {
        let out = self.psql(
            "postgres",
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = '{db}' AND pid <> pg_backend_pid()"
            ),
        );
        out.parse().unwrap_or(0)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Best effort (may already be stopped); the TempDir then deletes the files.
        let _ = self
            .server_cmd("pg_ctl")
            .args(["-D", self.data().to_str().unwrap()])
            .args(["-w", "-m", "immediate", "stop"])
            .output();
    }
}
