//! What the table is and can hold: its name as SQL, its columns as read from
//! the catalog, the rows it could never store, and a batch reduced to the
//! statements that apply it.

use super::*;

/// The table name as SQL. gearmand pastes `--libpq-table` into its SQL
/// unquoted, so PostgreSQL folds a plain name to lower case; we fold it the
/// same way and quote the result, so that a name that happens to be a keyword
/// works too and nothing else can be injected.
pub(super) fn table_identifier(name: &str) -> String {
    let (schema, table) = table_parts(name);
    match schema {
        Some(schema) => format!("{}.{}", quote_identifier(&schema), quote_identifier(&table)),
        None => quote_identifier(&table),
    }
}

/// The schema, if the name gives one, and the table.
pub(super) type TableParts = (Option<String>, String);

/// What `name` means, as PostgreSQL reads [`table_identifier`]'s SQL: folded,
/// unquoted.
pub(super) fn table_parts(name: &str) -> TableParts {
    let plain = |part: &str| {
        let mut chars = part.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    };
    let parts: Vec<&str> = name.split('.').collect();
    match parts[..] {
        [table] if plain(table) => (None, table.to_ascii_lowercase()),
        [schema, table] if plain(schema) && plain(table) => (
            Some(schema.to_ascii_lowercase()),
            table.to_ascii_lowercase(),
        ),
        _ => (None, name.to_owned()),
    }
}

pub(super) fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Layout {
    /// Why `row`'s key and function cannot be stored, if they cannot.
    fn check_text<'a>(
        &self,
        key: &'a [u8],
        function: &'a [u8],
    ) -> Result<(&'a str, &'a str), String> {
        let text = |what: &str, bytes: &'a [u8], max: Option<usize>| {
            let text =
                std::str::from_utf8(bytes).map_err(|_| format!("{what} is not valid UTF-8"))?;
            if text.contains('\0') {
                return Err(format!("{what} contains a NUL byte"));
            }
            if let Some(max) = max {
                if text.len() > max && text.chars().count() > max {
                    return Err(format!("{what} is longer than {max} characters"));
                }
            }
            Ok(text)
        };
        Ok((
            text("unique", key, self.key_chars)?,
            text("function name", function, self.function_chars)?,
        ))
    }

    fn check_when(&self, when: u64) -> Result<i64, String> {
        i64::try_from(when)
            .ok()
            .filter(|w| *w <= self.when_max)
            .ok_or_else(|| format!("when_to_run {when} does not fit the column"))
    }
}

/// Whether PostgreSQL can keep `row` in a table of gearmand's layout: the
/// unique and function name valid UTF-8 without NUL bytes, at most 64 and
/// 255 characters, and `when` at most `i32::MAX`. [`Postgres`] leaves other
/// rows out of its writes (see the module documentation).
pub fn check_row(row: &Row) -> Result<(), StoreError> {
    let layout = Layout {
        key_chars: Some(64),
        function_chars: Some(255),
        when_max: i32::MAX.into(),
        seq: true,
    };
    layout
        .check_text(&row.key, &row.function)
        .and_then(|_| layout.check_when(row.when))
        .map(|_| ())
        .map_err(|why| StoreError(format!("postgres cannot store this job: {why}")))
}

/// A batch reduced to its effect: the rows to delete and the rows to upsert,
/// each (key, function) once, upserts in the order of their last write.
pub(super) struct Reduced<'a> {
    pub(super) delete_keys: Vec<&'a str>,
    pub(super) delete_functions: Vec<&'a str>,
    pub(super) puts: Vec<(&'a str, &'a str, &'a Row, i64)>,
}

pub(super) fn reduce<'a>(ops: &'a [Op], layout: &Layout) -> Reduced<'a> {
    let mut last: HashMap<(&[u8], &[u8]), usize> = HashMap::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        if let Some(id) = op.row_id() {
            last.insert(id, i);
        }
    }
    let mut reduced = Reduced {
        delete_keys: Vec::new(),
        delete_functions: Vec::new(),
        puts: Vec::new(),
    };
    for (i, op) in ops.iter().enumerate() {
        let Some((key, function)) = op.row_id() else {
            continue;
        };
        if last.get(&(key, function)) != Some(&i) {
            continue;
        }
        match (op, layout.check_text(key, function)) {
            (Op::Put(row), Ok((key, function))) => match layout.check_when(row.when) {
                Ok(when) => reduced.puts.push((key, function, row, when)),
                Err(why) => skip(row, &why),
            },
            (Op::Put(row), Err(why)) => skip(row, &why),
            (_, Ok((key, function))) => {
                reduced.delete_keys.push(key);
                reduced.delete_functions.push(function);
            }
            // A row that cannot be stored was never stored.
            (_, Err(_)) => {}
        }
    }
    reduced
}

fn skip(row: &Row, why: &str) {
    tracing::error!(
        function = %String::from_utf8_lossy(&row.function),
        unique = %String::from_utf8_lossy(&row.key),
        "postgres cannot store this job ({why}); it runs, but is not kept across a restart"
    );
}

/// Reads the table's columns from the catalog.
pub(super) fn inspect(client: &mut Client, table: &str) -> Result<Layout, StoreError> {
    let columns = |client: &mut Client| {
        client
            .query(
                "SELECT attname::text, atttypid::regtype::text, atttypmod FROM pg_attribute \
                 WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped",
                &[&table],
            )
            .map_err(|e| db_error(&format!("inspect {table}"), e))
    };
    let mut rows = columns(client)?;
    let has = |rows: &[postgres::Row], name: &str| rows.iter().any(|r| r.get::<_, &str>(0) == name);
    // Tables written by gearmand before when_to_run existed; the SQLite store
    // adds the column in the same way.
    if !has(&rows, "when_to_run") {
        client
            .batch_execute(&format!(
                "ALTER TABLE {table} ADD COLUMN when_to_run INTEGER"
            ))
            .map_err(|e| db_error("add when_to_run", e))?;
        rows = columns(client)?;
    }
    for needed in ["unique_key", "function_name", "priority", "data"] {
        if !has(&rows, needed) {
            return Err(StoreError(format!(
                "postgres: table {table} has no column {needed}; it is not a gearmand queue table"
            )));
        }
    }
    let mut layout = Layout {
        key_chars: None,
        function_chars: None,
        when_max: i64::MAX,
        seq: has(&rows, SEQ_COLUMN),
    };
    for row in &rows {
        let name: &str = row.get(0);
        let kind: &str = row.get(1);
        let typmod: i32 = row.get(2);
        // varchar(n) and char(n) keep n + 4 in atttypmod.
        let chars = (kind.starts_with("character") && typmod >= 4).then(|| (typmod - 4) as usize);
        match name {
            "unique_key" => layout.key_chars = chars,
            "function_name" => layout.function_chars = chars,
            "when_to_run" => {
                layout.when_max = match kind {
                    "smallint" => i16::MAX.into(),
                    "integer" => i32::MAX.into(),
                    _ => i64::MAX,
                }
            }
            _ => {}
        }
    }
    Ok(layout)
}
