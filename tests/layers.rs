//! Keeps the map of `src/lib.rs` true: its "# Layers" list orders the top-level modules from
//! the bottom up, and a module may only name (`crate::…`) modules of lower layers. Inside a
//! folder, files may use their parent (`mod.rs`) and the parent its files, but sibling files
//! must not depend on each other in a circle.
//!
//! Test code (`#[cfg(test)]` modules, `tests.rs` files) is left out: tests may assemble
//! anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers of the map, bottom first: the module names of each numbered item, taken
/// from the part before its first `: `.
fn layers(lib: &str) -> Vec<Vec<String>> {
    let mut in_section = false;
    let mut items: Vec<String> = Vec::new();
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let doc = doc.trim();
        if doc.starts_with('#') {
            in_section = doc == "# Layers";
            continue;
        }
        if !in_section {
            continue;
        }
        let numbered = doc
            .split_once(". ")
            .filter(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        match numbered {
            Some((_, rest)) => items.push(rest.to_string()),
            None if !doc.is_empty() => {
                if let Some(last) = items.last_mut() {
                    last.push(' ');
                    last.push_str(doc);
                }
            }
            None => {}
        }
    }
    items
        .iter()
        .map(|item| {
            let head = item.split(": ").next().unwrap_or_default();
            head.split('`')
                .skip(1)
                .step_by(2)
                .filter(|name| name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// `mod` and `pub mod` declarations of `lib.rs`.
fn declared_modules(lib: &str) -> BTreeSet<String> {
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("pub(crate) mod "))
                .or_else(|| l.strip_prefix("mod "))?;
            Some(rest.trim_end_matches(';').to_string())
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code without test modules and comments.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path `prefix…` names, expanded over `{a, b::c}` groups, as segment lists.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `notcrate::`
        }
        expand(rest, Vec::new(), &mut out);
    }
    out
}

/// Reads one path (or `{…}` group of paths) at the start of `text`, prefixed by `base`.
fn expand(text: &str, base: Vec<String>, out: &mut Vec<Vec<String>>) {
    let text = text.trim_start();
    if let Some(group) = text.strip_prefix('{') {
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    expand(&group[start..i], base.clone(), out);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&group[start..i], base.clone(), out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return;
    }
    let ident: String = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if ident.is_empty() {
        if !base.is_empty() {
            out.push(base);
        }
        return;
    }
    let mut path = base;
    path.push(ident.clone());
    match text[ident.len()..].strip_prefix("::") {
        Some(more) => expand(more, path, out),
        None => out.push(path),
    }
}

struct SourceFile {
    /// `engine` for `src/engine/mod.rs` and `src/engine.rs`.
    top: String,
    /// Folder-relative name: `pure` for `src/engine/pure.rs`, `mod` for `src/engine/mod.rs`.
    name: String,
    is_folder_root: bool,
    code: String,
}

impl SourceFile {
    fn display(&self) -> String {
        if self.name.is_empty() {
            format!("src/{}.rs", self.top)
        } else {
            format!("src/{}/{}.rs", self.top, self.name.replace("::", "/"))
        }
    }
}

fn sources() -> Vec<SourceFile> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let rel = path.strip_prefix(&src).unwrap();
            let parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            // Test files, and the crate root and binary, which assemble everything.
            if parts.last().is_some_and(|p| p == "tests") || parts.iter().any(|p| p == "tests") {
                return None;
            }
            if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
                return None;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            Some(SourceFile {
                top: parts[0].clone(),
                name: parts[1..].join("::"),
                is_folder_root: parts.len() == 2 && parts[1] == "mod" || parts.len() == 1,
                code: code(&text),
            })
        })
        .collect()
}

fn crate_root() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap()
}

#[test]
fn the_map_lists_every_module_once() {
    let lib = crate_root();
    let layers = layers(&lib);
    assert!(layers.len() > 5, "no `# Layers` list found in src/lib.rs");
    let mut mapped = BTreeSet::new();
    for name in layers.iter().flatten() {
        assert!(mapped.insert(name.clone()), "`{name}` is listed twice");
    }
    assert_eq!(
        mapped,
        declared_modules(&lib),
        "the modules of the map and those lib.rs declares differ"
    );
}

#[test]
fn no_module_imports_one_above_it() {
    let layers = layers(&crate_root());
    let layer_of: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, names)| names.iter().map(move |n| (n.as_str(), i)))
        .collect();
    let mut upward = Vec::new();
    for file in sources() {
        let Some(&own) = layer_of.get(file.top.as_str()) else {
            panic!("src/{} is not in the map of src/lib.rs", file.top);
        };
        let named: BTreeSet<String> = paths_after(&file.code, "crate::")
            .into_iter()
            .filter_map(|p| p.into_iter().next())
            .collect();
        for module in named {
            match layer_of.get(module.as_str()) {
                Some(&layer) if module != file.top && layer >= own => upward.push(format!(
                    "{}: crate::{module} (layer {}) from layer {}",
                    file.display(),
                    layer + 1,
                    own + 1
                )),
                _ => {}
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that do not go down the map of src/lib.rs:\n{}",
        upward.join("\n")
    );
}

#[test]
fn files_of_a_folder_do_not_depend_on_each_other_in_a_circle() {
    let files = sources();
    let mut by_folder: BTreeMap<&str, Vec<&SourceFile>> = BTreeMap::new();
    for f in &files {
        if !f.is_folder_root {
            by_folder.entry(&f.top).or_default().push(f);
        }
    }
    for (folder, siblings) in by_folder {
        let names: BTreeSet<&str> = siblings.iter().map(|f| f.name.as_str()).collect();
        // Edges between sibling files, through `super::x` or `crate::folder::x`.
        let mut edges: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for f in &siblings {
            let own_folder: Vec<&str> = f.name.split("::").collect();
            let parent = own_folder[..own_folder.len() - 1].join("::");
            let mut targets = Vec::new();
            for p in paths_after(&f.code, "super::") {
                let mut full: Vec<String> = parent
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                full.extend(p);
                targets.push(full);
            }
            for p in paths_after(&f.code, "crate::") {
                if p.first().is_some_and(|t| t == folder) {
                    targets.push(p[1..].to_vec());
                }
            }
            for t in targets {
                // The longest prefix naming a sibling file.
                let hit = (1..=t.len())
                    .rev()
                    .map(|n| t[..n].join("::"))
                    .find(|cand| names.contains(cand.as_str()) && cand != &f.name);
                if let Some(hit) = hit {
                    edges.entry(&f.name).or_default().insert(hit);
                }
            }
        }
        for start in &names {
            let mut stack: Vec<(String, Vec<String>)> =
                vec![(start.to_string(), vec![start.to_string()])];
            while let Some((at, trail)) = stack.pop() {
                for next in edges.get(at.as_str()).into_iter().flatten() {
                    assert!(
                        next != start,
                        "src/{folder}: files in a circle: {} -> {next}",
                        trail.join(" -> ")
                    );
                    if !trail.contains(next) && trail.len() < names.len() {
                        let mut t = trail.clone();
                        t.push(next.clone());
                        stack.push((next.clone(), t));
                    }
                }
            }
        }
    }
}

#[test]
fn the_path_reader_expands_groups() {
    let code = "use crate::{clock::Timestamp, probe::{ProbeResult, result::Reason}};\n\
                let x = crate::engine::TICK; let y = notcrate::z;";
    let got: Vec<String> = paths_after(code, "crate::")
        .into_iter()
        .map(|p| p.join("::"))
        .collect();
    assert_eq!(
        got,
        [
            "clock::Timestamp",
            "probe::ProbeResult",
            "probe::result::Reason",
            "engine::TICK"
        ]
    );
    let lib = "//! # Layers\n//!\n//! 1. [`clock`], `validation`: words [`probe::X`]\n\
               //! 2. `probe`: more\n//!    `notmodule`: continued\n//! # Glossary\n//! 1. `no`: x\n";
    assert_eq!(
        layers(lib),
        [
            vec!["clock".to_string(), "validation".to_string()],
            vec!["probe".to_string()]
        ]
    );
}
