//! Durable records for voxbridge: calls and their status timeline, screenings (answers,
//! outcome), transcripts, the voice pipeline's per-turn latencies, rate-limit decisions, SMS
//! consent and the SMS/WhatsApp message queue.
//!
//! One [`Store`] over either an SQLite file (the embedded default, WAL mode) or PostgreSQL
//! (`database_url = "postgres://..."`), chosen by [`StoreConfig::database_url`]. Both run the
//! same SQL (runtime queries with `$N` placeholders, which SQLite accepts too); migrations run
//! in [`Store::connect`]. Times are Unix milliseconds passed in by the caller, so nothing here
//! reads a clock.
//!
//! Durability: every `record_*` call returns only after its transaction committed. SQLite runs
//! with `journal_mode=WAL` and `synchronous=NORMAL`, which survives a killed process (`kill
//! -9`); only a power loss can drop the last commits. Set `sqlite_synchronous_full = true` to
//! survive that too, at some write throughput.
//!
//! SQLite writes go through a single-connection pool, so writers queue in the pool instead of
//! spinning on `SQLITE_BUSY`; reads use their own pool.
//!
//! One module per aggregate: [`CallRecord`] and its read side (`calls`), the webhook event
//! log and timeline (`events`), call progress and AMD (`call_status`), recordings, relay
//! sessions, screenings, transcripts, finished screening conversations (`sessions`) and Media
//! Streams calls (`media_calls`), rate-limit decisions and SMS consent.
//!
//! Rows are read with `sqlx::query_as` into a private `#[derive(sqlx::FromRow)]` struct per
//! query shape (one field per selected column, named and typed as the column is on both
//! backends), then converted into the public record with `From`, or `TryFrom` where a column
//! holds JSON text. Flags are `BIGINT` 0/1 in the schema and read as `i64`: PostgreSQL does not
//! decode `BIGINT` as `bool` (SQLite would, which is why the tests run on both). A single
//! value (`COUNT(*)`, `RETURNING id`) is read with `sqlx::query_scalar`.

mod call_status;
mod calls;
mod console;
mod events;
mod inbound_calls;
mod json_shape;
mod media_calls;
mod messages;
mod order;
mod outreach;
mod rate_limits;
mod recordings;
mod relay;
mod schema;
mod screening_state;
mod screenings;
mod sessions;
mod sms_consent;
mod transcripts;
mod webhook_outbox;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use voxbridge_config::SecretUrl;

pub use call_status::{AmdEvent, CallStatusEvent};
pub use calls::{CallDetail, CallFilter, CallRecord};
pub use console::{ConsoleCall, ConsoleCallFilter, ConsoleSession};
pub use events::{CallEvent, EventOutcome};
pub use inbound_calls::{InboundClaim, InboundDecision};
pub use json_shape::rfc3339;
pub use media_calls::{MediaCallEnd, TurnLatencyRecord};
pub use messages::{MessageRecord, MessageStats, MessageThread, NewMessage, message_status_rank};
pub use order::{StatusPoint, is_terminal, status_rank, supersedes};
pub use outreach::{CAMPAIGN_SKIP_REASONS, CampaignProgress, CampaignRecord, NewCampaign};
pub use rate_limits::RateLimitDecision;
pub use recordings::RecordingEvent;
pub use relay::RelaySessionEvent;
pub use screening_state::{CALL_STATUSES, SCREENING_OUTCOMES, SCREENING_STATES};
pub use screenings::{
    IdempotencyKey, KeyedInsert, NewScreening, Outreach, ScreeningAttempt, ScreeningFilter,
    ScreeningIntent, ScreeningRecord,
};
pub use sessions::ScreeningSession;
pub use sms_consent::ConsentEvent;
pub use transcripts::TranscriptLine;
pub use webhook_outbox::{
    AttemptRecord, AttemptResult, ClaimRequest, ClaimedDelivery, SCREENING_ENDED_EVENT,
    ScreeningCallback, WEBHOOK_DELIVERY_STATES, WebhookDelivery,
};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `database_url` is neither `sqlite:` nor `postgres://`.
    #[error(
        "store.database_url must start with sqlite: or postgres:// (e.g. \"sqlite://data/voxbridge.db\"), got {0:?}"
    )]
    UnsupportedUrl(String),
    /// The database rejected a query or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The directory for the SQLite file could not be created.
    #[error("cannot create the directory for the SQLite file {path}: {source}")]
    CreateDir {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A stored JSON column could not be read.
    #[error("stored JSON in {column} is invalid: {source}")]
    Json {
        /// Which column.
        column: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Parses a column that holds JSON as text; an invalid value is a [`StoreError::Json`] naming
/// the column.
pub(crate) fn json_column(
    text: &str,
    column: &'static str,
) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Json { column, source })
}

/// `[store]` configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://path/to/file.db` (created if missing, WAL mode) or
    /// `postgres://user:pass@host:port/db`. Default `sqlite://data/voxbridge.db`. Shown with
    /// the password masked.
    pub database_url: SecretUrl,
    /// Most connections in the (read) pool. Default 8. SQLite writes always use one connection.
    pub max_connections: u32,
    /// How long to wait for a pooled connection. Key `acquire_timeout_ms`, default 5000.
    #[serde(rename = "acquire_timeout_ms", with = "voxbridge_config::millis")]
    pub acquire_timeout: Duration,
    /// SQLite only: `synchronous=FULL` instead of `NORMAL` (survives power loss, not just a
    /// killed process). Default false.
    pub sqlite_synchronous_full: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            database_url: "sqlite://data/voxbridge.db".into(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            sqlite_synchronous_full: false,
        }
    }
}

pub use voxbridge_config::redact_url;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

#[derive(Debug, Clone)]
enum Pools {
    Sqlite { write: SqlitePool, read: SqlitePool },
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the writing pool of whichever backend is configured.
macro_rules! on_writer {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pools {
            $crate::Pools::Sqlite { write: $pool, .. } => $body,
            $crate::Pools::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` with `$pool` bound to the reading pool.
macro_rules! on_reader {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pools {
            $crate::Pools::Sqlite { read: $pool, .. } => $body,
            $crate::Pools::Postgres($pool) => $body,
        }
    };
}
pub(crate) use {on_reader, on_writer};

/// The durable store. Cheap to clone (pools are shared).
#[derive(Debug, Clone)]
pub struct Store {
    pools: Pools,
}

impl Store {
    /// Connects (creating the SQLite file and its directory if needed) and runs migrations.
    ///
    /// Several processes opening one fresh SQLite file together (`serve` and `api`) can get
    /// `SQLITE_BUSY` straight away, without SQLite's busy handler waiting: switching the file to
    /// WAL and the first reads of a new WAL take locks that SQLite refuses at once rather than
    /// risk a deadlock. Such a start is retried (pools closed, after a short pause) for up to
    /// the busy timeout; any other error is returned at once.
    pub async fn connect(config: &StoreConfig) -> Result<Self, StoreError> {
        let deadline = std::time::Instant::now() + SQLITE_BUSY_TIMEOUT;
        let mut pause = Duration::from_millis(10);
        loop {
            match Self::connect_once(config).await {
                Err(e) if e.is_sqlite_busy() && std::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "store busy at start; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                result => return result,
            }
        }
    }

    async fn connect_once(config: &StoreConfig) -> Result<Self, StoreError> {
        let url = config.database_url.expose();
        let acquire = config.acquire_timeout.max(Duration::from_millis(1));
        let max = config.max_connections.max(1);
        let pools = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(if config.sqlite_synchronous_full {
                    SqliteSynchronous::Full
                } else {
                    SqliteSynchronous::Normal
                })
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true);
            if let Some(dir) = Path::new(options.get_filename()).parent()
                && !dir.as_os_str().is_empty()
                && !dir.exists()
            {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(acquire)
                .connect_with(options.clone())
                .await?;
            let read = SqlitePoolOptions::new()
                .max_connections(max)
                .acquire_timeout(acquire)
                .connect_with(options)
                .await?;
            Pools::Sqlite { write, read }
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)?;
            Pools::Postgres(
                PgPoolOptions::new()
                    .max_connections(max)
                    .acquire_timeout(acquire)
                    .connect_with(options)
                    .await?,
            )
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        let store = Self { pools };
        if let Err(e) = store.migrate().await {
            store.close().await;
            return Err(e);
        }
        Ok(store)
    }

    /// Which backend this store uses.
    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Sqlite { .. } => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    /// Closes every connection (waits for in-flight queries).
    pub async fn close(&self) {
        match &self.pools {
            Pools::Sqlite { write, read } => {
                write.close().await;
                read.close().await;
            }
            Pools::Postgres(pool) => pool.close().await,
        }
    }

    /// Whether the database answers a trivial query (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_reader!(self, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Applies every migration not yet recorded, in one transaction under a lock, so instances
    /// starting together (`serve` and `api` on one SQLite file, a fleet on one PostgreSQL)
    /// migrate the schema exactly once: the first holds the lock and applies the steps, the
    /// others wait for it, then find every version recorded. SQLite takes its write lock at
    /// `BEGIN IMMEDIATE` (waiting up to the busy timeout); PostgreSQL takes the transaction-scoped
    /// advisory lock [`MIGRATION_LOCK`]. Idempotent; a failed step rolls every step back.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let applied = match &self.pools {
            Pools::Sqlite { write, .. } => {
                let mut tx = write.begin_with("BEGIN IMMEDIATE").await?;
                let applied = apply_pending(&mut tx, Backend::Sqlite).await?;
                tx.commit().await?;
                applied
            }
            Pools::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(MIGRATION_LOCK)
                    .execute(&mut *tx)
                    .await?;
                let applied = apply_pending(&mut tx, Backend::Postgres).await?;
                tx.commit().await?;
                applied
            }
        };
        for version in applied {
            tracing::info!(version, "store migration applied");
        }
        Ok(())
    }

    /// The applied migration versions, ascending.
    pub async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
        on_reader!(self, pool => {
            Ok(sqlx::query_scalar("SELECT version FROM voxbridge_migrations ORDER BY version")
                .fetch_all(pool)
                .await?)
        })
    }
}

/// How long an SQLite writer waits for another's lock (the busy handler), and how long
/// [`Store::connect`] retries a start that SQLite refused with `SQLITE_BUSY`.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

impl StoreError {
    /// SQLite's `SQLITE_BUSY` (`database is locked`, any extended code).
    fn is_sqlite_busy(&self) -> bool {
        let Self::Database(sqlx::Error::Database(e)) = self else {
            return false;
        };
        // Extended codes keep the primary code in the low byte (SQLITE_BUSY_SNAPSHOT = 517).
        e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
            && e.code()
                .and_then(|code| code.parse::<i32>().ok())
                .is_some_and(|code| code & 0xff == 5)
    }
}

/// The PostgreSQL advisory lock key held while migrating ("voxbridg" in ASCII).
pub const MIGRATION_LOCK: i64 = 0x766f_7862_7269_6467;

/// Inside the caller's locked transaction: creates the version table, reads which versions are
/// recorded, applies the rest in order and records them. Returns the versions it applied.
async fn apply_pending<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    backend: Backend,
) -> Result<Vec<i64>, StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Decode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    sqlx::raw_sql(schema::MIGRATIONS_TABLE)
        .execute(&mut **tx)
        .await?;
    let recorded: Vec<i64> = sqlx::query_scalar("SELECT version FROM voxbridge_migrations")
        .fetch_all(&mut **tx)
        .await?;
    let mut applied = Vec::new();
    for migration in schema::migrations() {
        if recorded.contains(&migration.version) {
            continue;
        }
        let sql = match backend {
            Backend::Sqlite => migration.sqlite,
            Backend::Postgres => migration.postgres,
        };
        sqlx::raw_sql(sql).execute(&mut **tx).await?;
        sqlx::query(
            "INSERT INTO voxbridge_migrations (version, description, applied_at) \
             VALUES ($1, $2, 0)",
        )
        .bind(migration.version)
        .bind(migration.description)
        .execute(&mut **tx)
        .await?;
        applied.push(migration.version);
    }
    Ok(applied)
}
