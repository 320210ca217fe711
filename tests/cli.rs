//! The command line as a new user meets it: help on every flag, a taken address explained,
//! `tocsin probe` options with the usual escapes and an answer that is not the expected one.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output};

fn tocsin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn every_flag_has_a_help_line() {
    for command in ["run", "check-config", "replay", "probe", "demo"] {
        let out = tocsin(&[command, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{command} --help");
        let help = String::from_utf8_lossy(&out.stdout);
        let flags: Vec<&str> = help
            .lines()
            .filter(|l| l.trim_start().starts_with('-'))
            .collect();
        assert!(flags.len() >= 3, "{command}: {help}");
        for line in flags {
            // `  --config <CONFIG>   The configuration file …`: the flag, then its text.
            let words: Vec<&str> = line.split_whitespace().collect();
            let text_starts = words
                .iter()
                .position(|w| !w.starts_with(['-', '<', '[']))
                .filter(|&i| i > 0);
            assert!(
                text_starts.is_some(),
                "{command}: `{}` has no help text",
                line.trim()
            );
        }
    }
}

#[test]
fn a_taken_address_says_how_to_choose_another() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let demo = tocsin(&["demo", "--listen", &address]);
    assert_eq!(demo.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&demo.stderr);
    assert!(stderr.contains("already in use"), "{stderr}");
    assert!(stderr.contains("--listen"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tocsin.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{address}\"\n[storage]\nsqlite = \"{}\"\n",
            dir.path().join("t.db").display()
        ),
    )
    .unwrap();
    let run = tocsin(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("server.listen"), "{stderr}");
    assert!(stderr.contains("TOCSIN__SERVER__LISTEN"), "{stderr}");
}

/// `send=PING\r\n` sends a CRLF line, and a peer that answers something else, then stays
/// silent, fails the expectation with what it said: an assertion, not a timeout.
#[test]
fn probe_options_take_escapes_and_a_wrong_answer_is_shown() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let peer = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        (&stream)
            .write_all(b"ERR 400 unknown \x1b[31mcommand\r\n")
            .unwrap();
        // Keep the connection open until the probe gives up and closes it.
        let mut rest = String::new();
        let _ = reader.read_line(&mut rest);
        line
    });
    let out = tocsin(&[
        "probe",
        "--type",
        "tcp",
        "--target",
        &address,
        "--option",
        r"send=PING\r\n",
        "--option",
        "expect_regex=^PONG",
        "--timeout",
        "500ms",
    ]);
    assert_eq!(peer.join().unwrap(), "PING\r\n");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("reason=assertion"), "{stdout}");
    assert!(stdout.contains("ERR 400 unknown"), "{stdout}");
    assert!(
        !stdout.contains('\x1b'),
        "control characters escaped: {stdout}"
    );
}
