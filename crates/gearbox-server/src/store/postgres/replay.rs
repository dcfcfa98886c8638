//! Reading an earlier run's rows back from PostgreSQL.

use super::*;

/// Reads the table through a cursor in a REPEATABLE READ transaction of its
/// own, a chunk per FETCH.
pub(super) struct PostgresReplay {
    /// `None` once the end was reached.
    pub(super) client: Option<Client>,
}

impl Drop for PostgresReplay {
    fn drop(&mut self) {
        // Stopped early (an error, or the server shutting down).
        if let Some(client) = self.client.take() {
            discard(client);
        }
    }
}

impl ReplaySource for PostgresReplay {
    fn next_chunk(&mut self) -> Result<Vec<Row>, StoreError> {
        let Some(client) = self.client.as_mut() else {
            return Ok(Vec::new());
        };
        let rows = client
            .query(&format!("FETCH {REPLAY_CHUNK} FROM gearbox_replay"), &[])
            .map_err(|e| db_error("replay", e))?;
        let mut chunk = Vec::with_capacity(rows.len());
        for row in &rows {
            let read = || -> Result<Row, postgres::Error> {
                let text = |i: usize| -> Result<Vec<u8>, postgres::Error> {
                    Ok(row
                        .try_get::<_, Option<String>>(i)?
                        .map(String::into_bytes)
                        .unwrap_or_default())
                };
                Ok(Row {
                    key: text(0)?,
                    function: text(1)?,
                    priority: row.try_get::<_, Option<i64>>(2)?.unwrap_or(1).clamp(0, 2) as u8,
                    data: row.try_get::<_, Option<Vec<u8>>>(3)?.unwrap_or_default(),
                    when: row.try_get::<_, Option<i64>>(4)?.unwrap_or(0).max(0) as u64,
                    position: None,
                })
            };
            chunk.push(read().map_err(|e| db_error("replay", e))?);
        }
        if chunk.is_empty() {
            // End of the table: close the snapshot and the connection.
            if let Some(mut client) = self.client.take() {
                let _ = client.batch_execute("COMMIT");
            }
        }
        Ok(chunk)
    }
}
