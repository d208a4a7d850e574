//! Reading a pipeline: from a file and the SQL files it names, or from a
//! stored schedule's text and SQL files.

use super::{parse, Invalid, Pipeline};
use std::collections::BTreeMap;
use std::path::Path;

/// Reads and validates a pipeline file. Relative `sql_file`s are read from
/// the pipeline file's folder.
pub fn load(path: &Path) -> Result<Pipeline, Invalid> {
    load_for_schedule(path).map(|(p, _, _)| p)
}

/// A pipeline file read for storing as a schedule: its text, and every SQL
/// file it names (as written), so that any worker can rebuild it without
/// the files.
pub fn load_for_schedule(
    path: &Path,
) -> Result<(Pipeline, String, BTreeMap<String, String>), Invalid> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Invalid {
        problems: vec![format!("{shown}: cannot read: {e}")],
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("pipeline")
        .to_string();
    let files = std::cell::RefCell::new(BTreeMap::new());
    let p = parse(&text, &shown, &stem, |p| {
        let full = if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        };
        let sql = std::fs::read_to_string(&full)
            .map_err(|e| format!("cannot read {}: {e}", full.display()))?;
        files
            .borrow_mut()
            .insert(p.display().to_string(), sql.clone());
        Ok(sql)
    })?;
    Ok((p, text, files.into_inner()))
}

/// A stored schedule's (or trigger's: `kind`) pipeline, rebuilt from its
/// text and SQL files.
pub fn parse_stored(
    kind: &str,
    name: &str,
    text: &str,
    sql_files: &BTreeMap<String, String>,
) -> Result<Pipeline, Invalid> {
    parse(text, &format!("{kind} {name}"), name, |p| {
        sql_files
            .get(&p.display().to_string())
            .cloned()
            .ok_or_else(|| {
                format!(
                    "{} was not stored with the {kind}: add it again",
                    p.display()
                )
            })
    })
}
