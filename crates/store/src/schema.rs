//! Schema migrations, written once per backend because the two dialects differ only in how a
//! row id is generated. `Store::migrate` applies the pending ones in one transaction under a lock
//! (SQLite `BEGIN IMMEDIATE`, a PostgreSQL advisory lock) and records each version in
//! `voxbridge_migrations`, so instances starting together migrate once. A step that cannot be
//! written idempotently (SQLite has no `ADD COLUMN IF NOT EXISTS`) relies on that lock.

/// One schema step: its version, a description, and the SQL for each backend.
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) description: &'static str,
    pub(crate) sqlite: &'static str,
    pub(crate) postgres: &'static str,
}

/// Tables shared by both dialects; `{ID}` is replaced with the backend's row-id column.
const V1: &str = r"
CREATE TABLE IF NOT EXISTS calls (
    call_sid TEXT PRIMARY KEY,
    direction TEXT,
    from_number TEXT,
    to_number TEXT,
    candidate_id TEXT,
    screening TEXT,
    status TEXT,
    status_rank BIGINT NOT NULL DEFAULT 0,
    status_terminal BIGINT NOT NULL DEFAULT 0,
    status_seq BIGINT,
    status_ts BIGINT,
    duration_seconds BIGINT,
    answered_by TEXT,
    amd_duration_ms BIGINT,
    recording_sid TEXT,
    recording_url TEXT,
    recording_status TEXT,
    recording_duration_seconds BIGINT,
    relay_session_status TEXT,
    handoff_data TEXT,
    summary TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_created_at ON calls (created_at);
CREATE INDEX IF NOT EXISTS calls_candidate ON calls (candidate_id, created_at);
CREATE INDEX IF NOT EXISTS calls_status ON calls (status, created_at);

CREATE TABLE IF NOT EXISTS call_events (
    id {ID},
    call_sid TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT,
    sequence_number BIGINT,
    event_ts BIGINT,
    received_at BIGINT NOT NULL,
    dedupe_key TEXT NOT NULL UNIQUE,
    params TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS call_events_call ON call_events (call_sid, id);

CREATE TABLE IF NOT EXISTS screenings (
    id {ID},
    call_sid TEXT UNIQUE,
    candidate_id TEXT NOT NULL,
    first_name TEXT NOT NULL,
    phone TEXT NOT NULL,
    job_title TEXT NOT NULL,
    screening TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    answers TEXT,
    outcome TEXT,
    summary TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS screenings_candidate ON screenings (candidate_id, created_at);

CREATE TABLE IF NOT EXISTS transcripts (
    id {ID},
    call_sid TEXT NOT NULL,
    role TEXT NOT NULL,
    text TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS transcripts_call ON transcripts (call_sid, id);

CREATE TABLE IF NOT EXISTS rate_limit_decisions (
    id {ID},
    number TEXT NOT NULL,
    allowed BIGINT NOT NULL,
    recent_count BIGINT NOT NULL,
    decided_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_limit_decisions_number ON rate_limit_decisions (number, decided_at);

CREATE TABLE IF NOT EXISTS sms_consent (
    number TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    keyword TEXT,
    updated_at BIGINT NOT NULL
);
";

/// Migration 3: the latency breakdown of each voice pipeline turn (`{ID}` as in [`V1`]).
/// Durations in microseconds, `NULL` where the turn never got that far.
const V3: &str = r"
CREATE TABLE IF NOT EXISTS turn_latencies (
    id {ID},
    call_sid TEXT NOT NULL,
    turn_index BIGINT NOT NULL,
    bot_turn BIGINT,
    speech_ended_at_ms BIGINT NOT NULL,
    hangover_ms BIGINT NOT NULL,
    asr_us BIGINT,
    dialog_first_text_us BIGINT,
    first_sentence_us BIGINT,
    tts_first_byte_us BIGINT,
    first_frame_us BIGINT,
    total_us BIGINT,
    retries BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    failed_stage TEXT,
    recorded_at BIGINT NOT NULL,
    UNIQUE (call_sid, turn_index)
);
";

/// Migration 4: one row per inbound `CallSid` (its rate-limit decision and the TwiML answered, so
/// Twilio's retries of one call count once and get the same answer), and the intent recorded
/// before a screening call is placed (what start-up reconciliation matches Twilio's calls
/// against after a crash between Twilio's answer and our commit). Both idempotent.
const V4: &str = r"
CREATE TABLE IF NOT EXISTS inbound_calls (
    call_sid TEXT PRIMARY KEY,
    caller_key TEXT NOT NULL,
    decision TEXT,
    recent_count BIGINT,
    twiml TEXT,
    claimed_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    decided_at BIGINT
);
CREATE INDEX IF NOT EXISTS inbound_calls_created_at ON inbound_calls (created_at);

CREATE TABLE IF NOT EXISTS screening_intents (
    screening_id BIGINT PRIMARY KEY REFERENCES screenings (id),
    to_number TEXT NOT NULL,
    from_number TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    resolved_at BIGINT,
    resolution TEXT
);
CREATE INDEX IF NOT EXISTS screening_intents_open ON screening_intents (resolved_at, created_at);
";

/// Migration 5: the `Idempotency-Key` of each keyed `POST /api/screenings`, with a digest of the
/// request it came with, so a retry (even after a restart, on any instance) finds the screening
/// the first request created instead of placing a second call. The primary key is what makes
/// concurrent requests with one key create one screening. Idempotent.
const V5: &str = r"
CREATE TABLE IF NOT EXISTS screening_idempotency_keys (
    idempotency_key TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    screening_id BIGINT NOT NULL REFERENCES screenings (id),
    created_at BIGINT NOT NULL
);
";

/// Migration 6: the screening state machine (`crate::screening_state`). Renames the states of
/// the create path (`initiated` -> `calling`, `create_failed` -> `failed`, `create_unknown` ->
/// `requested`, its error kept), derives the state of every linked screening from its call and
/// stores machine-answered `no_answer` outcomes as `voicemail`; indexes for the state and
/// outcome filters. Idempotent.
const V6: &str = concat!(
    "UPDATE screenings SET state = 'calling' WHERE state = 'initiated';\n",
    "UPDATE screenings SET state = 'failed' WHERE state = 'create_failed';\n",
    "UPDATE screenings SET state = 'requested' WHERE state = 'create_unknown';\n",
    crate::screening_state::sync_all!(),
    "CREATE INDEX IF NOT EXISTS screenings_state ON screenings (state, created_at);\n",
    "CREATE INDEX IF NOT EXISTS screenings_outcome ON screenings (outcome, created_at);\n"
);

/// Migration 8: results to the ATS (`crate::webhook_outbox`): the callback each screening was
/// requested with, and the durable outbox of result webhooks, one row per screening, claimed
/// by workers with a lease (`{ID}` as in [`V1`]). Idempotent.
const V8: &str = r"
CREATE TABLE IF NOT EXISTS screening_callbacks (
    screening_id BIGINT PRIMARY KEY REFERENCES screenings (id),
    callback_url TEXT,
    metadata TEXT,
    deliver BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id {ID},
    screening_id BIGINT NOT NULL UNIQUE REFERENCES screenings (id),
    event TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    lease_token TEXT,
    payload TEXT,
    url TEXT,
    last_status BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_created ON webhook_deliveries (created_at);
";

/// Migration 9: SMS and WhatsApp messages (`crate::messages`): the durable outbound queue
/// (`scheduled` -> `claimed` under a lease -> Twilio's statuses) and the inbound log, one row
/// per `MessageSid`, and every status callback (`message_events`: a callback that arrives
/// before the send's commit is applied by it). `{ID}` as in [`V1`].
const V9: &str = r"
CREATE TABLE IF NOT EXISTS messages (
    id {ID},
    direction TEXT NOT NULL,
    channel TEXT NOT NULL,
    to_number TEXT NOT NULL,
    from_number TEXT,
    body TEXT NOT NULL,
    encoding TEXT,
    segments BIGINT,
    status TEXT NOT NULL,
    status_rank BIGINT NOT NULL DEFAULT 0,
    message_sid TEXT UNIQUE,
    error_code BIGINT,
    error_message TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    send_at BIGINT NOT NULL,
    hold_reason TEXT,
    zone TEXT,
    lease_owner TEXT,
    lease_until BIGINT,
    sent_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (status, from_number, send_at);
CREATE INDEX IF NOT EXISTS messages_to ON messages (to_number, created_at);
CREATE INDEX IF NOT EXISTS messages_sent_at ON messages (sent_at);

CREATE TABLE IF NOT EXISTS message_events (
    id {ID},
    message_sid TEXT NOT NULL,
    status TEXT NOT NULL,
    status_rank BIGINT NOT NULL,
    error_code BIGINT,
    error_message TEXT,
    received_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS message_events_sid ON message_events (message_sid, status_rank);
";

/// Migration 10: the channel of the last consent change, and every change
/// (`sms_consent_events`: time, keyword, channel). `{ID}` as in [`V1`].
const V10: &str = r"
CREATE TABLE IF NOT EXISTS sms_consent_events (
    id {ID},
    number TEXT NOT NULL,
    status TEXT NOT NULL,
    keyword TEXT,
    channel TEXT,
    at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS sms_consent_events_number ON sms_consent_events (number, at);
";

/// Migration 13's new tables (`{ID}` as in [`V1`]): each finished attempt of a retried screening
/// (the call it placed and how it ended), and campaigns (bulk launches). The columns it adds to
/// `screenings` are in [`sqlite_v13`] / [`postgres_v13`].
const V13: &str = r"
CREATE TABLE IF NOT EXISTS screening_attempts (
    screening_id BIGINT NOT NULL REFERENCES screenings (id),
    attempt BIGINT NOT NULL,
    call_sid TEXT NOT NULL,
    state TEXT NOT NULL,
    outcome TEXT,
    ended_at BIGINT NOT NULL,
    PRIMARY KEY (screening_id, attempt)
);
CREATE INDEX IF NOT EXISTS screening_attempts_call ON screening_attempts (call_sid);
CREATE TABLE IF NOT EXISTS campaigns (
    id {ID},
    name TEXT NOT NULL,
    screening TEXT NOT NULL,
    total BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS screenings_campaign ON screenings (campaign_id, state);
CREATE INDEX IF NOT EXISTS screenings_phone ON screenings (phone, state);
CREATE INDEX IF NOT EXISTS screenings_follow_up ON screenings (follow_up);
UPDATE screenings SET ended_at = updated_at
    WHERE state IN ('completed', 'failed', 'no_answer', 'voicemail', 'canceled');
";

/// The columns migration 13 adds to `screenings`: the attempt under way, how many are allowed
/// and how far apart (frozen from `api.retries` when requested), the follow-up SMS's progress
/// (`wanted`, `due`, `sent`, `skipped`, or `NULL` for none) and message, the campaign, when it
/// ended for good (never reopened after), and its place in the queue of due calls (a candidate
/// who asked to be called now goes first).
const V13_COLUMNS: [&str; 8] = [
    "attempt BIGINT NOT NULL DEFAULT 1",
    "max_attempts BIGINT NOT NULL DEFAULT 1",
    "retry_after_ms BIGINT NOT NULL DEFAULT 0",
    "follow_up TEXT",
    "follow_up_message_id BIGINT",
    "campaign_id BIGINT",
    "ended_at BIGINT",
    "priority BIGINT NOT NULL DEFAULT 0",
];

static V13_SQLITE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static V13_POSTGRES: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Migration 13 with `add_column` (`ADD COLUMN`, or PostgreSQL's `ADD COLUMN IF NOT EXISTS`)
/// and the backend's row id.
fn v13(add_column: &str, id: &str) -> String {
    use std::fmt::Write as _;
    let mut sql = String::new();
    for column in V13_COLUMNS {
        let _ = writeln!(sql, "ALTER TABLE screenings {add_column} {column};");
    }
    sql.push_str(&V13.replace("{ID}", id));
    sql
}

/// Migration 13 for SQLite: no `ADD COLUMN IF NOT EXISTS` there; the version table keeps it to
/// one run.
fn sqlite_v13() -> &'static str {
    V13_SQLITE.get_or_init(|| v13("ADD COLUMN", SQLITE_ID))
}

fn postgres_v13() -> &'static str {
    V13_POSTGRES.get_or_init(|| v13("ADD COLUMN IF NOT EXISTS", POSTGRES_ID))
}

pub(crate) fn migrations() -> Vec<Migration> {
    vec![
        Migration {
            version: 1,
            description: "calls, call_events, screenings, transcripts, rate_limit_decisions, sms_consent",
            sqlite: with_ids(V1, &V1_SQLITE, SQLITE_ID),
            postgres: with_ids(V1, &V1_POSTGRES, POSTGRES_ID),
        },
        Migration {
            version: 2,
            description: "transcripts.interrupted (bot turns cut by the caller)",
            // SQLite has no ADD COLUMN IF NOT EXISTS; the version table keeps it to one run.
            sqlite: "ALTER TABLE transcripts ADD COLUMN interrupted BIGINT NOT NULL DEFAULT 0",
            postgres: "ALTER TABLE transcripts ADD COLUMN IF NOT EXISTS interrupted BIGINT NOT NULL DEFAULT 0",
        },
        Migration {
            version: 3,
            description: "turn_latencies (voice pipeline latency breakdown per turn)",
            sqlite: with_ids(V3, &V3_SQLITE, SQLITE_ID),
            postgres: with_ids(V3, &V3_POSTGRES, POSTGRES_ID),
        },
        Migration {
            version: 4,
            description: "inbound_calls (one decision per CallSid), screening_intents (reconciliation)",
            sqlite: V4,
            postgres: V4,
        },
        Migration {
            version: 5,
            description: "screening_idempotency_keys (Idempotency-Key of POST /api/screenings)",
            sqlite: V5,
            postgres: V5,
        },
        Migration {
            version: 6,
            description: "screening state machine (states from the call, voicemail outcome)",
            sqlite: V6,
            postgres: V6,
        },
        Migration {
            version: 7,
            description: "console_users, console_sessions (the recruiter console's sign-in)",
            sqlite: crate::console::V7,
            postgres: crate::console::V7,
        },
        Migration {
            version: 8,
            description: "screening_callbacks, webhook_deliveries (result webhooks to the ATS)",
            sqlite: with_ids(V8, &V8_SQLITE, SQLITE_ID),
            postgres: with_ids(V8, &V8_POSTGRES, POSTGRES_ID),
        },
        Migration {
            version: 9,
            description: "messages (SMS/WhatsApp outbound queue and inbound log), message_events",
            sqlite: with_ids(V9, &V9_SQLITE, SQLITE_ID),
            postgres: with_ids(V9, &V9_POSTGRES, POSTGRES_ID),
        },
        Migration {
            version: 10,
            description: "sms_consent.channel, sms_consent_events (opt-out/opt-in history)",
            sqlite: sqlite_v10(),
            postgres: postgres_v10(),
        },
        Migration {
            version: 11,
            description: "messages.content_sid, messages.content_variables (WhatsApp templates)",
            // SQLite has no ADD COLUMN IF NOT EXISTS; the version table keeps it to one run.
            sqlite: "ALTER TABLE messages ADD COLUMN content_sid TEXT;\n\
                ALTER TABLE messages ADD COLUMN content_variables TEXT",
            postgres: "ALTER TABLE messages ADD COLUMN IF NOT EXISTS content_sid TEXT;\n\
                ALTER TABLE messages ADD COLUMN IF NOT EXISTS content_variables TEXT",
        },
        Migration {
            version: 12,
            description: "screenings.scheduled_for (calls held for the candidate's calling hours)",
            sqlite: "ALTER TABLE screenings ADD COLUMN scheduled_for BIGINT;\n\
                CREATE INDEX IF NOT EXISTS screenings_due ON screenings (state, scheduled_for)",
            postgres: "ALTER TABLE screenings ADD COLUMN IF NOT EXISTS scheduled_for BIGINT;\n\
                CREATE INDEX IF NOT EXISTS screenings_due ON screenings (state, scheduled_for)",
        },
        Migration {
            version: 13,
            description: "screening retries (attempts), follow-up SMS, campaigns",
            sqlite: sqlite_v13(),
            postgres: postgres_v13(),
        },
    ]
}

const SQLITE_ID: &str = "INTEGER PRIMARY KEY AUTOINCREMENT";
const POSTGRES_ID: &str = "BIGSERIAL PRIMARY KEY";

/// `template` with `{ID}` replaced by `id`, built once into `cell`.
fn with_ids(template: &str, cell: &'static std::sync::OnceLock<String>, id: &str) -> &'static str {
    cell.get_or_init(|| template.replace("{ID}", id))
}

static V1_SQLITE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static V1_POSTGRES: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static V3_SQLITE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static V3_POSTGRES: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static V8_SQLITE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static V8_POSTGRES: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static V9_SQLITE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static V9_POSTGRES: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static V10_SQLITE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static V10_POSTGRES: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Migration 10 for SQLite: no `ADD COLUMN IF NOT EXISTS` there; the version table keeps it
/// to one run.
fn sqlite_v10() -> &'static str {
    V10_SQLITE.get_or_init(|| {
        format!(
            "ALTER TABLE sms_consent ADD COLUMN channel TEXT;\n{}",
            V10.replace("{ID}", SQLITE_ID)
        )
    })
}

fn postgres_v10() -> &'static str {
    V10_POSTGRES.get_or_init(|| {
        format!(
            "ALTER TABLE sms_consent ADD COLUMN IF NOT EXISTS channel TEXT;\n{}",
            V10.replace("{ID}", POSTGRES_ID)
        )
    })
}

pub(crate) const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS voxbridge_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)";
