//! What the recruiter console keeps (migration 7): its accounts (`console_users`, argon2 PHC
//! strings, never passwords) and its sign-in sessions (`console_sessions`, keyed by a SHA-256
//! digest of the cookie's token, so a copy of the database opens no session), plus the reads
//! its pages need beyond the API's: the calls list filtered by job, today's counts by outcome
//! and the job titles to filter by.

use serde::Serialize;

use crate::calls::{CALL_COLUMNS, CALLS_WITH_SCREENING, CallRow};
use crate::{CallRecord, Store, StoreError, on_reader, on_writer};

/// Migration 7's tables (the same SQL on both backends).
pub(crate) const V7: &str = r"
CREATE TABLE IF NOT EXISTS console_users (
    email TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS console_sessions (
    token_hash TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sessions_expires ON console_sessions (expires_at);
CREATE INDEX IF NOT EXISTS screenings_job_title ON screenings (job_title, created_at);
";

/// A signed-in console session.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConsoleSession {
    /// SHA-256 (hex) of the cookie's token.
    pub token_hash: String,
    /// Who signed in: a user's e-mail, or `admin (API token)`.
    pub subject: String,
    /// The token every form of this session must carry.
    pub csrf_token: String,
    /// Signed in at (Unix ms).
    pub created_at: i64,
    /// Invalid from (Unix ms).
    pub expires_at: i64,
}

/// Filter and page for [`Store::console_calls`]: the API's call filters plus the job title.
#[derive(Debug, Clone, Default)]
pub struct ConsoleCallFilter {
    /// Only calls whose screening is in this state.
    pub state: Option<String>,
    /// Only calls whose screening has this outcome.
    pub outcome: Option<String>,
    /// Only calls whose screening is for this job title.
    pub job_title: Option<String>,
    /// Created at or after (Unix ms).
    pub since_ms: Option<i64>,
    /// Created before (Unix ms).
    pub until_ms: Option<i64>,
    /// Page size.
    pub limit: i64,
    /// Rows to skip.
    pub offset: i64,
}

/// A call as the console lists it: the call and who its screening was for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleCall {
    /// The call (with its screening's state and outcome).
    #[serde(flatten)]
    pub call: CallRecord,
    /// The screening's id, for screening calls.
    pub screening_id: Option<i64>,
    /// The candidate's first name.
    pub first_name: Option<String>,
    /// The job the screening is for.
    pub job_title: Option<String>,
}

/// A [`ConsoleCall`] row: [`CallRow`]'s columns and the screening's own.
#[derive(sqlx::FromRow)]
struct ConsoleCallRow {
    #[sqlx(flatten)]
    call: CallRow,
    screening_id: Option<i64>,
    first_name: Option<String>,
    job_title: Option<String>,
}

impl From<ConsoleCallRow> for ConsoleCall {
    fn from(row: ConsoleCallRow) -> Self {
        Self {
            call: CallRecord::from(row.call),
            screening_id: row.screening_id,
            first_name: row.first_name,
            job_title: row.job_title,
        }
    }
}

impl Store {
    /// Creates the console account `email` with `password_hash` (a PHC string), or replaces the
    /// hash of an existing one. Returns true when the account is new.
    pub async fn put_console_user(
        &self,
        email: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        on_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let existed: i64 =
                sqlx::query_scalar("SELECT COUNT(*) AS n FROM console_users WHERE email = $1")
                    .bind(email)
                    .fetch_one(&mut *tx)
                    .await?;
            sqlx::query(
                "INSERT INTO console_users (email, password_hash, created_at, updated_at) \
                 VALUES ($1, $2, $3, $3) ON CONFLICT (email) DO UPDATE SET \
                 password_hash = excluded.password_hash, updated_at = excluded.updated_at",
            )
            .bind(email)
            .bind(password_hash)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(existed == 0)
        })
    }

    /// The password hash of console account `email`, if there is one.
    pub async fn console_password_hash(&self, email: &str) -> Result<Option<String>, StoreError> {
        on_reader!(self, pool => {
            Ok(sqlx::query_scalar("SELECT password_hash FROM console_users WHERE email = $1")
                .bind(email)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// Records a new session; expired ones are deleted in the same transaction.
    pub async fn insert_console_session(&self, session: &ConsoleSession) -> Result<(), StoreError> {
        on_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
                .bind(session.created_at)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO console_sessions (token_hash, subject, csrf_token, created_at, \
                 expires_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&session.token_hash)
            .bind(&session.subject)
            .bind(&session.csrf_token)
            .bind(session.created_at)
            .bind(session.expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The session whose token hashes to `token_hash`, unless it has expired by `now_ms`.
    pub async fn console_session(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<ConsoleSession>, StoreError> {
        on_reader!(self, pool => {
            Ok(sqlx::query_as(
                "SELECT token_hash, subject, csrf_token, created_at, expires_at \
                 FROM console_sessions WHERE token_hash = $1 AND expires_at > $2",
            )
            .bind(token_hash)
            .bind(now_ms)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Ends a session (signing out). Returns false if there was none.
    pub async fn delete_console_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        on_writer!(self, pool => {
            Ok(sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1")
                .bind(token_hash)
                .execute(pool)
                .await?
                .rows_affected()
                > 0)
        })
    }

    /// Calls, newest first, filtered (the job title included) and paged, with their
    /// screening's candidate and job. Returns the page and the total matching.
    pub async fn console_calls(
        &self,
        filter: &ConsoleCallFilter,
    ) -> Result<(Vec<ConsoleCall>, i64), StoreError> {
        let condition = "($1 IS NULL OR s.state = $1) AND ($2 IS NULL OR s.outcome = $2) \
            AND ($3 IS NULL OR s.job_title = $3) AND ($4 IS NULL OR c.created_at >= $4) \
            AND ($5 IS NULL OR c.created_at < $5)";
        let page_sql = format!(
            "SELECT {CALL_COLUMNS}, s.id AS screening_id, s.first_name, s.job_title \
             FROM {CALLS_WITH_SCREENING} WHERE {condition} \
             ORDER BY c.created_at DESC, c.call_sid LIMIT $6 OFFSET $7"
        );
        let count_sql =
            format!("SELECT COUNT(*) AS n FROM {CALLS_WITH_SCREENING} WHERE {condition}");
        let (rows, total): (Vec<ConsoleCallRow>, i64) = on_reader!(self, pool => {
            let rows = sqlx::query_as(&page_sql)
                .bind(&filter.state)
                .bind(&filter.outcome)
                .bind(&filter.job_title)
                .bind(filter.since_ms)
                .bind(filter.until_ms)
                .bind(filter.limit)
                .bind(filter.offset)
                .fetch_all(pool)
                .await?;
            let total = sqlx::query_scalar(&count_sql)
                .bind(&filter.state)
                .bind(&filter.outcome)
                .bind(&filter.job_title)
                .bind(filter.since_ms)
                .bind(filter.until_ms)
                .fetch_one(pool)
                .await?;
            (rows, total)
        });
        Ok((rows.into_iter().map(ConsoleCall::from).collect(), total))
    }

    /// One call as [`Store::console_calls`] lists it.
    pub async fn console_call(&self, call_sid: &str) -> Result<Option<ConsoleCall>, StoreError> {
        let sql = format!(
            "SELECT {CALL_COLUMNS}, s.id AS screening_id, s.first_name, s.job_title \
             FROM {CALLS_WITH_SCREENING} WHERE c.call_sid = $1"
        );
        let row: Option<ConsoleCallRow> = on_reader!(self, pool => {
            sqlx::query_as(&sql).bind(call_sid).fetch_optional(pool).await?
        });
        Ok(row.map(ConsoleCall::from))
    }

    /// How many screenings requested in `[since_ms, until_ms)` ended with each outcome
    /// (`None`: no outcome yet), most frequent first.
    pub async fn outcome_counts(
        &self,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<(Option<String>, i64)>, StoreError> {
        on_reader!(self, pool => {
            Ok(sqlx::query_as(
                "SELECT outcome, COUNT(*) AS n FROM screenings \
                 WHERE created_at >= $1 AND created_at < $2 \
                 GROUP BY outcome ORDER BY n DESC, outcome",
            )
            .bind(since_ms)
            .bind(until_ms)
            .fetch_all(pool)
            .await?)
        })
    }

    /// The job titles screenings were requested for, alphabetically (for the console's filter).
    pub async fn job_titles(&self) -> Result<Vec<String>, StoreError> {
        on_reader!(self, pool => {
            Ok(sqlx::query_scalar(
                "SELECT DISTINCT job_title FROM screenings ORDER BY job_title LIMIT 500",
            )
            .fetch_all(pool)
            .await?)
        })
    }
}
