//! The one renderer of the CLI's human output: tables (`comfy-table`) and
//! times (`jiff`). `--json` outputs do not come through here.

use comfy_table::{CellAlignment, Table};

/// A time in epoch milliseconds as RFC 3339 in UTC with milliseconds
/// (`2025-11-25T00:48:41.005Z`), the format scripts parse; `-` for none.
pub fn time(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) => match crate::clock::timestamp(ms) {
            Ok(t) => format!("{t:.3}"),
            // Beyond jiff's range (years -9999 to 9999): the raw value.
            Err(_) => format!("{ms} ms since 1970"),
        },
    }
}

/// A value or `-`.
pub fn or_dash<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// The first line of an optional text (an error), or nothing.
pub fn first_line(s: Option<&str>) -> &str {
    s.and_then(|s| s.lines().next()).unwrap_or("")
}

/// How a column lines up.
#[derive(Debug, Clone, Copy)]
pub enum Align {
    Left,
    Right,
}

/// A column: its header, alignment and, when set, its widest content
/// (longer cells are cut with `…`).
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub header: &'static str,
    pub align: Align,
    pub max_width: Option<u16>,
}

/// A left-aligned column.
pub const fn left(header: &'static str) -> Column {
    Column {
        header,
        align: Align::Left,
        max_width: None,
    }
}

/// A right-aligned column (numbers).
pub const fn right(header: &'static str) -> Column {
    Column {
        header,
        align: Align::Right,
        max_width: None,
    }
}

impl Column {
    /// Cuts longer cells to `width` characters, the last one `…`.
    pub const fn at_most(mut self, width: u16) -> Self {
        self.max_width = Some(width);
        self
    }
}

/// A table as the listings print it: a header line, then one line per row,
/// columns two spaces apart, no borders, no trailing spaces. Columns are as
/// wide as their content; nothing wraps, so a piped listing stays one line
/// per row.
pub fn table<R, C>(columns: &[Column], rows: R) -> String
where
    R: IntoIterator<Item = C>,
    C: IntoIterator<Item = String>,
{
    let mut t = Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    t.set_header(columns.iter().map(|c| c.header));
    for row in rows {
        t.add_row(
            row.into_iter()
                .zip(columns)
                .map(|(cell, c)| fit(&cell, c.max_width)),
        );
    }
    for (i, c) in columns.iter().enumerate() {
        if let Some(col) = t.column_mut(i) {
            // Two spaces between columns; the last column's are trimmed.
            col.set_padding((0, 2));
            col.set_cell_alignment(match c.align {
                Align::Left => CellAlignment::Left,
                Align::Right => CellAlignment::Right,
            });
        }
    }
    t.trim_fmt()
}

/// One line (a newline would break the one-line-per-row promise), cut to
/// `max` characters with `…` when it is longer.
fn fit(s: &str, max: Option<u16>) -> String {
    let s = s.replace(['\r', '\n'], " ");
    match max.map(usize::from) {
        Some(max) if max > 0 && s.chars().count() > max => {
            s.chars().take(max - 1).chain(['…']).collect()
        }
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format() {
        assert_eq!(time(Some(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(time(Some(1_764_031_721_005)), "2025-11-25T00:48:41.005Z");
        assert_eq!(time(Some(-1)), "1969-12-31T23:59:59.999Z");
        assert_eq!(time(None), "-");
        assert_eq!(time(Some(i64::MAX)), format!("{} ms since 1970", i64::MAX));
    }

    #[test]
    fn tables_line_up_without_borders() {
        let out = table(
            &[right("ID"), left("NAME").at_most(5), left("ERROR")],
            [
                vec!["7".to_string(), "abcdefgh".into(), "".into()],
                vec!["12".into(), "ab".into(), "bad\nthing".into()],
            ],
        );
        assert_eq!(out, "ID  NAME   ERROR\n 7  abcd…\n12  ab     bad thing");
    }
}
