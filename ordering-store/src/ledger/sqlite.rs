//! The ledger in SQLite.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ordering_core::{Claim, RedriveKey, RedriveLedger, Redriven, StoreError};
use rusqlite::{Connection, OptionalExtension, params};

use crate::OpenError;
use crate::sqlite::{open_failed, open_file, write_on};
use crate::statements::{CLAIM, CLAIM_AGAIN, FORGET, LOOKUP, RELEASE};

/// A redrive ledger in a SQLite file: one table, `redriven_records`, beside whatever else the
/// file holds (a service's own tables), and nothing of the order flow.
#[derive(Clone)]
pub struct SqliteLedger {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLedger").finish_non_exhaustive()
    }
}

impl SqliteLedger {
    /// Opens the ledger in the SQLite file at `path` (creating the file, its directory and
    /// the table if needed).
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let failed = |e: rusqlite::Error| open_failed(path, e);
        let conn = open_file(path)?;
        // FULL: a claim is on disk before the record is sent back.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(failed)?;
        conn.execute_batch(super::TABLE).map_err(failed)?;
        Ok(Self::on(Arc::new(Mutex::new(conn))))
    }

    /// The ledger on a connection of a database whose migrations made the table.
    pub(crate) fn on(conn: Arc<Mutex<Connection>>) -> Self {
        Self { conn }
    }
}

/// A ledger key as the statements' first five parameters.
fn key_params(id: &RedriveKey) -> (&str, i32, i64, u32, u32) {
    (
        &id.origin.topic,
        id.origin.partition,
        id.origin.offset,
        id.redrive_count,
        id.origin.incarnation,
    )
}

fn lookup(conn: &Connection, id: &RedriveKey) -> rusqlite::Result<Option<Redriven>> {
    let (topic, partition, offset, count, incarnation) = key_params(id);
    conn.prepare_cached(LOOKUP)?
        .query_row(
            params![topic, partition, offset, count, incarnation],
            |row| {
                Ok(Redriven {
                    times: u32::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                    last_at_ms: row.get(1)?,
                })
            },
        )
        .optional()
}

#[async_trait]
impl RedriveLedger for SqliteLedger {
    async fn claim(
        &self,
        records: &[RedriveKey],
        again: bool,
        at_ms: i64,
    ) -> Result<Vec<Claim>, StoreError> {
        let records = records.to_vec();
        write_on(&self.conn, move |tx| {
            let sql = if again { CLAIM_AGAIN } else { CLAIM };
            let mut claims = Vec::with_capacity(records.len());
            for id in &records {
                let (topic, partition, offset, count, incarnation) = key_params(id);
                let inserted = tx.prepare_cached(sql)?.execute(params![
                    topic,
                    partition,
                    offset,
                    count,
                    incarnation,
                    at_ms
                ])?;
                let known = if inserted == 0 { lookup(tx, id)? } else { None };
                claims.push(known.map_or(Claim::Claimed, Claim::Already));
            }
            Ok(claims)
        })
        .await
    }

    async fn release(&self, records: &[RedriveKey]) -> Result<(), StoreError> {
        let records = records.to_vec();
        write_on(&self.conn, move |tx| {
            for id in &records {
                let (topic, partition, offset, count, incarnation) = key_params(id);
                let key = params![topic, partition, offset, count, incarnation];
                tx.prepare_cached(RELEASE)?.execute(key)?;
                tx.prepare_cached(FORGET)?.execute(key)?;
            }
            Ok(())
        })
        .await
    }

    async fn lookup(&self, records: &[RedriveKey]) -> Result<Vec<Option<Redriven>>, StoreError> {
        let records = records.to_vec();
        write_on(&self.conn, move |tx| {
            records.iter().map(|id| lookup(tx, id)).collect()
        })
        .await
    }
}
