//! Rows to domain values: a log entry's columns (one list, [`COLUMNS`], for every query that
//! reads entries), a room head, a read state, and how a [`Seq`] and an [`Epoch`] travel as
//! `bigint` and `text`.

use std::sync::LazyLock;

use tokio_postgres::Row;

use super::super::{Kind, Message, ReactOp, ReadState, RoomHead, StoreError};
use crate::ids::{Epoch, RoomId, Seq, UserId};

/// A log entry's columns, in the order [`to_message`] reads them.
const NAMES: [&str; 13] = [
    "seq",
    "id",
    "user_id",
    "user_name",
    "body",
    "ts",
    "client_msg_id",
    "kind",
    "target",
    "react_key",
    "react_op",
    "edited_ts",
    "deleted_seq",
];

/// [`NAMES`] as a select list.
pub static COLUMNS: LazyLock<String> = LazyLock::new(|| NAMES.join(", "));

/// [`NAMES`] of the table aliased `m`.
pub static M_COLUMNS: LazyLock<String> =
    LazyLock::new(|| NAMES.map(|n| format!("m.{n}")).join(", "));

/// A column read as the store's error.
pub fn get(e: tokio_postgres::Error) -> StoreError {
    StoreError::Internal(e.to_string())
}

pub fn to_read_state(row: &Row) -> Result<ReadState, StoreError> {
    Ok(ReadState {
        read_seq: row.try_get(0).map_err(get)?,
        unread: row.try_get(1).map_err(get)?,
        last_seq: row.try_get(2).map_err(get)?,
    })
}

/// Reads a room head from a row of (epoch, last_seq).
pub fn to_head(row: &Row) -> Result<RoomHead, StoreError> {
    Ok(RoomHead {
        epoch: row.try_get(0).map_err(get)?,
        last_seq: row.try_get(1).map_err(get)?,
    })
}

/// A seq is a `bigint` in Postgres (the only place it is not a [`Seq`]).
impl tokio_postgres::types::ToSql for Seq {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.get().to_sql(ty, out)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <i64 as tokio_postgres::types::ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

impl<'a> tokio_postgres::types::FromSql<'a> for Seq {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Seq, Box<dyn std::error::Error + Sync + Send>> {
        i64::from_sql(ty, raw).map(Seq::new)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <i64 as tokio_postgres::types::FromSql>::accepts(ty)
    }
}

/// An epoch is `text` in Postgres.
impl tokio_postgres::types::ToSql for Epoch {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.as_str().to_sql(ty, out)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <&str as tokio_postgres::types::ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

impl<'a> tokio_postgres::types::FromSql<'a> for Epoch {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Epoch, Box<dyn std::error::Error + Sync + Send>> {
        <&str>::from_sql(ty, raw).map(Epoch::from)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <&str as tokio_postgres::types::FromSql>::accepts(ty)
    }
}

/// Reads an entry from `row`, whose columns (in `COLUMNS` order) start at `at`.
pub fn to_message(room: &RoomId, row: &Row, at: usize) -> Result<Message, StoreError> {
    let kind: String = row.try_get(at + 7).map_err(get)?;
    let op: Option<String> = row.try_get(at + 10).map_err(get)?;
    let deleted_seq: Option<Seq> = row.try_get(at + 12).map_err(get)?;
    Ok(Message {
        kind: Kind::parse(&kind)
            .ok_or_else(|| StoreError::Internal(format!("unknown entry kind {kind:?}")))?,
        room: room.clone(),
        seq: row.try_get(at).map_err(get)?,
        id: row.try_get(at + 1).map_err(get)?,
        user: UserId::from(row.try_get::<_, String>(at + 2).map_err(get)?),
        name: row.try_get(at + 3).map_err(get)?,
        body: row.try_get(at + 4).map_err(get)?,
        ts: row.try_get(at + 5).map_err(get)?,
        client_msg_id: row.try_get(at + 6).map_err(get)?,
        target: row.try_get(at + 8).map_err(get)?,
        key: row.try_get(at + 9).map_err(get)?,
        op: op.as_deref().and_then(ReactOp::parse),
        edited_ts: row.try_get(at + 11).map_err(get)?,
        deleted: deleted_seq.is_some(),
        reactions: Vec::new(),
    })
}
