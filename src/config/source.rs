//! Where the values of the configuration come from: the file, read as UTF-8 and parsed as
//! TOML with the position of every key, and the `TOCSIN__…` variables, merged by the
//! `config` crate into one [`Node`] tree in which every value knows its origin.
//!
//! The file reaches `config` as a source of our own rather than its `File`: `File` reads
//! bytes that are not UTF-8 as U+FFFD and keeps no position. Ours records each value's byte
//! offset as the value's `origin` (what `config` keeps it for: where a value comes from), so
//! `config`'s merge, not ours, decides what the environment overrides.
//!
//! A file of 100 000 targets is 10 MB: parsed whole, toml's tokens, events and tables took
//! ~40 bytes per byte of it, and `config` would copy the list into its `Value`s. So
//! a large file is parsed in pieces (a piece starts at an `[[array]]` header), and a
//! top-level array that no variable writes under goes around `config`'s merge, straight
//! into its [`Node`]s.

use std::borrow::Cow;
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
    Text::read(source)?.tree()
}

/// The file's text, kept to read the tree from it again.
pub(super) struct Text<'s> {
    name: String,
    text: Cow<'s, str>,
}

impl<'s> Text<'s> {
    pub(super) fn read(source: &'s ConfigSource) -> Result<Self, ConfigError> {
        let name = source.to_string();
        let text = match source {
            ConfigSource::File(path) => Cow::Owned(read_text(path, &name)?),
            ConfigSource::Inline(text) => Cow::Borrowed(text.as_str()),
        };
        Ok(Self { name, text })
    }

    /// The text and the environment as one tree: the same tree each time, as long as the
    /// environment stays the same.
    pub(super) fn tree(&self) -> Result<Tree, ConfigError> {
        tree(self.name.clone(), &self.text)
    }
}

fn tree(name: String, text: &str) -> Result<Tree, ConfigError> {
    let lines = Lines::new(name, text);
    let (file, tables) = parse(&lines, text)?;
    let env = env_variables();
    let (around, through): (Vec<_>, Vec<_>) = file.into_iter().partition(|(key, node)| {
        matches!(node.kind, Kind::Array(_)) && !env.keys().any(|path| sets_under(path, key))
    });
    let through = Parsed(through.into_iter().map(|(k, n)| (k, value(n))).collect());
    // No `try_parsing`: a variable stays the string it is ("007" is not 7) until the key it
    // sets says what type it wants (`Kind::Str`).
    let merged = ::config::Config::builder()
        .add_source(through)
        .add_source(
            Environment::with_prefix("TOCSIN")
                .prefix_separator("__")
                .separator("__"),
        )
        .build()?;
    let origins = Origins { tables, env };
    let mut root = node(merged.cache, "", &origins);
    if let Kind::Table(entries) = &mut root.kind {
        entries.extend(around);
        sort_entries(entries);
    }
    Ok(Tree { root, lines })
}

/// Whether the variable setting `path` writes at or under the top-level `key`.
fn sets_under(path: &str, key: &str) -> bool {
    path.strip_prefix(key)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
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

/// The file's top-level entries, each value's origin its byte offset, with the offsets of
/// its tables by path; or every syntax error the parser recovers from, one `name:line: …`
/// line each.
fn parse(lines: &Lines, text: &str) -> Result<(Vec<(String, Node)>, Tables), ConfigError> {
    let mut convert = in_pieces(text).unwrap_or_else(|| {
        let mut convert = Convert::default();
        let file = convert.document(text, 0);
        convert.file = file;
        convert
    });
    let mut syntax = convert.errors;
    if syntax.is_empty() {
        sort_entries(&mut convert.file);
        return Ok((convert.file, convert.tables));
    }
    syntax.sort();
    syntax.dedup();
    let errors: Vec<String> = syntax
        .iter()
        .map(|(offset, message)| format!("{}: invalid TOML: {message}", lines.at(*offset)))
        .collect();
    Err(ConfigError::Syntax(errors.join("\n")))
}

/// A piece is at least this long: short enough that parsing one holds a few MB, long enough
/// that pieces are few.
const PIECE: usize = 64 * 1024;

/// The file parsed piece by piece, each from an `[[array]]` header line at least [`PIECE`]
/// bytes after the start of the one before; `None` when that is not the same as parsing it
/// whole. A piece then has a syntax error (a cut inside a multi-line string or array leaves
/// the piece before it unterminated), or two pieces write the same top-level key other than
/// by `[[key]]` headers, which the whole file may refuse: the caller parses it whole, for
/// the same tree or the same errors.
fn in_pieces(text: &str) -> Option<Convert> {
    let mut cuts = vec![0];
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if offset >= cuts[cuts.len() - 1] + PIECE && array_header(line) {
            cuts.push(offset);
        }
        offset += line.len();
    }
    if cuts.len() == 1 {
        return None;
    }
    cuts.push(text.len());
    let mut convert = Convert::default();
    for piece in cuts.windows(2) {
        let entries = convert.document(&text[piece[0]..piece[1]], piece[0]);
        if !convert.errors.is_empty() {
            return None;
        }
        for (key, node) in entries {
            match convert.file.iter_mut().find(|(k, _)| *k == key) {
                None => convert.file.push((key, node)),
                Some((_, before)) => {
                    let headers = made_by_headers(text, before);
                    match (&mut before.kind, node.kind) {
                        (Kind::Array(items), Kind::Array(more)) if headers => items.extend(more),
                        _ => return None,
                    }
                }
            }
        }
    }
    Some(convert)
}

/// `[[targets]]`: the header of an array of tables, a bare key (comment allowed).
fn array_header(line: &str) -> bool {
    let line = line.split('#').next().unwrap_or_default().trim();
    line.strip_prefix("[[")
        .and_then(|rest| rest.strip_suffix("]]"))
        .map(str::trim)
        .is_some_and(|key| {
            !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

/// Whether the top-level array `node` was made by `[[key]]` headers rather than written
/// `key = [ … ]`: its key sits in brackets.
fn made_by_headers(text: &str, node: &Node) -> bool {
    match node.origin {
        Origin::File(at) => text[..at].trim_end().ends_with('['),
        _ => false,
    }
}

impl Tree {
    /// The merged values, without what it takes to place issues.
    pub(super) fn into_root(self) -> Node {
        self.root
    }

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

/// TOML values into [`Node`]s, each with its offset as origin.
#[derive(Default)]
struct Convert {
    /// The top-level entries converted so far.
    file: Vec<(String, Node)>,
    /// Syntax errors; a number out of range is one here (as for `config`'s own TOML source).
    errors: Vec<(usize, String)>,
    tables: Tables,
}

impl Convert {
    /// The top-level entries of `text`, which starts at byte `base` of the file.
    fn document(&mut self, text: &str, base: usize) -> Vec<(String, Node)> {
        let (table, errors) = DeTable::parse_recoverable(text);
        self.errors.extend(errors.iter().map(|e| {
            (
                base + e.span().map_or(0, |s| s.start),
                e.message().to_string(),
            )
        }));
        self.table(Some(""), base, table.into_inner())
    }

    /// `path`: the table's key path, `None` inside an array (the array keeps its values).
    fn table(
        &mut self,
        path: Option<&str>,
        base: usize,
        table: DeTable<'_>,
    ) -> Vec<(String, Node)> {
        let mut entries: Vec<(String, Node)> = table
            .into_iter()
            .map(|(key, value)| {
                let at = base + key.span().start;
                let key = key.into_inner().into_owned();
                let child = path.map(|p| join(p, &key));
                let value = self.value(child.as_deref(), base, at, value.into_inner());
                (key, value)
            })
            .collect();
        sort_entries(&mut entries);
        entries
    }

    fn value(&mut self, path: Option<&str>, base: usize, at: usize, value: DeValue<'_>) -> Node {
        let kind = match value {
            DeValue::String(s) => Kind::Str(s.into_owned()),
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(i) => Kind::Int(i),
                Err(e) => {
                    self.errors
                        .push((at, format!("integer {}: {e}", i.as_str())));
                    Kind::Int(0)
                }
            },
            DeValue::Float(f) => match f.as_str().parse() {
                Ok(f) => Kind::Float(f),
                Err(e) => {
                    self.errors.push((at, format!("float {}: {e}", f.as_str())));
                    Kind::Float(0.0)
                }
            },
            DeValue::Boolean(b) => Kind::Bool(b),
            DeValue::Datetime(d) => Kind::Str(d.to_string()),
            DeValue::Array(items) => Kind::Array(
                items
                    .into_iter()
                    .map(|item| {
                        let at = base + item.span().start;
                        self.value(None, base, at, item.into_inner())
                    })
                    .collect(),
            ),
            DeValue::Table(table) => {
                if let Some(path) = path {
                    self.tables.insert(path.to_string(), at);
                }
                Kind::Table(self.table(path, base, table))
            }
        };
        Node {
            origin: Origin::File(at),
            kind,
        }
    }
}

/// A node read from the file as a `config` value, its offset as origin.
fn value(node: Node) -> Value {
    let origin = match node.origin {
        Origin::File(at) => Some(at.to_string()),
        Origin::Env(_) | Origin::Implied => None,
    };
    let kind = match node.kind {
        Kind::Str(s) => ValueKind::String(s),
        Kind::Int(i) => ValueKind::I64(i),
        Kind::Float(f) => ValueKind::Float(f),
        Kind::Bool(b) => ValueKind::Boolean(b),
        Kind::Table(entries) => {
            ValueKind::Table(entries.into_iter().map(|(k, n)| (k, value(n))).collect())
        }
        Kind::Array(items) => ValueKind::Array(items.into_iter().map(value).collect()),
    };
    Value::new(origin.as_ref(), kind)
}

/// A table's entries in file order, then those from the environment, then implied ones.
fn sort_entries(entries: &mut [(String, Node)]) {
    entries.sort_by(|(a, x), (b, y)| {
        let rank = |n: &Node| match n.origin {
            Origin::File(offset) => (0, offset),
            Origin::Env(_) => (1, 0),
            Origin::Implied => (2, 0),
        };
        rank(x).cmp(&rank(y)).then_with(|| a.cmp(b))
    });
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
            sort_entries(&mut entries);
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

    /// A file parsed in pieces reads as the same tree as parsed whole, or is parsed whole.
    #[test]
    fn pieces_read_as_the_whole_file() {
        let whole = |text: &str| {
            let mut convert = Convert::default();
            let mut file = convert.document(text, 0);
            sort_entries(&mut file);
            (format!("{file:?}"), convert.tables, convert.errors)
        };
        let pieces = |text: &str| {
            in_pieces(text).map(|mut convert| {
                sort_entries(&mut convert.file);
                (
                    format!("{:?}", convert.file),
                    convert.tables,
                    convert.errors,
                )
            })
        };
        let mut text = String::from("[server]\nlisten = \"127.0.0.1:1\"\n");
        for i in 0..3000 {
            text.push_str(&format!(
                "[[targets]]\nid = \"t{i}\"\nservice = \"web\"\n\
                 [targets.probe]\ntype = \"http\"\nurl = \"http://h/{i}\"\n"
            ));
            if i == 1500 {
                text.push_str("[[services]]\nid = \"web\"\n[storage]\nsqlite = \"s\"\n");
            }
        }
        assert!(text.len() > 3 * PIECE);
        assert_eq!(pieces(&text), Some(whole(&text)));

        // A table written twice, in two pieces: refused by the file parsed whole.
        let twice = format!("{text}[storage]\nsqlite = \"t\"\n");
        assert_eq!(pieces(&twice), None);
        assert!(!whole(&twice).2.is_empty());
        // An array written `key = [ … ]`, then extended by headers a piece later.
        let inline = format!("targets = []\n{text}");
        assert_eq!(pieces(&inline), None);
        assert!(!whole(&inline).2.is_empty());
        // Header lines inside a multi-line string: a piece cut there is unterminated.
        let string = format!(
            "{text}note = \"\"\"\n{}\"\"\"\n",
            "[[targets]]\n".repeat(PIECE)
        );
        assert_eq!(pieces(&string), None);
        assert!(whole(&string).2.is_empty());
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
