//! A row of the log table: the whole job in one BLOB column.
//!
//! The log is gearbox's own (gearmand never reads it), so its layout is
//! chosen for the cost of an append: one bound value and a two-column record
//! per job instead of five of each. Layout, integers little-endian:
//!
//! ```text
//! priority: u8 | when_to_run: u64 | key length: u32 | key | function length: u32 | function | data
//! ```

use super::super::backend::Row;
use super::super::StoreError;

pub fn encode(row: &Row, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(1 + 8 + 4 + row.key.len() + 4 + row.function.len() + row.data.len());
    out.push(row.priority);
    out.extend_from_slice(&row.when.to_le_bytes());
    for field in [&row.key, &row.function] {
        out.extend_from_slice(&(field.len() as u32).to_le_bytes());
        out.extend_from_slice(field);
    }
    out.extend_from_slice(&row.data);
}

pub fn decode(blob: &[u8], position: i64) -> Result<Row, StoreError> {
    let bad = || StoreError(format!("sqlite: log row {position} is malformed"));
    let (&priority, rest) = blob.split_first().ok_or_else(bad)?;
    let (when, rest) = rest.split_first_chunk::<8>().ok_or_else(bad)?;
    let mut rest = rest;
    let mut field = || -> Result<Vec<u8>, StoreError> {
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
        let len = u32::from_le_bytes(*len) as usize;
        if tail.len() < len {
            return Err(bad());
        }
        let (value, tail) = tail.split_at(len);
        rest = tail;
        Ok(value.to_vec())
    };
    let key = field()?;
    let function = field()?;
    Ok(Row {
        key,
        function,
        priority: priority.min(2),
        data: rest.to_vec(),
        when: u64::from_le_bytes(*when),
        position: Some(position),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_survives_the_round_trip() {
        let row = Row {
            key: b"k\xff".to_vec(),
            function: b"reverse".to_vec(),
            priority: 2,
            data: vec![0, 1, 255],
            when: 1_700_000_000,
            position: Some(42),
        };
        let mut blob = Vec::new();
        encode(&row, &mut blob);
        assert_eq!(decode(&blob, 42).unwrap(), row);
    }

    #[test]
    fn a_truncated_row_is_an_error() {
        let row = Row {
            key: b"key".to_vec(),
            function: b"f".to_vec(),
            priority: 1,
            data: Vec::new(),
            when: 0,
            position: Some(1),
        };
        let mut blob = Vec::new();
        encode(&row, &mut blob);
        for len in 0..blob.len() - 1 {
            assert!(decode(&blob[..len], 1).is_err(), "{len} bytes");
        }
    }
}
