//! A real PostgreSQL for tests: the one `TOCSIN_TEST_POSTGRES` names (a URL whose user may
//! create databases), or a throwaway server this test binary starts on first use and that
//! is stopped and removed when the binary exits, however it exits. Each test gets a fresh
//! database on it ([`fresh_database`]). A test that restarts its server starts its own
//! ([`Server::start`]), stopped and removed when dropped.
//!
//! Also included by the store's unit tests (`src/store/tests/mod.rs`), so the library's
//! and the daemon's tests share one way of doing it.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// A PostgreSQL server of this test process, in a temporary directory.
pub struct Server {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    /// Stops the server and removes `dir` when its standard input closes: on drop, or
    /// when this process exits without dropping it (a static, a panic, a kill).
    guard: Option<Child>,
}

impl Server {
    /// Initializes a cluster (superuser `postgres`, trust authentication) and starts it on
    /// a free port of 127.0.0.1, its socket in its own directory.
    pub fn start() -> Server {
        let bin = binaries();
        let dir = PathBuf::from(
            String::from_utf8(
                as_postgres("mktemp")
                    .args(["-d", "/tmp/tocsin-pg.XXXXXX"])
                    .output()
                    .expect("mktemp runs")
                    .stdout,
            )
            .unwrap()
            .trim(),
        );
        // From here on the guard removes the directory, whatever happens.
        let guard = as_postgres("sh")
            .args([
                "-c",
                r#"cat >/dev/null; "$0" -D "$1/data" -m immediate -w stop >/dev/null 2>&1; rm -rf "$1""#,
            ])
            .arg(bin.join("pg_ctl"))
            .arg(&dir)
            .stdin(Stdio::piped())
            .process_group(0) // a Ctrl-C of the tests must not skip the cleanup
            .spawn()
            .expect("the cleanup guard starts");
        let mut server = Server {
            dir,
            port: 0,
            bin,
            guard: Some(guard),
        };
        run(as_postgres(server.bin.join("initdb")).args([
            "-D",
            &server.data(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]));
        for _ in 0..5 {
            server.port = free_port();
            if server.pg_ctl_start() {
                return server;
            }
        }
        panic!(
            "PostgreSQL did not start; its log:\n{}",
            std::fs::read_to_string(server.dir.join("log")).unwrap_or_default()
        );
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }

    /// Stops the server (fast shutdown: sessions are ended).
    pub fn stop(&self) {
        run(as_postgres(self.bin.join("pg_ctl")).args([
            "-D",
            &self.data(),
            "-m",
            "fast",
            "-w",
            "stop",
        ]));
    }

    /// Starts it again on the same port, after [`Server::stop`].
    pub fn start_again(&self) {
        assert!(self.pg_ctl_start(), "PostgreSQL did not start again");
    }

    fn pg_ctl_start(&self) -> bool {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log");
        as_postgres(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-l"])
            .arg(&log)
            .args(["-o", &options, "-w", "-t", "30", "start"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The cluster's directory (the guard's script names it too).
    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            drop(guard.stdin.take());
            let _ = guard.wait();
        }
    }
}

/// The `postgres` database of the server shared by this test binary's tests.
fn shared_admin_url() -> &'static str {
    static SHARED: OnceLock<(Option<Server>, String)> = OnceLock::new();
    &SHARED
        .get_or_init(|| match std::env::var("TOCSIN_TEST_POSTGRES") {
            Ok(url) if !url.is_empty() => (None, url),
            _ => {
                let server = Server::start();
                let url = server.url("postgres");
                (Some(server), url)
            }
        })
        .1
}

/// A new, empty database on the shared server (or on `server`); its URL.
pub async fn fresh_database(server: Option<&Server>) -> String {
    let admin = match server {
        Some(s) => s.url("postgres"),
        None => tokio::task::spawn_blocking(|| shared_admin_url().to_string())
            .await
            .unwrap(),
    };
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL: {e}"));
    let connection = tokio::spawn(connection);
    let name = format!("t_{:016x}", fastrand::u64(..));
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    drop(client);
    let _ = connection.await;
    let mut url = url::Url::parse(&admin).expect("TOCSIN_TEST_POSTGRES is a URL");
    url.set_path(&name);
    url.to_string()
}

/// Runs `program` as the `postgres` user when this process is root (initdb and pg_ctl
/// refuse root), else as this user; from `/tmp`, which that user can enter.
fn as_postgres(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let mut command = if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    };
    command.current_dir(std::env::temp_dir());
    command
}

fn run(command: &mut Command) {
    let out = command.output().expect("the PostgreSQL tool runs");
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The directory of `initdb` and `pg_ctl`: on `PATH`, else Debian's versioned directory
/// (the newest), which is off `PATH`.
fn binaries() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file());
    let debian = || {
        let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").is_file().then_some((version, bin))
            })
            .collect();
        dirs.sort();
        dirs.pop().map(|(_, bin)| bin)
    };
    on_path.or_else(debian).expect(
        "no initdb found: install PostgreSQL (Debian: apt-get install postgresql; .ci/test \
         does) or set TOCSIN_TEST_POSTGRES to a server's URL",
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
