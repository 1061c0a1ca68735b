//! Waiting for replication: a replica streaming from its primary, and a replica that has
//! replayed everything its primary has written.

use std::time::{Duration, Instant};

use crate::{Endpoint, Error};

/// Waits until `replica` has replayed everything `primary` has written so far.
pub(crate) async fn sync_replica(primary: &Endpoint, replica: &Endpoint) -> Result<(), Error> {
    let p = primary.connect("postgres").await?;
    let lsn: String = p
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .map_err(|e| Error::sql("reading pg_current_wal_insert_lsn()", e))?
        .get(0);
    let r = replica.connect("postgres").await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let caught_up: bool = r
            .query_one(
                "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)",
                &[&lsn],
            )
            .await
            .map_err(|e| Error::sql("reading pg_last_wal_replay_lsn()", e))?
            .get(0);
        if caught_up {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: format!("the replica to replay up to {lsn}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `replicas` replicas stream from `primary`.
pub(crate) fn wait_streaming(primary: &Endpoint, replicas: usize) -> Result<(), Error> {
    let uri = primary.uri("postgres");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = crate::block_on(async {
            let (client, conn) = tokio_postgres::connect(&uri, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            let row = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
                    &[],
                )
                .await?;
            Ok::<i64, tokio_postgres::Error>(row.get(0))
        })?
        .map_err(|e| Error::sql("checking pg_stat_replication", e))?;
        if n >= replicas as i64 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: "replica to start streaming (pg_stat_replication)".into(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
