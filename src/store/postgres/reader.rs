//! The reader: the reads the store prepares on every connection (by index) and the reader
//! thread's connection, re-opened when it is found closed.

use std::sync::Arc;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Row, Statement};

use super::schema::*;
use super::{connect, connection_lost, Param};

/// Reads the reader prepares on every connection, by index.
#[derive(Clone, Copy, Debug)]
pub(super) enum R {
    InteractionsAscending,
    InteractionsDescending,
    Interaction,
    CallInteraction,
    QueuedMessages,
    OutboundAfter,
    OutboundCount,
    CallbacksAfter,
    CallbacksBefore,
    RemoteRef,
    Recording,
}

pub(super) const READS: &[R] = &[
    R::InteractionsAscending,
    R::InteractionsDescending,
    R::Interaction,
    R::CallInteraction,
    R::QueuedMessages,
    R::OutboundAfter,
    R::OutboundCount,
    R::CallbacksAfter,
    R::CallbacksBefore,
    R::RemoteRef,
    R::Recording,
];

/// The reads, for node `node`: the SMS queue it reads back is the messages it holds, and
/// the API messages it takes up at start those it created (its id in their stamps).
fn read_sql(r: R, node: u16) -> String {
    let interactions = select("interactions", INTERACTIONS);
    let page = "WHERE session_sid = $1 AND ($2::text IS NULL OR message_participant = $2)
                AND seq > $3 AND seq < $4";
    match r {
        R::InteractionsAscending => format!("{interactions} {page} ORDER BY seq LIMIT $5"),
        R::InteractionsDescending => format!("{interactions} {page} ORDER BY seq DESC LIMIT $5"),
        R::Interaction => format!("{interactions} WHERE sid = $1"),
        R::CallInteraction => format!(
            "({interactions} WHERE type = 'voice' AND in_resource_sid = $1)
             UNION ALL ({interactions} WHERE type = 'voice' AND out_resource_sid = $1) LIMIT 1"
        ),
        R::QueuedMessages => format!(
            "{interactions} i WHERE out_status = 'queued' AND message_participant IS NOT NULL
             AND (seq & {mask}) = {node}
             AND NOT EXISTS (SELECT 1 FROM outbound o WHERE o.interaction_sid = i.sid)
             ORDER BY seq",
            mask = (1u32 << crate::core::engine::NODE_BITS) - 1
        ),
        R::OutboundAfter => format!(
            "{} WHERE id > $1 AND owner = {node} ORDER BY id LIMIT $2",
            select("outbound", OUTBOUND)
        ),
        R::OutboundCount => format!("SELECT COUNT(*) FROM outbound WHERE owner = {node}"),
        // The callbacks this node sends: the ones it made, and the ones it claimed from a
        // node gone silent. Each goes out once, from its owner.
        R::CallbacksAfter => format!(
            "{} WHERE id > $1 AND {OWNER} = {node} ORDER BY id LIMIT $2",
            select("callbacks", CALLBACKS),
        ),
        // Whether `$1` is still this node's to send, and the callbacks of its interaction the
        // store took before it, oldest first, with whether this node sends each (NULLs when
        // there are none); no row when `$1` is not in the store.
        R::CallbacksBefore => format!(
            "SELECT COALESCE(me.owner, (me.id & 1023)::int) = {node}, c.id,
                    COALESCE(c.owner, (c.id & 1023)::int) = {node}
             FROM callbacks me
             LEFT JOIN callbacks c ON c.interaction_sid = me.interaction_sid AND c.pos < me.pos
             WHERE me.id = $1 ORDER BY c.pos"
        ),
        R::RemoteRef => format!(
            "{} WHERE peer = $1 AND remote_id = $2",
            select("remote_refs", REMOTE_REFS)
        ),
        R::Recording => format!("{} WHERE sid = $1", select("recordings", RECORDINGS)),
    }
}

/// What to run: a prepared read, or text (built per call, e.g. the recordings filter).
pub(super) enum Sql {
    Prepared(R),
    Text(String),
}

pub(super) struct ReadConn {
    pub(super) client: Client,
    pub(super) prepared: Vec<Statement>,
}

/// The reader thread's runtime and its connection.
pub(super) struct Reader {
    pub(super) handle: tokio::runtime::Handle,
    pub(super) node: u16,
    pub(super) config: Config,
    pub(super) conn: tokio::sync::Mutex<Option<Arc<ReadConn>>>,
}

impl Reader {
    pub(super) async fn connection(&self) -> Result<Arc<ReadConn>, tokio_postgres::Error> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.client.is_closed()) {
            return Ok(c.clone());
        }
        let client = connect(&self.config).await?;
        let mut prepared = Vec::with_capacity(READS.len());
        for r in READS {
            prepared.push(client.prepare(&read_sql(*r, self.node)).await?);
        }
        let c = Arc::new(ReadConn { client, prepared });
        *slot = Some(c.clone());
        Ok(c)
    }

    pub(super) async fn query(
        &self,
        sql: &Sql,
        params: &[Param],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        // A connection found closed is re-opened once for this read.
        let mut tries = 0;
        loop {
            tries += 1;
            let c = self.connection().await?;
            let result = match sql {
                Sql::Prepared(r) => c.client.query(&c.prepared[*r as usize], &refs).await,
                Sql::Text(text) => c.client.query(text.as_str(), &refs).await,
            };
            match result {
                Err(e) if (c.client.is_closed() || connection_lost(&e)) && tries < 2 => {
                    *self.conn.lock().await = None;
                    continue;
                }
                other => return other,
            }
        }
    }
}
