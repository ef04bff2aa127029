//! A throwaway PostgreSQL server for the tests: one per test run (the suite's tests share it),
//! made with `initdb` in a temporary directory and listening on a free loopback port with
//! trust authentication; each test takes a database of its own from it.
//!
//! The server runs as the `postgres` user when the tests run as root (it refuses to run as
//! root), and dies with the test process: it is started from a thread that lives as long as
//! the process, with that thread's death as its parent-death signal.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::peers::{free_port, require};

const PACKAGE: &str = "postgresql-15";

/// The shared server.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    port: u16,
    /// Runs a command as the server's user.
    as_user: Vec<String>,
}

static SHARED: OnceLock<Postgres> = OnceLock::new();

impl Postgres {
    /// The server of this test run, started by the first test that asks.
    pub fn shared() -> &'static Postgres {
        SHARED.get_or_init(Postgres::start)
    }

    /// A new empty database; its URL.
    pub fn database(&self) -> String {
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        self.client("createdb", &[&name]);
        self.url(&name)
    }

    /// The URL of database `name` on the server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Ends every connection to the database `name` and refuses new ones, as when its
    /// server goes away.
    pub fn cut_off(&self, name: &str) {
        self.psql(
            "postgres",
            &format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"),
        );
        self.psql(
            "postgres",
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            ),
        );
    }

    /// Takes connections to the database `name` again.
    pub fn allow(&self, name: &str) {
        self.psql(
            "postgres",
            &format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true"),
        );
    }

    /// Runs SQL on database `name` with psql; its output.
    pub fn psql(&self, name: &str, sql: &str) -> String {
        self.client("psql", &["-d", name, "-tAc", sql])
    }

    /// Runs one of PostgreSQL's client programs against the server; its output, which must
    /// say it succeeded.
    fn client(&self, program: &str, args: &[&str]) -> String {
        let output = self
            .command(program)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(args)
            .output()
            .unwrap_or_else(|error| panic!("run {program}: {error}"));
        assert!(
            output.status.success(),
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(&self.as_user[0]);
        command.args(&self.as_user[1..]).arg(self.bin.join(program));
        command
    }

    fn start() -> Postgres {
        let bin = bin_dir();
        let root = std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0);
        let as_user: Vec<String> = if root {
            [
                "setpriv",
                "--reuid",
                "postgres",
                "--regid",
                "postgres",
                "--init-groups",
            ]
            .map(str::to_owned)
            .to_vec()
        } else {
            // No user change: `env` just runs the program.
            vec!["env".to_owned()]
        };
        let base = std::env::temp_dir();
        remove_stale(&base);
        let dir = base.join(format!("sylkrtc-gateway-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster's directory");
        if root {
            let done = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("run chown");
            assert!(done.success(), "chown of {} failed", dir.display());
        }
        let data = dir.join("data");
        let postgres = Postgres {
            bin,
            port: free_port(),
            as_user,
        };
        let output = postgres
            .command("initdb")
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--no-locale",
            ])
            .output()
            .expect("run initdb");
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut server = Command::new(&postgres.as_user[0]);
        if root {
            server.args(&postgres.as_user[1..]);
            server.args(["--pdeathsig", "KILL"]);
        } else {
            server = Command::new("setpriv");
            server.args(["--pdeathsig", "KILL"]);
        }
        server
            .arg(postgres.bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &postgres.port.to_string(), "-k"])
            .arg(&dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "max_connections=300"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(
                    base.join(format!("sylkrtc-gateway-pg-{}.log", std::process::id())),
                )
                .expect("create the server's log"),
            ));
        // The thread that starts the server lives as long as the process: its death (the
        // parent-death signal) ends the server with the test run.
        let (started, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let child = server.spawn();
            let _ = started.send(child.map(|child| child.id()));
            loop {
                std::thread::park();
            }
        });
        result
            .recv()
            .expect("the starter thread answers")
            .expect("start postgres");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = postgres
                .command("pg_isready")
                .args(["-h", "127.0.0.1", "-p", &postgres.port.to_string(), "-q"])
                .status()
                .is_ok_and(|status| status.success());
            if ready {
                return postgres;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not start within 30 s (see {})",
                base.join(format!("sylkrtc-gateway-pg-{}.log", std::process::id()))
                    .display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The directory of the newest PostgreSQL's programs (Debian keeps them out of the PATH).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => require("initdb", PACKAGE)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    }
}

/// Removes the clusters of earlier runs whose process is gone.
fn remove_stale(base: &Path) {
    for entry in std::fs::read_dir(base).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix("sylkrtc-gateway-pg-"))
            .map(|rest| rest.trim_end_matches(".log"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let path = entry.path();
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
}
