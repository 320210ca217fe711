//! The real binary under a stand-in for systemd: a notify socket bound by the test (systemd
//! is not PID 1 everywhere the tests run). Checks READY, the WATCHDOG cadence, RELOADING +
//! MONOTONIC_USEC then READY on SIGHUP (good and bad files), STOPPING and exit 0 on SIGTERM,
//! and journal-friendly logs when stderr is the `JOURNAL_STREAM`.

mod common;

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{PATIENCE, path_str, temp_dir};

/// What systemd would set: a watchdog timeout of 400 ms, so pings every 200 ms.
const WATCHDOG_USEC: u64 = 400_000;

/// The notify socket: every datagram the daemon sends, in order.
struct NotifySocket {
    datagrams: mpsc::Receiver<String>,
}

impl NotifySocket {
    fn bind(path: &Path) -> NotifySocket {
        let socket = UnixDatagram::bind(path).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                if tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
                {
                    return;
                }
            }
        });
        NotifySocket { datagrams: rx }
    }

    /// The next datagram with the line `line`, skipping others; panics after [`PATIENCE`].
    fn expect(&self, line: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.datagrams.recv_timeout(left) {
                Ok(d) if has_line(&d, line) => return d,
                Ok(_) => {}
                Err(_) => panic!("no {line} within {PATIENCE:?}"),
            }
        }
    }

    /// How many datagrams with the line `line` arrive within `window`.
    fn count(&self, line: &str, window: Duration) -> usize {
        let end = Instant::now() + window;
        let mut n = 0;
        while let Ok(d) = self
            .datagrams
            .recv_timeout(end.saturating_duration_since(Instant::now()))
        {
            n += usize::from(has_line(&d, line));
        }
        n
    }
}

fn has_line(datagram: &str, line: &str) -> bool {
    datagram.lines().any(|l| l == line)
}

fn field<'a>(datagram: &'a str, key: &str) -> Option<&'a str> {
    datagram
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// The daemon's child process, killed if the test fails first.
struct Daemon(Child);

impl Daemon {
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait(mut self) -> Option<i32> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the daemon did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `tocsin run` with the notify socket and watchdog systemd would pass.
fn command(config: &Path, socket: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tocsin"));
    cmd.args(["run", "--config"])
        .arg(config)
        .env("NOTIFY_SOCKET", socket)
        .env("WATCHDOG_USEC", WATCHDOG_USEC.to_string())
        .env_remove("WATCHDOG_PID")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

/// A valid configuration probing `targets` closed loopback ports (failures are fine here:
/// what matters is that probes are scheduled).
fn config(dir: &Path, targets: usize) -> String {
    let mut out = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\nsqlite = \"{}\"\n\
         [defaults]\ninterval = \"200ms\"\ntimeout = \"100ms\"\n\
         [[services]]\nid = \"voice\"\nsubscribers = 10\n",
        path_str(&dir.join("tocsin.db"))
    );
    for i in 0..targets {
        out.push_str(&format!(
            "[[targets]]\nid = \"t{i}\"\nservice = \"voice\"\n\
             probe = {{ type = \"tcp\", address = \"127.0.0.1:1\" }}\n"
        ));
    }
    out
}

fn monotonic_usec() -> i128 {
    let state = sd_notify::NotifyState::monotonic_usec_now().unwrap();
    field(&state.to_string(), "MONOTONIC_USEC")
        .unwrap()
        .parse()
        .unwrap()
}

/// A reload: `RELOADING=1` with a current CLOCK_MONOTONIC stamp in the same datagram,
/// then `READY=1`; returns the status sent with the `READY=1`.
fn expect_reload(notify: &NotifySocket, daemon: &Daemon) -> String {
    let before = monotonic_usec();
    daemon.signal("HUP");
    let reloading = notify.expect("RELOADING=1");
    let stamp: i128 = field(&reloading, "MONOTONIC_USEC")
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC with RELOADING=1: {reloading:?}"))
        .parse()
        .unwrap();
    assert!(
        (before..=monotonic_usec()).contains(&stamp),
        "MONOTONIC_USEC={stamp} is not the time of the reload"
    );
    let ready = notify.expect("READY=1");
    field(&ready, "STATUS")
        .unwrap_or_else(|| panic!("READY=1 without STATUS: {ready:?}"))
        .to_string()
}

#[test]
fn speaks_the_notify_protocol_from_start_to_stop() {
    let dir = temp_dir();
    let socket = dir.path().join("notify.sock");
    let notify = NotifySocket::bind(&socket);
    let path = dir.path().join("tocsin.toml");
    std::fs::write(&path, config(dir.path(), 1)).unwrap();
    let daemon = Daemon(
        command(&path, &socket)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let ready = notify.expect("READY=1");
    let status = field(&ready, "STATUS").expect("READY=1 comes with a STATUS");
    assert!(
        status.starts_with("monitoring 1 targets of 1 services"),
        "{status}"
    );

    // A ping every 200 ms: 10 in 2 s. Half of that still beats the 400 ms timeout; no more
    // than one per 100 ms shows they are paced, not spammed.
    let pings = notify.count("WATCHDOG=1", Duration::from_secs(2));
    assert!((5..=21).contains(&pings), "{pings} watchdog pings in 2 s");

    std::fs::write(&path, "[defaults]\nbogus = 1\n").unwrap();
    let status = expect_reload(&notify, &daemon);
    assert!(
        status.starts_with("reload failed, still running the previous configuration"),
        "{status}"
    );

    std::fs::write(&path, config(dir.path(), 2)).unwrap();
    let status = expect_reload(&notify, &daemon);
    assert!(
        status.starts_with("configuration reloaded; monitoring 2 targets"),
        "{status}"
    );

    // Reloading restarts the schedulers, not the engine: the pings go on.
    let pings = notify.count("WATCHDOG=1", Duration::from_secs(1));
    assert!(
        pings >= 2,
        "{pings} watchdog pings in 1 s after the reloads"
    );

    daemon.signal("TERM");
    notify.expect("STOPPING=1");
    assert_eq!(daemon.wait(), Some(0));
}

/// Runs the daemon with stderr on a pipe whose device and inode are `JOURNAL_STREAM`'s (or
/// `0:0`, a stream inherited from a parent), until READY=1; returns its log.
fn log_with_journal_stream(ours: bool) -> String {
    let dir = temp_dir();
    let socket = dir.path().join("notify.sock");
    let notify = NotifySocket::bind(&socket);
    let path = dir.path().join("tocsin.toml");
    std::fs::write(&path, config(dir.path(), 1)).unwrap();
    let (mut reader, writer) = std::io::pipe().unwrap();
    let meta = std::fs::File::from(writer.as_fd().try_clone_to_owned().unwrap())
        .metadata()
        .unwrap();
    let stream = if ours {
        format!("{}:{}", meta.dev(), meta.ino())
    } else {
        "0:0".to_string()
    };
    let daemon = Daemon(
        command(&path, &socket)
            .env("JOURNAL_STREAM", stream)
            .stderr(writer)
            .spawn()
            .unwrap(),
    );
    notify.expect("READY=1");
    daemon.signal("TERM");
    assert_eq!(daemon.wait(), Some(0));
    let mut log = String::new();
    reader.read_to_string(&mut log).unwrap();
    assert!(log.contains("tocsin running"), "{log}");
    log
}

#[test]
fn logs_priority_prefixed_lines_without_timestamps_to_the_journal() {
    let log = log_with_journal_stream(true);
    let journal_line = regex::Regex::new(r"^<[3-7]> *(ERROR|WARN|INFO|DEBUG|TRACE) ").unwrap();
    for line in log.lines() {
        assert!(journal_line.is_match(line), "not a journal line: {line:?}");
        assert!(!line.contains('\u{1b}'), "ANSI escape in {line:?}");
    }

    // An inherited JOURNAL_STREAM that is not our stderr: ordinary timestamped lines.
    let log = log_with_journal_stream(false);
    let first = log.lines().next().unwrap();
    assert!(
        regex::Regex::new(r"^\d{4}-\d\d-\d\dT")
            .unwrap()
            .is_match(first),
        "{first:?}"
    );
}
