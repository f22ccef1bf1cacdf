//! The module layering documented in `src/lib.rs`, checked: every `crate::` path in a room of
//! `monitor/src` names the room itself or a room below it. Reads the source text (no compiler
//! internals): comments are dropped, `use crate::{a, b::c}` groups are expanded to their first
//! segments.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

/// Rooms by level, bottom first. A room may import rooms of a lower level only.
const LEVELS: &[&[&str]] = &[
    &[
        "model",
        "clock",
        "memory",
        "locks",
        "periodic",
        "privileges",
        "netns",
    ],
    &["verdict", "bpf", "sock_diag", "conntrack", "kubernetes"],
    &["scan"],
    &["act", "forensics"],
    &["alerting"],
    &["export"],
    &["config"],
    &["error"],
    &["agent"],
    &["cli"],
];

fn level(room: &str) -> Option<usize> {
    LEVELS.iter().position(|rooms| rooms.contains(&room))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The room a file belongs to: its first directory under `src/`, or its stem for a file at the
/// top (`clock.rs`); None for the crate roots.
fn room_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).expect("file under src");
    let first = relative.components().next()?.as_os_str().to_str()?;
    let room = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(room, "lib" | "main")).then(|| room.to_owned())
}

/// The source without `//` comments (doc comments included: their links are not imports).
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| line.find("//").map_or(line, |at| &line[..at]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The rooms named by `crate::` paths in `text`.
fn imported_rooms(text: &str) -> BTreeSet<String> {
    let mut rooms = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level entries of the group: split on commas at brace depth 0.
            let mut depth = 0;
            let mut entry = String::new();
            for ch in group.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        rooms.insert(first_segment(&entry));
                        entry.clear();
                        continue;
                    }
                    _ => {}
                }
                entry.push(ch);
            }
            rooms.insert(first_segment(&entry));
        } else {
            rooms.insert(first_segment(rest));
        }
    }
    rooms.remove("");
    rooms
}

fn first_segment(path: &str) -> String {
    path.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn imports_point_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut upward = Vec::new();
    let mut checked = 0;
    for file in &files {
        let Some(room) = room_of(&src, file) else {
            continue;
        };
        let own = level(&room).unwrap_or_else(|| panic!("room {room} is not in LEVELS"));
        let text = without_comments(&fs::read_to_string(file).expect("read source"));
        for imported in imported_rooms(&text) {
            checked += 1;
            let theirs = level(&imported)
                .unwrap_or_else(|| panic!("{}: crate::{imported} is not a room", file.display()));
            if imported != room && theirs >= own {
                upward.push(format!("{}: {room} imports {imported}", file.display()));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} imports found: is the parser broken?"
    );
    assert!(
        upward.is_empty(),
        "imports pointing up or sideways:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_parser_expands_groups() {
    let text = "use crate::{\n    model::{Connection, labels::{self, OTHER}},\n    scan::Snapshot,\n};\nlet x = crate::clock::now();";
    let rooms: Vec<String> = imported_rooms(text).into_iter().collect();
    assert_eq!(rooms, ["clock", "model", "scan"]);
}
