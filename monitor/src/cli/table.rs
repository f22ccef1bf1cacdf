//! Text the CLI prints for a person: aligned columns, and indented lines wrapped to the
//! terminal width everyone still designs for.

use std::fmt::Write as _;

use crate::model::format::escape_control;

/// Lines are designed to fit this many columns (IPv4 addresses, ordinary process names); only
/// `--wide` goes past it.
pub(super) const WIDTH: usize = 120;

/// One column: its header, whether its cells are right-aligned (ages and counts, so their
/// magnitudes line up), and how a cell is made from a row's item.
pub(super) struct Column<T> {
    pub header: &'static str,
    pub right: bool,
    pub cell: fn(&T) -> String,
}

/// The header and one line per item, columns two spaces apart, each line followed by the
/// item's `extra` lines (already indented; may be empty). Every cell is escaped
/// ([`escape_control`]): process names are chosen by whoever runs the process, the rest comes
/// over the network.
pub(super) fn aligned<T>(
    columns: &[Column<T>],
    items: &[T],
    extra: impl Fn(&T) -> String,
) -> String {
    let cells = |item: &T| -> Vec<String> {
        columns
            .iter()
            .map(|c| escape_control(&(c.cell)(item)).into_owned())
            .collect()
    };
    let header: Vec<String> = columns.iter().map(|c| c.header.to_owned()).collect();
    let rows: Vec<Vec<String>> = items.iter().map(cells).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |row: &[String]| {
        let mut line = String::new();
        for ((cell, column), width) in row.iter().zip(columns).zip(&widths) {
            let pad = " ".repeat(width - cell.chars().count());
            let sep = if line.is_empty() { "" } else { "  " };
            // Writing into a String cannot fail.
            let _ = if column.right {
                write!(line, "{sep}{pad}{cell}")
            } else {
                write!(line, "{sep}{cell}{pad}")
            };
        }
        line.trim_end().to_owned() + "\n"
    };
    let mut out = line(&header);
    for (row, item) in rows.iter().zip(items) {
        out += &line(row);
        out += &extra(item);
    }
    out
}

/// `text` escaped and word-wrapped to [`WIDTH`] columns, every line starting with `indent`
/// spaces; a word longer than a line stays whole.
pub(super) fn indented(text: &str, indent: usize) -> String {
    let text = escape_control(text);
    let prefix = " ".repeat(indent);
    let mut out = String::new();
    let mut line = prefix.clone();
    for word in text.split_whitespace() {
        let used = line.chars().count();
        if used > indent && used + 1 + word.chars().count() > WIDTH {
            out += line.trim_end();
            out.push('\n');
            line.clone_from(&prefix);
        }
        if line.chars().count() > indent {
            line.push(' ');
        }
        line += word;
    }
    out += &line;
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indented_lines_wrap_at_the_width() {
        assert_eq!(indented("short text", 4), "    short text\n");
        let long = "word ".repeat(40);
        let out = indented(&long, 4);
        assert!(out.lines().count() > 1, "{out}");
        for line in out.lines() {
            assert!(line.starts_with("    word"), "{line:?}");
            assert!(line.chars().count() <= WIDTH, "{line:?}");
        }
        assert_eq!(indented("a\u{1b}[2Jb", 2), "  a\\x1b[2Jb\n");
    }
}
