//! The ledger in PostgreSQL.

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Pool};
use ordering_core::{Claim, RedriveKey, RedriveLedger, Redriven, StoreError};
use tokio_postgres::types::ToSql;

use crate::postgres::{bounded, classify, first_connection, open_failed, pool_error, sql_int};
use crate::statements::{CLAIM, CLAIM_AGAIN, FORGET, LOOKUP, RELEASE};
use crate::{OpenError, PostgresUrl};

/// Serializes the table's creation by instances starting together (any constant of its own).
const CREATE_LOCK: i64 = 0x0072_6564_7269_7665; // "redrive"

/// Connections of a ledger of its own: claims are rare and short.
const POOL_SIZE: usize = 2;

/// A redrive ledger in a PostgreSQL database: one table, `redriven_records`, beside whatever
/// else the database holds, and nothing of the order flow. Many instances may share it.
#[derive(Clone)]
pub struct PostgresLedger {
    pool: Pool,
}

impl std::fmt::Debug for PostgresLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresLedger").finish_non_exhaustive()
    }
}

impl PostgresLedger {
    /// Connects (TLS and password as `url` says) and makes the table if needed.
    pub async fn open(url: &PostgresUrl) -> Result<Self, OpenError> {
        let pool = url.pool(POOL_SIZE, "redrive-ledger")?;
        let mut client = first_connection(&pool).await?;
        // Instances starting together: `IF NOT EXISTS` alone races in the catalog.
        let tx = client.transaction().await.map_err(open_failed)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CREATE_LOCK])
            .await
            .map_err(open_failed)?;
        tx.batch_execute(super::TABLE).await.map_err(open_failed)?;
        tx.commit().await.map_err(open_failed)?;
        Ok(Self::on(pool))
    }

    /// The ledger on a pool of a database whose migrations made the table.
    pub(crate) fn on(pool: Pool) -> Self {
        Self { pool }
    }
}

/// A ledger key as the statements' first five parameters.
fn key_params(id: &RedriveKey) -> (&str, i32, i64, i32, i32) {
    (
        &id.origin.topic,
        id.origin.partition,
        id.origin.offset,
        i32::try_from(id.redrive_count).unwrap_or(i32::MAX),
        sql_int(id.origin.incarnation),
    )
}

async fn lookup(
    client: &impl GenericClient,
    id: &RedriveKey,
) -> Result<Option<Redriven>, tokio_postgres::Error> {
    let (topic, partition, offset, count, incarnation) = key_params(id);
    let row = client
        .query_opt(LOOKUP, &[&topic, &partition, &offset, &count, &incarnation])
        .await?;
    Ok(row.map(|row| Redriven {
        times: u32::try_from(row.get::<_, i32>(0)).unwrap_or(0),
        last_at_ms: row.get(1),
    }))
}

// Claims run in one transaction: a racing run's insert of the same record waits for it, then
// finds the row (`DO NOTHING`), so only one of them republishes the record.
#[async_trait]
impl RedriveLedger for PostgresLedger {
    async fn claim(
        &self,
        records: &[RedriveKey],
        again: bool,
        at_ms: i64,
    ) -> Result<Vec<Claim>, StoreError> {
        bounded(async {
            let mut client = self.pool.get().await.map_err(pool_error)?;
            let run = async {
                let tx = client.transaction().await?;
                let sql = if again { CLAIM_AGAIN } else { CLAIM };
                let mut claims = Vec::with_capacity(records.len());
                for id in records {
                    let (topic, partition, offset, count, incarnation) = key_params(id);
                    let inserted = tx
                        .execute(
                            sql,
                            &[&topic, &partition, &offset, &count, &incarnation, &at_ms],
                        )
                        .await?;
                    let known = if inserted == 0 {
                        lookup(&tx, id).await?
                    } else {
                        None
                    };
                    claims.push(known.map_or(Claim::Claimed, Claim::Already));
                }
                tx.commit().await?;
                Ok(claims)
            };
            run.await.map_err(|e: tokio_postgres::Error| classify(&e))
        })
        .await
    }

    async fn release(&self, records: &[RedriveKey]) -> Result<(), StoreError> {
        bounded(async {
            let mut client = self.pool.get().await.map_err(pool_error)?;
            let run = async {
                let tx = client.transaction().await?;
                for id in records {
                    let (topic, partition, offset, count, incarnation) = key_params(id);
                    let key: [&(dyn ToSql + Sync); 5] =
                        [&topic, &partition, &offset, &count, &incarnation];
                    tx.execute(RELEASE, &key).await?;
                    tx.execute(FORGET, &key).await?;
                }
                tx.commit().await
            };
            run.await.map_err(|e| classify(&e))
        })
        .await
    }

    async fn lookup(&self, records: &[RedriveKey]) -> Result<Vec<Option<Redriven>>, StoreError> {
        bounded(async {
            let client = self.pool.get().await.map_err(pool_error)?;
            let mut known = Vec::with_capacity(records.len());
            for id in records {
                known.push(lookup(&client, id).await.map_err(|e| classify(&e))?);
            }
            Ok(known)
        })
        .await
    }
}
