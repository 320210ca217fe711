//! `command` receiver: runs a configured program, without a shell, with the event JSON on
//! its standard input, for whatever an operator has that no other receiver speaks.
//!
//! Exit status 0 is delivered. 75 (`EX_TEMPFAIL` of sysexits.h), a program that cannot
//! start, one killed by a signal and one still running at the receiver's `timeout` (it is
//! killed) are retried like a 5xx; any other status is final, like a 4xx. What it writes on
//! stdout and stderr is logged, at most [`OUTPUT_MAX_BYTES`] of each.

use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::{SendContext, SendError};
use crate::event::AlertEvent;
use crate::format;
use crate::validation::Issues;

/// Of each of stdout and stderr, what is kept for the log; the rest is read and dropped so
/// that a chatty program never blocks on a full pipe.
pub const OUTPUT_MAX_BYTES: usize = 4096;

/// The exit status that asks for a retry (`EX_TEMPFAIL`).
pub const EXIT_RETRY: i32 = 75;

#[derive(Debug, Clone, PartialEq)]
pub struct CommandSpec {
    /// The program (looked up in `PATH` when it has no `/`).
    pub program: String,
    pub args: Vec<String>,
}

impl CommandSpec {
    pub fn build(
        command: Option<&[String]>,
        path: &str,
        issues: &mut Issues,
    ) -> Option<CommandSpec> {
        let Some(command) = command else {
            issues.push(format!("{path}.command"), "required for command");
            return None;
        };
        match command.split_first() {
            Some((program, args)) if !program.trim().is_empty() => Some(CommandSpec {
                program: program.clone(),
                args: args.to_vec(),
            }),
            _ => {
                issues.push(
                    format!("{path}.command"),
                    "the first item, the program, must not be empty",
                );
                None
            }
        }
    }

    pub async fn send(&self, event: &AlertEvent, cx: &SendContext<'_>) -> Result<(), SendError> {
        let receiver = cx.receiver;
        let stdin = serde_json::to_vec(event).expect("events serialize");
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .env("TOCSIN_EVENT_TYPE", event_type(event))
            .env("TOCSIN_EVENT_ID", &event.id)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // The daemon's own configuration overrides may hold secrets.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TOCSIN__") {
                command.env_remove(key);
            }
        }
        if let Some(inc) = &event.incident {
            command.env("TOCSIN_INCIDENT_ID", &inc.id);
        }
        let mut child = command
            .spawn()
            .map_err(|e| SendError::Transient(format!("cannot start `{}`: {e}", self.program)))?;
        let mut input = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let run = async {
            // A program that exits without reading all of its input is its own business.
            let write = async {
                let _ = input.write_all(&stdin).await;
                drop(input);
            };
            let ((), out, err, status) =
                tokio::join!(write, bounded(stdout), bounded(stderr), child.wait());
            (out, err, status)
        };
        let (out, err, status) = match tokio::time::timeout(cx.timeout, run).await {
            Ok(done) => done,
            Err(_) => {
                let _ = child.kill().await;
                return Err(SendError::Transient(format!(
                    "`{}` still running after {}: killed",
                    self.program,
                    format::duration(cx.timeout)
                )));
            }
        };
        let status = status
            .map_err(|e| SendError::Transient(format!("waiting for `{}`: {e}", self.program)))?;
        let (out, err) = (String::from_utf8_lossy(&out), String::from_utf8_lossy(&err));
        let (out, err) = (out.trim_end(), err.trim_end());
        match status.code() {
            Some(0) => {
                tracing::info!(receiver, program = %self.program, event = %event.id, stdout = out, stderr = err, "command receiver ran");
                Ok(())
            }
            code => {
                tracing::warn!(receiver, program = %self.program, event = %event.id, %status, stdout = out, stderr = err, "command receiver failed");
                let why = format!("`{}` {status}", self.program);
                match code {
                    Some(EXIT_RETRY) | None => Err(SendError::Transient(why)),
                    Some(_) => Err(SendError::Permanent(why)),
                }
            }
        }
    }
}

fn event_type(event: &AlertEvent) -> String {
    serde_json::to_value(event.kind)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// Reads `pipe` to its end, keeping the first [`OUTPUT_MAX_BYTES`] (and a mark when more
/// came).
async fn bounded(mut pipe: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    let mut cut = false;
    while let Ok(n @ 1..) = pipe.read(&mut buf).await {
        let room = OUTPUT_MAX_BYTES - kept.len();
        kept.extend_from_slice(&buf[..n.min(room)]);
        cut |= n > room;
    }
    if cut {
        kept.extend_from_slice(" […]".as_bytes());
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::AlertType;

    fn sh(script: &str) -> CommandSpec {
        CommandSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
        }
    }

    async fn run(spec: &CommandSpec, timeout: std::time::Duration) -> Result<(), SendError> {
        let http = reqwest::Client::new();
        let cx = SendContext {
            http: &http,
            timeout,
            now: "2026-07-05T14:00:00Z".parse().unwrap(),
            external_url: None,
            receiver: "test",
            store: None,
        };
        let event = AlertEvent {
            kind: AlertType::VantageImpaired,
            id: "evt_test".into(),
            occurred_at: "2026-07-05T14:00:00Z".parse().unwrap(),
            incident: None,
            vantage: None,
        };
        spec.send(&event, &cx).await
    }

    const LONG: std::time::Duration = std::time::Duration::from_secs(10);

    #[tokio::test]
    async fn exit_statuses_decide_between_delivered_retried_and_refused() {
        // The event arrives whole on stdin.
        let reads =
            sh(r#"grep -q '"id":"evt_test"' && [ "$TOCSIN_EVENT_TYPE" = vantage.impaired ]"#);
        assert!(run(&reads, LONG).await.is_ok());
        assert!(matches!(
            run(&sh("exit 75"), LONG).await,
            Err(SendError::Transient(_))
        ));
        assert!(matches!(
            run(&sh("exit 3"), LONG).await,
            Err(SendError::Permanent(_))
        ));
        assert!(matches!(
            run(&sh("kill -9 $$"), LONG).await,
            Err(SendError::Transient(_))
        ));
        let missing = CommandSpec {
            program: "/nonexistent/tocsin-pager".into(),
            args: vec![],
        };
        assert!(matches!(
            run(&missing, LONG).await,
            Err(SendError::Transient(why)) if why.contains("cannot start")
        ));
    }

    #[tokio::test]
    async fn a_program_past_its_timeout_is_killed_and_retried() {
        let started = std::time::Instant::now();
        let slow = sh("exec sleep 30");
        let result = run(&slow, std::time::Duration::from_millis(300)).await;
        assert!(
            matches!(&result, Err(SendError::Transient(why)) if why.contains("killed")),
            "{result:?}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[tokio::test]
    async fn output_is_bounded_and_a_program_ignoring_stdin_is_fine() {
        // 1 MiB of output, without reading a byte of the event.
        let chatty = sh("head -c 1048576 /dev/zero | tr '\\0' x; head -c 1048576 /dev/zero >&2");
        assert!(run(&chatty, LONG).await.is_ok());
        let kept = bounded(&b"y".repeat(3 * OUTPUT_MAX_BYTES)[..]).await;
        assert_eq!(kept.len(), OUTPUT_MAX_BYTES + " […]".len());
        assert_eq!(bounded(&b"short"[..]).await, b"short");
    }

    #[test]
    fn an_empty_program_is_refused() {
        let mut issues = Issues::default();
        assert!(CommandSpec::build(Some(&[" ".to_string()]), "r", &mut issues).is_none());
        assert!(CommandSpec::build(Some(&[]), "r", &mut issues).is_none());
        assert!(CommandSpec::build(None, "r", &mut issues).is_none());
        assert_eq!(issues.len(), 3, "{issues}");
    }
}
