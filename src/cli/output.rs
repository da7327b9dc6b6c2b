//! Output formats (product.md section 6): `table` for people, `json` (one array, or one
//! object), `ndjson` (one object per line) and `csv`. Rows are JSON objects whose field order
//! is the documented one; nested values print as compact JSON in table and csv cells.

use std::io::Write;

use anyhow::Result;
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde_json::Value;

/// How a reading command prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns, for people.
    Table,
    /// One JSON document: an array of rows, or the object.
    Json,
    /// One JSON object per line.
    Ndjson,
    /// Comma-separated, with a header line.
    Csv,
}

/// A table or csv cell.
fn cell(key: &str, value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(lines) if key == "lines" => lines
            .iter()
            .map(|l| {
                format!(
                    "{} x{} @ {}",
                    cell("", &l["sku"]),
                    l["quantity"],
                    l["unit_price"]
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

/// Longest cell of a table of rows, in characters: an event's `data` can run to hundreds,
/// which no terminal shows on one line. json, ndjson and csv print every value whole.
pub const TABLE_CELL_CHARS_MAX: usize = 60;

/// `text` cut to `max` characters, the last one `…`, when it is longer.
fn shortened(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

fn table() -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    t
}

fn keys(rows: &[Value]) -> Vec<String> {
    rows.first()
        .and_then(Value::as_object)
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn csv(out: &mut dyn Write, header: &[String], rows: &[Value]) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(header)?;
    for row in rows {
        w.write_record(header.iter().map(|k| cell(k, &row[k.as_str()])))?;
    }
    w.flush()?;
    Ok(())
}

/// Prints rows. `table_columns` picks the columns a person sees; the other formats print
/// every field.
pub fn rows(
    out: &mut dyn Write,
    format: Format,
    table_columns: &[&str],
    rows: &[Value],
) -> Result<()> {
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(rows)?)?,
        Format::Ndjson => {
            for row in rows {
                writeln!(out, "{row}")?;
            }
        }
        Format::Csv => csv(out, &keys(rows), rows)?,
        Format::Table => {
            let mut t = table();
            t.set_header(table_columns.to_vec());
            for row in rows {
                t.add_row(
                    table_columns
                        .iter()
                        .map(|k| shortened(cell(k, &row[*k]), TABLE_CELL_CHARS_MAX)),
                );
            }
            writeln!(out, "{t}")?;
            writeln!(
                out,
                "{} row{}",
                rows.len(),
                if rows.len() == 1 { "" } else { "s" }
            )?;
        }
    }
    Ok(())
}

/// Prints one object.
pub fn object(out: &mut dyn Write, format: Format, value: &Value) -> Result<()> {
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(value)?)?,
        Format::Ndjson => writeln!(out, "{value}")?,
        Format::Csv => csv(
            out,
            &keys(std::slice::from_ref(value)),
            std::slice::from_ref(value),
        )?,
        Format::Table => {
            let mut t = table();
            t.set_header(vec!["field", "value"]);
            if let Some(fields) = value.as_object() {
                for (k, v) in fields {
                    t.add_row(vec![k.clone(), cell(k, v)]);
                }
            }
            writeln!(out, "{t}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_cells_are_cut_on_a_character_boundary_and_short_ones_kept() {
        assert_eq!(shortened("abc".to_owned(), 5), "abc");
        assert_eq!(shortened("abcdef".to_owned(), 5), "abcd…");
        assert_eq!(shortened("ééééééé".to_owned(), 3), "éé…");
        assert_eq!(shortened("abcde".to_owned(), 5), "abcde");
    }
}
