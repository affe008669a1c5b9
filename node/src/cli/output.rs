//! Human tables and JSON output.

use serde::Serialize;

/// Print rows as a left-aligned table with a header line.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A PeerId as tables show it: its last 8 characters (`--json` has them whole).
pub fn short_id(id: &str) -> String {
    id.get(id.len().saturating_sub(8)..).unwrap_or(id).to_string()
}

/// PeerIds as tables show them, comma-separated.
pub fn short_ids(ids: &[String]) -> String {
    ids.iter().map(|i| short_id(i)).collect::<Vec<_>>().join(",")
}

/// Print a value as pretty JSON.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
