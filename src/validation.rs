//! The vocabulary of validation, shared by every component's config: an [`Issue`] is one
//! problem with its key path, [`Issues`] collects every problem of a file so that one run
//! reports them all; secrets are read from `*_file` keys the same way everywhere.

use std::fmt;
use std::path::Path;
use std::time::Duration;

/// One validation problem: `targets[3].probe.url: relative URL without a base`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found, in the order recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Issues(Vec<Issue>);

impl Issues {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Issue {
            path: path.into(),
            message: message.into(),
        });
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Issue> {
        self.0.iter()
    }
}

impl fmt::Display for Issues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

/// Reads a `*_file` secret: trimmed, non-empty.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().is_empty() => Err("the file is empty".to_string()),
        Ok(s) => Ok(s.trim().to_string()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// `humantime` rendering for messages: `5s`, `1m 30s`.
pub fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A regex error in one line: the crate's message ends with the useful `error: …` line.
pub fn regex_error(error: &regex::Error) -> String {
    let text = error.to_string();
    let last = text.lines().map(str::trim).rfind(|l| !l.is_empty());
    let last = last.unwrap_or(&text);
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}
