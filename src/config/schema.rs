//! Deserializes the configuration tree into the `*Config` structs, finding every problem
//! in one run rather than the first.
//!
//! The structs stay the schema: their `#[serde(deny_unknown_fields)]` derives, nothing
//! written twice, so a new probe type or receiver type needs no change here. serde's
//! derived code stops at the first error; this deserializer works under it by handing it
//! every value through [`collect`], which records what fails under its key path and builds
//! the table again without it:
//!
//! * an unknown key is recorded and passed over before the struct sees it; the struct's
//!   own "unknown field" error lists the keys it takes, for "did you mean";
//! * a value that cannot be read (wrong type, unknown enum value) is recorded and its key
//!   dropped, so that the table takes its default; a required key, missing or dropped, gets
//!   a placeholder (zero, empty, the first variant) so that the table still builds and its
//!   neighbours are still checked;
//! * an array element or map entry that cannot be built even so is left out, the rest kept;
//! * a table that serde reads through its buffered `Content` (the internally tagged
//!   `probe`) reports errors without their key: each key is then tried alone (with the tag)
//!   to find whose they are.
//!
//! What was replaced or left out is kept in the [`Report`], so that the semantic
//! validation that then runs on what could be read neither reports what a placeholder
//! caused nor misnames what follows an element left out.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde::forward_to_deserialize_any;

use super::source::{Kind, Node};
use crate::validation::{Issue, did_you_mean, one_of};

/// Deserializes `root` as a `T`, recording every problem. `T` is `None` only when not even
/// placeholders can build it.
pub(super) fn deserialize<T: de::DeserializeOwned>(root: &Node) -> (Option<T>, Report) {
    let report = RefCell::new(Report::default());
    let value = collect(root, &Path::Root, &report);
    (value, report.into_inner())
}

/// Deserializes `root` as a `T`, and its top-level array `key` apart as a list of `E`,
/// each element's nodes dropped once it is read: the largest part of the tree (the
/// `[[targets]]` of a large file) is never held next to all that is built from it. The
/// same values and the same report as when `T` reads the array itself (its field left to
/// its default here), as long as that field is `#[serde(default)]`.
pub(super) fn deserialize_apart<T: de::DeserializeOwned, E: de::DeserializeOwned>(
    mut root: Node,
    key: &str,
) -> (Option<T>, Vec<E>, Report) {
    let items = match &mut root.kind {
        Kind::Table(entries) => entries
            .iter()
            .position(|(k, node)| k == key && matches!(node.kind, Kind::Array(_)))
            .map(|at| entries.remove(at).1),
        _ => None,
    };
    let report = RefCell::new(Report::default());
    let value = collect(&root, &Path::Root, &report);
    drop(root);
    let array = Path::Key(&Path::Root, key);
    let mut list = Vec::new();
    if let Some(Node {
        kind: Kind::Array(items),
        ..
    }) = items
    {
        list.reserve_exact(items.len());
        for (i, node) in items.into_iter().enumerate() {
            match collect(&node, &Path::Index(&array, i), &report) {
                Some(element) => list.push(element),
                None => report.borrow_mut().left_out(&array, i),
            }
        }
    }
    (value, list, report.into_inner())
}

/// What deserialization found and what it had to replace.
#[derive(Debug, Default)]
pub(super) struct Report {
    /// `(path, message)`, each once.
    issues: Vec<(String, String)>,
    seen: HashSet<(String, String)>,
    /// Values that could not be read, now a default or a placeholder (or left out)…
    replaced: HashSet<String>,
    /// … and the tables holding them.
    tainted: HashSet<String>,
    /// Array elements left out: the array's path, the elements' indices in the file.
    dropped: BTreeMap<String, BTreeSet<usize>>,
}

impl Report {
    pub(super) fn is_empty(&self) -> bool {
        self.issues.is_empty()
    }

    /// The problems found, unlocated.
    pub(super) fn issues(&self) -> impl Iterator<Item = Issue> + '_ {
        self.issues.iter().map(|(path, message)| Issue {
            path: path.clone(),
            message: message.clone(),
            location: None,
        })
    }

    /// A semantic issue found on what could be read, with its paths (in the key path and the
    /// message: "first at targets[2]") back in the file's numbering; `None` when it may only
    /// judge a replacement: it lies at or under a replaced value, or in the table holding one
    /// (`targets[1].timeout` against a default `interval`; not `targets[1].probe.url`).
    pub(super) fn semantic(&self, mut issue: Issue) -> Option<Issue> {
        if !self.dropped.is_empty() {
            issue.path = self.renumber(&issue.path);
            issue.message = self.renumber(&issue.message);
        }
        let path = issue.path.as_str();
        let under_replaced = path
            .char_indices()
            .filter(|&(_, c)| c == '.' || c == '[')
            .map(|(i, _)| &path[..i])
            .chain([path])
            .any(|prefix| self.replaced.contains(prefix));
        let judged =
            under_replaced || self.tainted.contains(path) || self.tainted.contains(holder(path));
        (!judged).then_some(issue)
    }

    fn record(&mut self, path: String, message: String) {
        if self.seen.insert((path.clone(), message.clone())) {
            self.issues.push((path, message));
        }
    }

    fn record_error(&mut self, path: String, kind: ErrorKind) {
        match kind {
            ErrorKind::Reported => {}
            ErrorKind::UnknownField { field, expected } => {
                self.record_unknown_key(path, &field, expected)
            }
            kind => self.record(path, kind.to_string()),
        }
    }

    fn record_unknown_key(&mut self, path: String, key: &str, expected: &'static [&'static str]) {
        let message = match did_you_mean(key, expected) {
            Some(close) => format!("unknown key, did you mean {close}?"),
            None if expected.is_empty() => "unknown key".to_string(),
            None => format!("unknown key, expected one of {}", one_of(expected)),
        };
        self.record(path, message);
    }

    /// The value at `path` could not be read: the table holding it is tainted (or the key
    /// itself at the top level, where the holder would be the whole file).
    fn unreadable(&mut self, path: &str) {
        self.replaced.insert(path.to_string());
        let holder = holder(path);
        self.tainted
            .insert(if holder.is_empty() { path } else { holder }.to_string());
    }

    /// Element `i` of the array at `array` could not be built: it is left out.
    fn left_out(&mut self, array: &Path<'_>, i: usize) {
        self.unreadable(&Path::Index(array, i).to_string());
        self.dropped.entry(array.to_string()).or_default().insert(i);
    }

    /// Key paths within `text` in the file's numbering: index `i` of an array with elements
    /// left out is the `i`-th element kept.
    fn renumber(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find('[') {
            let (before, after) = rest.split_at(open);
            out.push_str(before);
            let Some((index, tail)) = after[1..]
                .split_once(']')
                .and_then(|(i, tail)| Some((i.parse::<usize>().ok()?, tail)))
            else {
                out.push('[');
                rest = &after[1..];
                continue;
            };
            // The array's path: the path-like run that ends at the bracket, as renumbered.
            let start = out
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || "_.[]".contains(c)))
                .map_or(0, |i| i + 1);
            let index = match self.dropped.get(&out[start..]) {
                Some(dropped) => (0..).filter(|i| !dropped.contains(i)).nth(index),
                None => None,
            }
            .unwrap_or(index);
            out.push_str(&format!("[{index}]"));
            rest = tail;
        }
        out.push_str(rest);
        out
    }
}

/// The path of the table that holds the key `path` ends with: `targets[1]` for
/// `targets[1].timeout` and `targets[1].groups[0]`, `` for `targets[1]`.
fn holder(path: &str) -> &str {
    let mut end = path.len();
    while path[..end].ends_with(']') {
        end = path[..end].rfind('[').unwrap_or(0);
    }
    path[..end].rfind('.').map_or("", |dot| &path[..dot])
}

type Ctx = RefCell<Report>;

/// A key path under construction, rendered only when something is recorded.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Key(Path::Root, key) => f.write_str(key),
            Path::Key(parent, key) => write!(f, "{parent}.{key}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// Deserializes `node` as a `T`, recording every problem under `path`; see the module
/// documentation. `None` when it cannot be built, everything wrong with it recorded.
fn collect<'de, T: de::Deserialize<'de>>(node: &Node, path: &Path<'_>, ctx: &Ctx) -> Option<T> {
    let Kind::Table(entries) = &node.kind else {
        return match T::deserialize(NodeDe::new(node, path, ctx, None)) {
            Ok(value) => Some(value),
            Err(e) => {
                ctx.borrow_mut().record_error(path.to_string(), e.kind);
                None
            }
        };
    };
    let mut view = View::default();
    loop {
        let attempt = Attempt {
            view: &view,
            typed: RefCell::default(),
        };
        let e = match T::deserialize(NodeDe::new(node, path, ctx, Some(&attempt))) {
            Ok(value) => return Some(value),
            Err(e) => e,
        };
        let mut report = ctx.borrow_mut();
        match (e.kind, e.at) {
            // A key, or its value: recorded here, unless the `collect` of the value did.
            (kind, At::Key(key)) => {
                if view.fill.iter().any(|(f, _)| *f == key) {
                    return None; // a placeholder of a type with no zero (a timestamp)
                }
                let child = format!("{}", Path::Key(path, &key));
                report.record_error(child.clone(), kind);
                report.unreadable(&child);
                if !view.skip.insert(key) {
                    return None;
                }
            }
            // A buffered table's unknown key: the error names it.
            (ErrorKind::UnknownField { field, expected }, At::Outside)
                if view.shows(&field) && entries.iter().any(|(k, _)| *k == field) =>
            {
                let child = format!("{}", Path::Key(path, &field));
                report.record_unknown_key(child, &field, expected);
                view.skip.insert(field);
            }
            // A required key: recorded unless its value already was, then a placeholder.
            (ErrorKind::Missing(field), At::Outside | At::Table { fields: true })
                if view.fill.iter().all(|(f, _)| *f != field) =>
            {
                let child = format!("{}", Path::Key(path, field));
                if !view.skip.contains(field) {
                    report.record(child.clone(), "missing".to_string());
                }
                report.unreadable(&child);
                view.fill.push((field, Stand::default()));
            }
            // A buffered table's tag: nothing to build on without it.
            (ErrorKind::Missing(field), At::Table { fields: false }) => {
                if !view.skip.contains(field) {
                    let child = format!("{}", Path::Key(path, field));
                    report.record(child, "missing".to_string());
                }
                return None;
            }
            // A buffered table's value, its key unnamed: try each key alone.
            (kind, At::Outside) if view.fill.is_empty() => {
                drop(report);
                let typed = attempt.typed.into_inner();
                let found = isolate::<T>(node, path, ctx, &view, &typed);
                let mut report = ctx.borrow_mut();
                if found.is_empty() {
                    report.record_error(path.to_string(), kind);
                    return None;
                }
                for (key, kind) in found {
                    let child = format!("{}", Path::Key(path, &key));
                    report.record_error(child.clone(), kind);
                    report.unreadable(&child);
                    view.skip.insert(key);
                }
            }
            // The table as a whole, where a string belongs for instance.
            (kind, At::Table { .. }) => {
                report.record_error(path.to_string(), kind);
                return None;
            }
            // A buffered table's placeholder of the wrong kind: the one added last, since the
            // others did for the attempt before. Try the next kind.
            (_, At::Outside) => match view.fill.last_mut().and_then(|(_, s)| s.next()) {
                Some(next) => view.fill.last_mut().expect("a placeholder").1 = next,
                None => return None,
            },
        }
    }
}

/// The keys of a buffered table whose value fails on its own (with the keys serde read as
/// typed values, the tag), each with its error.
fn isolate<'de, T: de::Deserialize<'de>>(
    node: &Node,
    path: &Path<'_>,
    ctx: &Ctx,
    view: &View,
    typed: &[String],
) -> Vec<(String, ErrorKind)> {
    let Kind::Table(entries) = &node.kind else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for (key, _) in entries {
        if !view.shows(key) || typed.contains(key) {
            continue;
        }
        let alone = View {
            only: Some(typed.iter().cloned().chain([key.clone()]).collect()),
            skip: view.skip.clone(),
            fill: Vec::new(),
        };
        let attempt = Attempt {
            view: &alone,
            typed: RefCell::default(),
        };
        match T::deserialize(NodeDe::new(node, path, ctx, Some(&attempt))) {
            Ok(_) => {}
            Err(Error {
                kind: ErrorKind::Missing(_),
                ..
            }) => {}
            Err(Error {
                kind,
                at: At::Outside,
            }) => found.push((key.clone(), kind)),
            Err(Error {
                kind,
                at: At::Key(k),
            }) if k == *key => found.push((k, kind)),
            Err(_) => {}
        }
    }
    found
}

/// Which keys of a table one attempt at it shows.
#[derive(Debug, Default)]
struct View {
    /// Only these (trying keys alone).
    only: Option<BTreeSet<String>>,
    /// Not these: unknown, or their value failed.
    skip: BTreeSet<String>,
    /// Required keys given a placeholder, after the table's own, with the kind of value it
    /// stands in as when serde does not say (a buffered table's).
    fill: Vec<(&'static str, Stand)>,
}

impl View {
    fn shows(&self, key: &str) -> bool {
        !self.skip.contains(key) && self.only.as_ref().is_none_or(|o| o.contains(key))
    }
}

/// One attempt at a table: its view, and the keys serde read as typed values.
struct Attempt<'v> {
    view: &'v View,
    typed: RefCell<Vec<String>>,
}

// === The error ===

/// An error and where the deserializer saw it, so that [`collect`] knows what to drop.
#[derive(Debug)]
struct Error {
    kind: ErrorKind,
    at: At,
}

#[derive(Debug)]
enum ErrorKind {
    UnknownField {
        field: String,
        expected: &'static [&'static str],
    },
    UnknownVariant {
        value: String,
        expected: &'static [&'static str],
    },
    Missing(&'static str),
    /// Recorded by the [`collect`] of the value it is about.
    Reported,
    Other(String),
}

#[derive(Debug)]
enum At {
    /// Raised outside this deserializer: serde's buffered `Content`.
    Outside,
    /// Reading the key, or its value.
    Key(String),
    /// In the table's visitor, not in a key or value; `fields` when it is a struct's.
    Table { fields: bool },
}

impl Error {
    fn reported(key: &str) -> Self {
        Self {
            kind: ErrorKind::Reported,
            at: At::Key(key.to_string()),
        }
    }

    fn at_key(mut self, key: &str) -> Self {
        self.at = At::Key(key.to_string());
        self
    }

    fn in_table(mut self, fields: bool) -> Self {
        if let At::Outside = self.at {
            self.at = At::Table { fields };
        }
        self
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::UnknownField { field, .. } => write!(f, "unknown key `{field}`"),
            ErrorKind::UnknownVariant { value, expected } => {
                write!(f, "unknown value \"{}\"", value.escape_debug())?;
                if let Some(close) = did_you_mean(value, expected) {
                    write!(f, " (did you mean {close}?)")?;
                }
                write!(f, ", expected one of {}", one_of(expected))
            }
            ErrorKind::Missing(field) => write!(f, "missing key `{field}`"),
            ErrorKind::Reported => f.write_str("reported"),
            ErrorKind::Other(message) => f.write_str(message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            kind: ErrorKind::Other(msg.to_string()),
            at: At::Outside,
        }
    }

    fn invalid_type(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Self::custom(format!(
            "invalid type: {}, expected {}",
            toml_unexpected(unexpected),
            toml_expected(expected)
        ))
    }

    /// `invalid duration "5 parsecs"` where serde would say `invalid value: string "5
    /// parsecs", expected a duration`.
    fn invalid_value(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        let expected = toml_expected(expected);
        match (
            expected
                .strip_prefix("a ")
                .or_else(|| expected.strip_prefix("an ")),
            unexpected,
        ) {
            (Some(what), de::Unexpected::Str(s)) => {
                Self::custom(format!("invalid {what} \"{}\"", s.escape_debug()))
            }
            _ => Self::custom(format!(
                "invalid value: {}, expected {expected}",
                toml_unexpected(unexpected)
            )),
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self {
            kind: ErrorKind::UnknownVariant {
                value: variant.to_string(),
                expected,
            },
            at: At::Outside,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self {
            kind: ErrorKind::UnknownField {
                field: field.to_string(),
                expected,
            },
            at: At::Outside,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self {
            kind: ErrorKind::Missing(field),
            at: At::Outside,
        }
    }
}

/// What was found, in TOML's words: a table, an array.
fn toml_unexpected(unexpected: de::Unexpected<'_>) -> String {
    match unexpected {
        de::Unexpected::Map => "table".to_string(),
        de::Unexpected::Seq => "array".to_string(),
        other => other.to_string(),
    }
}

/// What was expected, in TOML's words rather than Rust's (`u32`, `struct ServerConfig`).
fn toml_expected(expected: &dyn de::Expected) -> String {
    let expected = expected.to_string();
    let words = match expected.as_str() {
        "u8" => "an integer from 0 to 255",
        "u16" => "an integer from 0 to 65535",
        "u32" => "an integer from 0 to 4294967295",
        "u64" | "usize" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "a sequence" => "an array",
        "a map" => "a table",
        s if s.starts_with("struct ") || s.starts_with("internally tagged enum ") => "a table",
        s if s.starts_with("enum ") => "a string",
        _ => return expected,
    };
    words.to_string()
}

// === The deserializer of a node ===

struct NodeDe<'a> {
    node: &'a Node,
    path: &'a Path<'a>,
    ctx: &'a Ctx,
    /// For a table read by [`collect`]; a table read inside a seed shows every key.
    attempt: Option<&'a Attempt<'a>>,
}

impl<'a> NodeDe<'a> {
    fn new(
        node: &'a Node,
        path: &'a Path<'a>,
        ctx: &'a Ctx,
        attempt: Option<&'a Attempt<'a>>,
    ) -> Self {
        Self {
            node,
            path,
            ctx,
            attempt,
        }
    }

    fn table(&self) -> Option<TableAccess<'a>> {
        let Kind::Table(entries) = &self.node.kind else {
            return None;
        };
        Some(TableAccess {
            entries: entries.iter(),
            fill: self.attempt.map_or(&[][..], |a| &a.view.fill[..]).iter(),
            attempt: self.attempt,
            current: None,
            path: self.path,
            ctx: self.ctx,
        })
    }

    /// A string from the environment, for a key that takes another type.
    fn env_str(&self) -> Option<&'a str> {
        match &self.node.kind {
            Kind::Str(s) if self.node.is_env() => Some(s),
            _ => None,
        }
    }
}

macro_rules! env_parsed {
    ($($method:ident => $visit:ident as $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.env_str().map(|s| (s, s.parse::<$ty>())) {
                Some((_, Ok(value))) => visitor.$visit(value),
                Some((s, Err(_))) => visitor.visit_str(s),
                None => self.deserialize_any(visitor),
            }
        }
    )*};
}

impl<'de> Deserializer<'de> for NodeDe<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.kind {
            // What does not say its type reads a variable as it looks.
            Kind::Str(s) if self.node.is_env() => {
                if let Ok(b) = s.to_lowercase().parse::<bool>() {
                    visitor.visit_bool(b)
                } else if let Ok(i) = s.parse::<i64>() {
                    visitor.visit_i64(i)
                } else if let Ok(f) = s.parse::<f64>() {
                    visitor.visit_f64(f)
                } else {
                    visitor.visit_str(s)
                }
            }
            Kind::Str(s) => visitor.visit_str(s),
            Kind::Int(i) => visitor.visit_i64(*i),
            Kind::Float(f) => visitor.visit_f64(*f),
            Kind::Bool(b) => visitor.visit_bool(*b),
            Kind::Table(_) => {
                let access = self.table().expect("a table");
                visitor.visit_map(access).map_err(|e| e.in_table(false))
            }
            Kind::Array(items) => visitor.visit_seq(ArrayAccess {
                items: items.iter().enumerate(),
                path: self.path,
                ctx: self.ctx,
            }),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.env_str().map(|s| s.to_lowercase().parse::<bool>()) {
            Some(Ok(b)) => visitor.visit_bool(b),
            _ => self.deserialize_any(visitor),
        }
    }

    env_parsed! {
        deserialize_i8 => visit_i64 as i64,
        deserialize_i16 => visit_i64 as i64,
        deserialize_i32 => visit_i64 as i64,
        deserialize_i64 => visit_i64 as i64,
        deserialize_u8 => visit_u64 as u64,
        deserialize_u16 => visit_u64 as u64,
        deserialize_u32 => visit_u64 as u64,
        deserialize_u64 => visit_u64 as u64,
        deserialize_f32 => visit_f64 as f64,
        deserialize_f64 => visit_f64 as f64,
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.env_str() {
            Some(s) => visitor.visit_str(s),
            None => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.table() {
            Some(access) => visitor.visit_map(access).map_err(|e| e.in_table(true)),
            None => self.deserialize_any(visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match &self.node.kind {
            Kind::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            _ => self.deserialize_any(visitor),
        }
    }

    forward_to_deserialize_any! {
        char bytes byte_buf unit unit_struct seq tuple tuple_struct map ignored_any
    }
}

/// A value a table access hands out.
#[derive(Clone, Copy)]
enum Value<'a> {
    Node(&'a Node),
    Placeholder(Stand),
}

struct TableAccess<'a> {
    entries: std::slice::Iter<'a, (String, Node)>,
    /// Placeholders, after the table's own keys.
    fill: std::slice::Iter<'a, (&'static str, Stand)>,
    attempt: Option<&'a Attempt<'a>>,
    /// The key just read and its value, or the placeholder's.
    current: Option<(&'a str, Value<'a>)>,
    path: &'a Path<'a>,
    ctx: &'a Ctx,
}

impl<'a> TableAccess<'a> {
    fn advance(&mut self) -> Option<&'a str> {
        let view = self.attempt.map(|a| a.view);
        let next = match self
            .entries
            .by_ref()
            .find(|(key, _)| view.is_none_or(|v| v.shows(key)))
        {
            Some((key, node)) => (key.as_str(), Value::Node(node)),
            None => {
                let (key, stand) = self.fill.next()?;
                (*key, Value::Placeholder(*stand))
            }
        };
        self.current = Some(next);
        Some(next.0)
    }

    fn take_current(&mut self) -> (&'a str, Value<'a>) {
        self.current.take().expect("a value is read after its key")
    }
}

impl<'de> MapAccess<'de> for TableAccess<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(key) = self.advance() else {
            return Ok(None);
        };
        seed.deserialize(key.into_deserializer())
            .map(Some)
            .map_err(|e: Error| e.at_key(key))
    }

    /// An unknown key changes no value: recorded, and the struct never sees it.
    fn next_key<K: de::Deserialize<'de>>(&mut self) -> Result<Option<K>, Error> {
        while let Some(key) = self.advance() {
            match K::deserialize(key.into_deserializer()) {
                Ok(k) => return Ok(Some(k)),
                Err(Error {
                    kind: ErrorKind::UnknownField { expected, .. },
                    ..
                }) => {
                    let path = format!("{}", Path::Key(self.path, key));
                    self.ctx
                        .borrow_mut()
                        .record_unknown_key(path, key, expected);
                }
                Err(e) => return Err(e.at_key(key)),
            }
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (key, value) = self.take_current();
        let path = Path::Key(self.path, key);
        match value {
            Value::Node(node) => seed.deserialize(NodeDe::new(node, &path, self.ctx, None)),
            Value::Placeholder(stand) => seed.deserialize(Placeholder(stand)),
        }
        .map_err(|e| e.at_key(key))
    }

    fn next_value<V: de::Deserialize<'de>>(&mut self) -> Result<V, Error> {
        let (key, value) = self.take_current();
        if let Some(attempt) = self.attempt {
            attempt.typed.borrow_mut().push(key.to_string());
        }
        let path = Path::Key(self.path, key);
        match value {
            Value::Node(node) => collect(node, &path, self.ctx),
            Value::Placeholder(stand) => V::deserialize(Placeholder(stand)).ok(),
        }
        .ok_or_else(|| Error::reported(key))
    }

    /// A map's entry that cannot be read is left out; the others are kept.
    fn next_entry<K: de::Deserialize<'de>, V: de::Deserialize<'de>>(
        &mut self,
    ) -> Result<Option<(K, V)>, Error> {
        while let Some(key) = self.next_key::<K>()? {
            match self.next_value::<V>() {
                Ok(value) => return Ok(Some((key, value))),
                Err(Error {
                    kind: ErrorKind::Reported,
                    at: At::Key(k),
                }) => {
                    let path = format!("{}", Path::Key(self.path, &k));
                    self.ctx.borrow_mut().unreadable(&path);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

struct ArrayAccess<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    path: &'a Path<'a>,
    ctx: &'a Ctx,
}

impl<'de> SeqAccess<'de> for ArrayAccess<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some((i, node)) = self.items.next() else {
            return Ok(None);
        };
        let path = Path::Index(self.path, i);
        seed.deserialize(NodeDe::new(node, &path, self.ctx, None))
            .map(Some)
    }

    /// An element that cannot be read is left out; the others are kept.
    fn next_element<T: de::Deserialize<'de>>(&mut self) -> Result<Option<T>, Error> {
        for (i, node) in self.items.by_ref() {
            let path = Path::Index(self.path, i);
            if let Some(value) = collect(node, &path, self.ctx) {
                return Ok(Some(value));
            }
            self.ctx.borrow_mut().left_out(self.path, i);
        }
        Ok(None)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

// === Placeholders ===

/// The value of a required key that is missing or could not be read: zero, empty, `false`,
/// the first variant; of the [`Stand`] kind where serde does not say (a buffered table's).
struct Placeholder(Stand);

/// What a placeholder stands in as when serde does not say which type it wants: each kind in
/// turn, until one fits.
#[derive(Debug, Clone, Copy, Default)]
enum Stand {
    #[default]
    Str,
    Number,
    Bool,
    Array,
    Table,
}

impl Stand {
    fn next(self) -> Option<Stand> {
        Some(match self {
            Stand::Str => Stand::Number,
            Stand::Number => Stand::Bool,
            Stand::Bool => Stand::Array,
            Stand::Array => Stand::Table,
            Stand::Table => return None,
        })
    }
}

impl<'de> Deserializer<'de> for Placeholder {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Stand::Str => visitor.visit_str(""),
            Stand::Number => visitor.visit_u64(0),
            Stand::Bool => visitor.visit_bool(false),
            Stand::Array => visitor.visit_seq(Empty),
            Stand::Table => visitor.visit_map(Empty),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_bool(false)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u64(0)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_f64(0.0)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_none()
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(Empty)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_map(Empty)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(Empty)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match variants.first() {
            Some(first) => visitor.visit_enum(first.into_deserializer()),
            None => self.deserialize_any(visitor),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }

    forward_to_deserialize_any! {
        char str string bytes byte_buf unit_struct tuple tuple_struct identifier ignored_any
    }
}

/// An empty table or array.
struct Empty;

impl<'de> MapAccess<'de> for Empty {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, _: K) -> Result<Option<K::Value>, Error> {
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom("no value in an empty table"))
    }
}

impl<'de> SeqAccess<'de> for Empty {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        _: T,
    ) -> Result<Option<T::Value>, Error> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::config::ConfigSource;
    use crate::config::source;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        items: Vec<Item>,
        #[serde(default)]
        shapes: Vec<Shape>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Item {
        id: String,
        count: u32,
        #[serde(default)]
        color: Color,
        #[serde(default)]
        shape: Option<Shape>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Color {
        #[default]
        Red,
        Green,
    }

    #[derive(Debug, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Shape {
        Circle(Circle),
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Circle {
        radius: u32,
        label: String,
        #[serde(default)]
        filled: bool,
    }

    fn run(toml: &str) -> (Option<File>, Report) {
        let tree = source::read(&ConfigSource::Inline(toml.to_string())).expect("TOML");
        deserialize(&tree.root)
    }

    fn issues(report: &Report) -> Vec<String> {
        report.issues().map(|i| i.to_string()).collect()
    }

    #[test]
    fn a_wrong_type_hides_no_unknown_key_nor_missing_key() {
        let (file, report) = run("[[items]]\nid = 1\ncolr = \"red\"\ncolor = \"blue\"\n");
        let mut got = issues(&report);
        got.sort();
        assert_eq!(
            got,
            [
                "items[0].color: unknown value \"blue\", expected one of green, red",
                "items[0].colr: unknown key, did you mean color?",
                "items[0].count: missing",
                "items[0].id: invalid type: integer `1`, expected a string",
            ]
        );
        // Placeholders and defaults stood in: the element is kept for the checks that follow.
        let file = file.expect("built");
        let item = &file.items[0];
        assert_eq!((item.id.as_str(), item.count), ("", 0));
        assert!(matches!(item.color, Color::Red) && item.shape.is_none());
    }

    #[test]
    fn a_buffered_table_finds_the_key_of_each_error() {
        let toml = "[[items]]\nid = \"a\"\ncount = 1\n\
                    shape = { type = \"circle\", radius = \"big\", filled = 1, labl = \"x\" }\n";
        let (_, report) = run(toml);
        let mut got = issues(&report);
        got.sort();
        assert_eq!(
            got,
            [
                "items[0].shape.filled: invalid type: integer `1`, expected a boolean",
                "items[0].shape.label: missing",
                "items[0].shape.labl: unknown key, did you mean label?",
                "items[0].shape.radius: invalid type: string \"big\", expected an integer from 0 to 4294967295",
            ]
        );
        let (_, report) = run("[[items]]\nid = \"a\"\ncount = 1\nshape = { type = \"square\" }\n");
        assert_eq!(
            issues(&report),
            ["items[0].shape.type: unknown value \"square\", expected one of circle"]
        );
    }

    #[test]
    fn an_element_that_cannot_be_built_is_left_out_and_numbers_stay_the_files() {
        let toml = "[[shapes]]\nradius = 1\n\
                    [[shapes]]\ntype = \"circle\"\nradius = 2\nlabel = \"b\"\n";
        let (file, report) = run(toml);
        assert_eq!(issues(&report), ["shapes[0].type: missing"]);
        let file = file.expect("built");
        assert_eq!(file.shapes.len(), 1);
        let Shape::Circle(kept) = &file.shapes[0];
        assert_eq!(
            (kept.radius, kept.label.as_str(), kept.filled),
            (2, "b", false)
        );
        // What the semantic checks say about the element kept second is said of the file's.
        let issue = |path: &str, message: &str| Issue {
            path: path.to_string(),
            message: message.to_string(),
            location: None,
        };
        let renamed = report
            .semantic(issue("shapes[0].label", "duplicate of shapes[0]"))
            .expect("kept");
        assert_eq!(
            renamed.to_string(),
            "shapes[1].label: duplicate of shapes[1]"
        );
    }

    #[test]
    fn semantic_issues_about_a_stand_in_are_not_reported() {
        let toml = "[[items]]\nid = \"a\"\ncount = \"x\"\nshape = { type = \"circle\", radius = 1, label = \"l\" }\n";
        let (_, report) = run(toml);
        let issue = |path: &str| Issue {
            path: path.to_string(),
            message: "m".to_string(),
            location: None,
        };
        assert!(
            report.semantic(issue("items[0].count")).is_none(),
            "the value"
        );
        assert!(report.semantic(issue("items[0].id")).is_none(), "its table");
        assert!(report.semantic(issue("items[0]")).is_none(), "its table");
        assert!(
            report.semantic(issue("items[0].shape.radius")).is_some(),
            "another table"
        );
        assert!(report.semantic(issue("items[1].id")).is_some());
    }

    #[test]
    fn holders_and_renumbering() {
        assert_eq!(holder("targets[1].timeout"), "targets[1]");
        assert_eq!(holder("targets[1].groups[0]"), "targets[1]");
        assert_eq!(holder("targets[1]"), "");
        assert_eq!(holder("server"), "");
        let mut report = Report::default();
        report
            .dropped
            .insert("targets".into(), BTreeSet::from([0, 2]));
        report
            .dropped
            .insert("targets[3].groups".into(), BTreeSet::from([0]));
        assert_eq!(
            report.renumber("targets[1].groups[0]: `g` (first at targets[0]); [::1]:53"),
            "targets[3].groups[1]: `g` (first at targets[1]); [::1]:53"
        );
    }
}
