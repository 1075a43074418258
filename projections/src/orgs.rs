//! The organisations read model (projection `organizations`, table `organizations`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::events::OrganizationEvent;
use domain::ids::{OrgId, StreamId};
use domain::store::RecordedEvent;
use serde::Serialize;
use sqlx::AnyConnection;

use crate::db::ReadDb;
use crate::integrity;
use crate::page::QueryError;
use crate::runtime::{Projection, ProjectionError};
use crate::sqlval::{column, timestamp, to_i64};

const TABLE: &str = "organizations";

/// Maintains `organizations` from every `OrganizationEvent`; idempotent like
/// [`crate::keys::KeyListProjection`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OrganizationsProjection;

impl OrganizationsProjection {
    /// The projection's (and its checkpoint's) name.
    pub const NAME: &'static str = "organizations";
}

#[async_trait]
impl Projection for OrganizationsProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[TABLE]
    }

    fn handles(&self, event: &RecordedEvent) -> bool {
        matches!(
            StreamId::parse(&event.stream),
            Some(StreamId::Organization(_))
        )
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let Some(StreamId::Organization(org_id)) = StreamId::parse(&event.stream) else {
            return Ok(());
        };
        let id = org_id.to_string();
        // As in the key list: the chain first, replays skipped.
        let Some(marks) = integrity::check(conn, TABLE, &id, event).await? else {
            return Ok(());
        };
        let decoded =
            OrganizationEvent::from_recorded(event).map_err(|e| ProjectionError::Decode {
                position: event.position,
                reason: e.to_string(),
            })?;
        let version = to_i64(event.stream_version);
        match decoded {
            OrganizationEvent::OrganizationCreated(e) => {
                // The event has no clock of its own: the store's is the creation time.
                sqlx::query(
                    "INSERT INTO organizations (id, name, plan, created_at, version) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                )
                .bind(id.clone())
                .bind(e.name.as_str().to_owned())
                .bind(e.plan.as_str())
                .bind(timestamp(event.recorded_at))
                .bind(version)
                .execute(&mut *conn)
                .await?;
            }
            OrganizationEvent::PlanChanged(e) => {
                sqlx::query(
                    "UPDATE organizations SET plan = $1, version = $2 \
                     WHERE id = $3 AND version < $2",
                )
                .bind(e.plan.as_str())
                .bind(version)
                .bind(id.clone())
                .execute(&mut *conn)
                .await?;
            }
            OrganizationEvent::KeyIssued(_)
            | OrganizationEvent::ScopeDeclared(_)
            | OrganizationEvent::ScopeDeleted(_) => {
                // Only moves the stream version (the key itself is in `api_keys`; custom
                // scopes are read from the organisation's stream).
                sqlx::query("UPDATE organizations SET version = $1 WHERE id = $2 AND version < $1")
                    .bind(version)
                    .bind(id.clone())
                    .execute(&mut *conn)
                    .await?;
            }
        }
        integrity::write(conn, TABLE, &id, marks).await
    }
}

/// One organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgRow {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `starter`, `professional` or `enterprise`.
    pub plan: String,
    /// When it was created (RFC 3339 UTC, microseconds).
    pub created_at: String,
    /// The stream version of the last event applied.
    pub version: i64,
    /// `intact`, `broken` or `unverifiable`, as for keys ([`crate::keys::KeyRow`]).
    pub integrity: String,
}

/// Reads of the organisations.
#[derive(Debug, Clone)]
pub struct OrgQueries {
    /// The read-model database.
    pub db: ReadDb,
}

impl OrgQueries {
    /// Queries on `db`.
    pub fn new(db: ReadDb) -> Self {
        OrgQueries { db }
    }

    /// The organisation, if it exists.
    pub async fn get(&self, org: OrgId) -> Result<Option<OrgRow>, QueryError> {
        let row = sqlx::query(
            "SELECT id, name, plan, created_at, version, integrity FROM organizations \
             WHERE id = $1",
        )
        .bind(org.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|row| {
            Ok(OrgRow {
                id: column(&row, TABLE, "id")?,
                name: column(&row, TABLE, "name")?,
                plan: column(&row, TABLE, "plan")?,
                created_at: column(&row, TABLE, "created_at")?,
                version: column(&row, TABLE, "version")?,
                integrity: column(&row, TABLE, "integrity")?,
            })
        })
        .transpose()
    }

    /// Every organisation, oldest first, each with how many of its keys are active at
    /// `now` (not revoked, not expired: the rule of [`crate::keys::KeyQueries::list`]).
    /// For the operator's `orgs list`: not paged, an installation has few organisations.
    pub async fn list_with_active_keys(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<OrgSummary>, QueryError> {
        let rows = sqlx::query(
            "SELECT o.id, o.name, o.plan, o.created_at, o.version, o.integrity, \
             (SELECT count(*) FROM api_keys k WHERE k.org_id = o.id AND k.revoked_at IS NULL \
              AND (k.expires_at IS NULL OR k.expires_at > $1)) AS active_keys \
             FROM organizations o ORDER BY o.created_at, o.id",
        )
        .bind(timestamp(now))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OrgSummary {
                    org: OrgRow {
                        id: column(row, TABLE, "id")?,
                        name: column(row, TABLE, "name")?,
                        plan: column(row, TABLE, "plan")?,
                        created_at: column(row, TABLE, "created_at")?,
                        version: column(row, TABLE, "version")?,
                        integrity: column(row, TABLE, "integrity")?,
                    },
                    active_keys: column(row, TABLE, "active_keys")?,
                })
            })
            .collect()
    }
}

/// An organisation and its number of active keys ([`OrgQueries::list_with_active_keys`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgSummary {
    /// The organisation.
    #[serde(flatten)]
    pub org: OrgRow,
    /// Its keys neither revoked nor expired.
    pub active_keys: i64,
}
