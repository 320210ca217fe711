//! The vocabulary of validation, shared by every component's config: an [`Issue`] is one
//! problem with its key path, [`Issues`] collects every problem of a file so that one run
//! reports them all; unknown names are answered with the close one or the list
//! ([`did_you_mean`], [`one_of`]); secrets are read from `*_file` keys the same way everywhere.

use std::fmt;
use std::path::Path;
use std::time::Duration;

/// One validation problem: `targets[3].probe.url: relative URL without a base`. The loader,
/// which alone knows where a key is written, sets `location`: `tocsin.toml:42`, or the
/// `TOCSIN__…` variable when the value comes from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub path: String,
    pub message: String,
    pub location: Option<String>,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(location) = &self.location {
            write!(f, "{location}: ")?;
        }
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found, in the order recorded (the loader sorts them into file order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Issues(Vec<Issue>);

impl Issues {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Issue {
            path: path.into(),
            message: message.into(),
            location: None,
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

impl IntoIterator for Issues {
    type Item = Issue;
    type IntoIter = std::vec::IntoIter<Issue>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl FromIterator<Issue> for Issues {
    fn from_iter<I: IntoIterator<Item = Issue>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
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

/// The one candidate close to `word` (a typo: `expect_staus`, `webhok`), if there is one.
/// Close is rustc's measure, an edit distance of at most a third of the word; a tie
/// (`sev9` is as close to `sev1` as to `sev2`) suggests nothing rather than a guess.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = word.chars().count().max(3) / 3;
    let mut best: Option<(usize, &'a str)> = None;
    let mut tie = false;
    for &candidate in candidates {
        let distance = strsim::osa_distance(&word.to_lowercase(), &candidate.to_lowercase());
        match best {
            _ if distance > limit => {}
            Some((d, _)) if distance > d => {}
            Some((d, _)) if distance == d => tie = true,
            _ => {
                best = Some((distance, candidate));
                tie = false;
            }
        }
    }
    best.filter(|_| !tie).map(|(_, candidate)| candidate)
}

/// `a, b, c`, sorted so that a long list is easy to scan.
pub fn one_of(candidates: &[&str]) -> String {
    let mut sorted = candidates.to_vec();
    sorted.sort_unstable();
    sorted.join(", ")
}

/// A password or key read from a `*_file`: never shows up in `Debug` output (logs,
/// `check-config`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: String) -> Secret {
        Secret(secret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_one_close_candidate() {
        let keys = ["expect_status", "expect_regex", "url"];
        assert_eq!(did_you_mean("expect_staus", &keys), Some("expect_status"));
        assert_eq!(did_you_mean("URL", &keys), Some("url"));
        assert_eq!(did_you_mean("zzz", &keys), None);
        let severities = ["sev4", "sev3", "sev2", "sev1"];
        assert_eq!(
            did_you_mean("sev9", &severities),
            None,
            "a tie is no suggestion"
        );
        assert_eq!(did_you_mean("sev", &severities), None);
        assert_eq!(one_of(&severities), "sev1, sev2, sev3, sev4");
    }
}
