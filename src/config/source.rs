//! Where the values of the configuration come from: the file, read as UTF-8 and parsed as
//! TOML with the position of every key, and the `TOCSIN__…` variables, merged by the
//! `config` crate into one [`Node`] tree in which every value knows its origin.
//!
//! The file reaches `config` as a source of our own rather than its `File`: `File` reads
//! bytes that are not UTF-8 as U+FFFD and keeps no position. Ours records each value's byte
//! offset as the value's `origin` (what `config` keeps it for: where a value comes from), so
//! `config`'s merge, not ours, decides what the environment overrides.

use std::collections::HashMap;
use std::path::Path;

use ::config::{Environment, Map, Source, Value, ValueKind};
use toml::de::{DeTable, DeValue};

use super::{ConfigError, ConfigSource};

/// A value of the merged configuration and where it was written.
#[derive(Debug)]
pub(super) struct Node {
    pub(super) origin: Origin,
    pub(super) kind: Kind,
}

#[derive(Debug)]
pub(super) enum Origin {
    /// The byte offset of its key in the file (of the value itself, for an array element).
    File(usize),
    /// The variable that set it.
    Env(String),
    /// A table only implied by a variable (`TOCSIN__A__B` makes `a` a table), or the root.
    Implied,
}

#[derive(Debug)]
pub(super) enum Kind {
    /// From the environment every value is a string, read as whatever the key takes.
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Entries in file order, then those from the environment.
    Table(Vec<(String, Node)>),
    Array(Vec<Node>),
}

impl Node {
    pub(super) fn is_env(&self) -> bool {
        matches!(self.origin, Origin::Env(_))
    }
}

/// The merged tree, and what it takes to say where a key path is written.
pub(super) struct Tree {
    pub(super) root: Node,
    lines: Lines,
}

/// The file's name in messages (the path given, or `<embedded>`) and where its lines start.
struct Lines {
    name: String,
    starts: Vec<usize>,
}

impl Lines {
    fn new(name: String, text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { name, starts }
    }

    /// `tocsin.toml:42`.
    fn at(&self, offset: usize) -> String {
        let line = self.starts.partition_point(|&start| start <= offset);
        format!("{}:{line}", self.name)
    }
}

/// Where an issue is, in the order issues are listed: down the file, then the environment,
/// then what is nowhere in particular.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Place {
    File(usize),
    Env(String),
    Nowhere,
}

/// Reads the file and the environment into one tree.
pub(super) fn read(source: &ConfigSource) -> Result<Tree, ConfigError> {
    let name = source.to_string();
    let owned;
    let text = match source {
        ConfigSource::File(path) => {
            owned = read_text(path, &name)?;
            owned.as_str()
        }
        ConfigSource::Inline(text) => text.as_str(),
    };
    let lines = Lines::new(name, text);
    let (file, tables) = parse(&lines, text)?;
    // No `try_parsing`: a variable stays the string it is ("007" is not 7) until the key it
    // sets says what type it wants (`Kind::Str`).
    let merged = ::config::Config::builder()
        .add_source(file)
        .add_source(
            Environment::with_prefix("TOCSIN")
                .prefix_separator("__")
                .separator("__"),
        )
        .build()?;
    let origins = Origins {
        tables,
        env: env_variables(),
    };
    Ok(Tree {
        root: node(merged.cache, "", &origins),
        lines,
    })
}

/// The file's text, refused when it is not UTF-8 (the first bad byte, where it is).
fn read_text(path: &Path, name: &str) -> Result<String, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let offset = e.utf8_error().valid_up_to();
        let line_start = bytes[..offset]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        // Everything before `offset` is valid UTF-8.
        let column = std::str::from_utf8(&bytes[line_start..offset])
            .map_or(offset - line_start, |s| s.chars().count())
            + 1;
        ConfigError::NotUtf8 {
            name: name.to_string(),
            line: bytes[..offset].iter().filter(|&&b| b == b'\n').count() + 1,
            column,
            offset,
            byte: bytes[offset],
        }
    })
}

/// The file as `config` values whose origin is their byte offset, with the offsets of its
/// tables by path; or every syntax error the parser recovers from, one `name:line: …` line
/// each.
fn parse(lines: &Lines, text: &str) -> Result<(Parsed, Tables), ConfigError> {
    let (table, errors) = DeTable::parse_recoverable(text);
    let mut convert = Convert {
        errors: errors
            .iter()
            .map(|e| (e.span().map_or(0, |s| s.start), e.message().to_string()))
            .collect(),
        tables: HashMap::new(),
    };
    let file = convert.table(Some(""), table.into_inner());
    let mut syntax = convert.errors;
    if syntax.is_empty() {
        return Ok((Parsed(file), convert.tables));
    }
    syntax.sort();
    syntax.dedup();
    let errors: Vec<String> = syntax
        .iter()
        .map(|(offset, message)| format!("{}: invalid TOML: {message}", lines.at(*offset)))
        .collect();
    Err(ConfigError::Syntax(errors.join("\n")))
}

impl Tree {
    /// Where the value at `path` (`targets[3].probe.url`) is written: the line of its key,
    /// or the variable that set it. A key that is not written (missing, or left to its
    /// default) is placed at the nearest table that is.
    pub(super) fn locate(&self, path: &str) -> (Place, String) {
        let mut node = &self.root;
        let mut depth = 0;
        for segment in segments(path) {
            let child = match (&node.kind, segment) {
                (Kind::Table(entries), Segment::Key(key)) => {
                    entries.iter().find(|(k, _)| k == key).map(|(_, n)| n)
                }
                (Kind::Array(items), Segment::Index(i)) => items.get(i),
                _ => None,
            };
            match child {
                Some(child) => (node, depth) = (child, depth + 1),
                None => break,
            }
        }
        let origin = match node.origin {
            // Not the root: what a variable set under it.
            Origin::Implied if depth > 0 => first_variable(node),
            ref origin => Some(origin),
        };
        match origin {
            Some(Origin::File(offset)) => (Place::File(*offset), self.lines.at(*offset)),
            Some(Origin::Env(variable)) => (Place::Env(variable.clone()), variable.clone()),
            _ => (Place::Nowhere, self.lines.name.clone()),
        }
    }
}

/// The first variable that set something under an implied table.
fn first_variable(node: &Node) -> Option<&Origin> {
    match (&node.origin, &node.kind) {
        (Origin::Env(_), _) => Some(&node.origin),
        (_, Kind::Table(entries)) => entries.iter().find_map(|(_, n)| first_variable(n)),
        (_, Kind::Array(items)) => items.iter().find_map(first_variable),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// `targets[3].probe.url` → `targets`, `3`, `probe`, `url`.
fn segments(path: &str) -> impl Iterator<Item = Segment<'_>> {
    path.split('.').filter(|p| !p.is_empty()).flat_map(|part| {
        let (key, indices) = part.split_once('[').unwrap_or((part, ""));
        let indices = indices
            .split('[')
            .filter_map(|i| i.trim_end_matches(']').parse().ok())
            .map(Segment::Index);
        (!key.is_empty())
            .then_some(Segment::Key(key))
            .into_iter()
            .chain(indices)
    })
}

/// The file, for `config` to merge the environment into.
#[derive(Debug, Clone)]
struct Parsed(Map<String, Value>);

impl Source for Parsed {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, ::config::ConfigError> {
        Ok(self.0.clone())
    }
}

/// Where each table outside arrays is, by key path: `config`'s merge rebuilds those without
/// their origin.
type Tables = HashMap<String, usize>;

/// TOML values into `config` values, each with its offset as origin.
struct Convert {
    /// Syntax errors; a number out of range is one here (as for `config`'s own TOML source).
    errors: Vec<(usize, String)>,
    tables: Tables,
}

impl Convert {
    /// `path`: the table's key path, `None` inside an array (the array keeps its values).
    fn table(&mut self, path: Option<&str>, table: DeTable<'_>) -> Map<String, Value> {
        table
            .into_iter()
            .map(|(key, value)| {
                let at = key.span().start;
                let key = key.into_inner().into_owned();
                let child = path.map(|p| join(p, &key));
                let value = self.value(child.as_deref(), at, value.into_inner());
                (key, value)
            })
            .collect()
    }

    fn value(&mut self, path: Option<&str>, at: usize, value: DeValue<'_>) -> Value {
        let kind = match value {
            DeValue::String(s) => ValueKind::String(s.into_owned()),
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(i) => ValueKind::I64(i),
                Err(e) => {
                    self.errors
                        .push((at, format!("integer {}: {e}", i.as_str())));
                    ValueKind::I64(0)
                }
            },
            DeValue::Float(f) => match f.as_str().parse() {
                Ok(f) => ValueKind::Float(f),
                Err(e) => {
                    self.errors.push((at, format!("float {}: {e}", f.as_str())));
                    ValueKind::Float(0.0)
                }
            },
            DeValue::Boolean(b) => ValueKind::Boolean(b),
            DeValue::Datetime(d) => ValueKind::String(d.to_string()),
            DeValue::Array(items) => ValueKind::Array(
                items
                    .into_iter()
                    .map(|item| {
                        let at = item.span().start;
                        self.value(None, at, item.into_inner())
                    })
                    .collect(),
            ),
            DeValue::Table(table) => {
                if let Some(path) = path {
                    self.tables.insert(path.to_string(), at);
                }
                ValueKind::Table(self.table(path, table))
            }
        };
        Value::new(Some(&at.to_string()), kind)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// What `config`'s merged values do not say about where they come from.
struct Origins {
    tables: Tables,
    /// The `TOCSIN__…` variables by the key path they set.
    env: HashMap<String, String>,
}

/// The `TOCSIN__…` variables by the key path they set, found as `config`'s `Environment`
/// finds them: the prefix in any case, keys lowercased, `__` between them.
fn env_variables() -> HashMap<String, String> {
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter_map(|name| {
            let path = name
                .to_lowercase()
                .strip_prefix("tocsin__")?
                .replace("__", ".");
            Some((path, name))
        })
        .collect()
}

/// The merged `config` value as a [`Node`]; `path` names it in [`Origins`].
fn node(value: Value, path: &str, origins: &Origins) -> Node {
    let origin = match value.origin().map(str::parse) {
        Some(Ok(offset)) => Origin::File(offset),
        Some(Err(_)) => origins
            .env
            .get(path)
            .map_or(Origin::Implied, |name| Origin::Env(name.clone())),
        None => origins
            .tables
            .get(path)
            .map_or(Origin::Implied, |&offset| Origin::File(offset)),
    };
    let kind = match value.kind {
        ValueKind::String(s) => Kind::Str(s),
        ValueKind::I64(i) => Kind::Int(i),
        ValueKind::Float(f) => Kind::Float(f),
        ValueKind::Boolean(b) => Kind::Bool(b),
        ValueKind::Table(table) => {
            let mut entries: Vec<(String, Node)> = table
                .into_iter()
                .map(|(key, value)| {
                    let node = node(value, &join(path, &key), origins);
                    (key, node)
                })
                .collect();
            entries.sort_by(|(a, x), (b, y)| {
                let rank = |n: &Node| match n.origin {
                    Origin::File(offset) => (0, offset),
                    Origin::Env(_) => (1, 0),
                    Origin::Implied => (2, 0),
                };
                rank(x).cmp(&rank(y)).then_with(|| a.cmp(b))
            });
            Kind::Table(entries)
        }
        ValueKind::Array(items) => Kind::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| node(item, &format!("{path}[{i}]"), origins))
                .collect(),
        ),
        // Neither source makes these (TOML integers are i64, variables strings).
        other @ (ValueKind::Nil | ValueKind::I128(_) | ValueKind::U64(_) | ValueKind::U128(_)) => {
            Kind::Str(other.to_string())
        }
    };
    Node { origin, kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_keys_and_indices() {
        let got: Vec<String> = segments("targets[3].probe.valid_status[0]")
            .map(|s| format!("{s:?}"))
            .collect();
        assert_eq!(
            got,
            [
                "Key(\"targets\")",
                "Index(3)",
                "Key(\"probe\")",
                "Key(\"valid_status\")",
                "Index(0)"
            ]
        );
    }

    #[test]
    fn issues_are_placed_at_their_line() {
        let text = "[server]\nlisten = \"x\"\n\n[[targets]]\nid = \"a\"\nprobe = { type = \"tcp\",\n  address = \"h\" }\n";
        let tree = read(&ConfigSource::Inline(text.to_string())).unwrap();
        let line = |path: &str| tree.locate(path).1;
        assert_eq!(line("server.listen"), "<embedded>:2");
        assert_eq!(line("server.page_title"), "<embedded>:1", "at its table");
        assert_eq!(line("targets[0]"), "<embedded>:4");
        assert_eq!(line("targets[0].probe.address"), "<embedded>:7");
        assert_eq!(line("storage.sqlite"), "<embedded>", "nowhere in the file");
    }

    #[test]
    fn every_syntax_error_has_its_line() {
        let text = "[server\nlisten = \"x\"\n\n[[targets]]\nid = = \"a\"\n";
        match read(&ConfigSource::Inline(text.to_string())) {
            Err(ConfigError::Syntax(lines)) => {
                let lines: Vec<&str> = lines.lines().collect();
                assert!(lines.len() >= 2, "{lines:?}");
                assert!(
                    lines[0].starts_with("<embedded>:1: invalid TOML: "),
                    "{lines:?}"
                );
                assert!(
                    lines.iter().any(|l| l.starts_with("<embedded>:5: ")),
                    "{lines:?}"
                );
            }
            other => panic!("expected syntax errors, got {:?}", other.err()),
        }
    }
}
