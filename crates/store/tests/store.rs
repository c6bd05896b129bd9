//! The same behaviour checks against a real SQLite file and a real PostgreSQL server (a fresh
//! database per test run, dropped afterwards). PostgreSQL comes from `DATABASE_URL` when it is a
//! `postgres://` URL, else the role and database `scripts/services.sh` provisions; if no server
//! answers, the PostgreSQL half records a skip and returns (a failure under `CI=true`). The checks
//! themselves are in `scenarios/`; after them each test corrupts two JSON columns through its
//! own connection and checks the error names the column.

mod scenarios;

use sqlx::Connection as _;
use voxbridge_store::{Backend, Store, StoreConfig};
use voxbridge_testkit::TestDatabase;

use scenarios::{
    CORRUPT_JSON, behaviour, invalid_json_names_its_column, migrated_by_6, rewind_to_v5,
    rows_for_migration_6,
};

/// Every migration version, as `applied_migrations` lists them once the schema is current.
const MIGRATED: [i64; 13] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];

#[tokio::test]
async fn sqlite_file_store_behaves() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/nested/dir/voxbridge.db", dir.path().display());
    let config = StoreConfig {
        database_url: url.clone().into(),
        ..StoreConfig::default()
    };
    let store = Store::connect(&config).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    behaviour(&store).await;
    let mut raw = sqlx::SqliteConnection::connect(&url).await.unwrap();
    for sql in CORRUPT_JSON {
        sqlx::query(sql).execute(&mut raw).await.unwrap();
    }
    raw.close().await.unwrap();
    invalid_json_names_its_column(&store).await;
    let old = rows_for_migration_6(&store).await;
    let mut raw = sqlx::SqliteConnection::connect(&url).await.unwrap();
    for sql in rewind_to_v5(old) {
        sqlx::query(&sql).execute(&mut raw).await.unwrap();
    }
    raw.close().await.unwrap();
    store.migrate().await.unwrap();
    migrated_by_6(&store, old).await;
    store.close().await;
    // Reopening runs no migration twice and keeps every row.
    let reopened = Store::connect(&config).await.unwrap();
    assert_eq!(reopened.applied_migrations().await.unwrap(), MIGRATED);
    let c = reopened
        .call("CA00000000000000000000000000000001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.status.as_deref(), Some("completed"));
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut sqlx::SqliteConnection::connect(&url).await.unwrap())
        .await
        .unwrap();
    assert_eq!(journal, "wal");
}

/// A fresh PostgreSQL database for this run (dropped with the guard), or `None` (a counted
/// skip) when no server answers.
async fn fresh_postgres(test: &str) -> Option<(StoreConfig, TestDatabase)> {
    let db = TestDatabase::create(test).await?;
    let config = StoreConfig {
        database_url: db.url.clone().into(),
        ..StoreConfig::default()
    };
    Some((config, db))
}

#[tokio::test]
async fn postgres_store_behaves() {
    let Some((config, _guard)) = fresh_postgres("postgres_store_behaves").await else {
        return;
    };
    let store = Store::connect(&config).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    behaviour(&store).await;
    let mut raw = sqlx::PgConnection::connect(config.database_url.expose())
        .await
        .unwrap();
    for sql in CORRUPT_JSON {
        sqlx::query(sql).execute(&mut raw).await.unwrap();
    }
    let old = rows_for_migration_6(&store).await;
    for sql in rewind_to_v5(old) {
        sqlx::query(&sql).execute(&mut raw).await.unwrap();
    }
    raw.close().await.unwrap();
    store.migrate().await.unwrap();
    migrated_by_6(&store, old).await;
    invalid_json_names_its_column(&store).await;
    store.close().await;
}

/// Instances that start together on one fresh database (`serve` and `api` on one SQLite file,
/// a fleet on one PostgreSQL): each connects as its own store, with its own pools, as separate
/// processes would. Every one must start, and the schema must be migrated exactly once.
const INSTANCES: usize = 6;
const ROUNDS: usize = 8;

/// Each instance on its own thread with its own runtime, released together by a barrier.
fn start_together(config: &StoreConfig) {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(INSTANCES));
    let instances: Vec<_> = (0..INSTANCES)
        .map(|_| {
            let config = config.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                barrier.wait();
                runtime.block_on(async move {
                    let store = Store::connect(&config)
                        .await
                        .unwrap_or_else(|e| panic!("an instance starting beside others: {e}"));
                    let applied = store.applied_migrations().await.unwrap();
                    store.close().await;
                    applied
                })
            })
        })
        .collect();
    for instance in instances {
        assert_eq!(instance.join().unwrap(), MIGRATED);
    }
}

#[test]
fn sqlite_instances_starting_together_migrate_once() {
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            database_url: format!("sqlite://{}/round{round}.db", dir.path().display()).into(),
            ..StoreConfig::default()
        };
        start_together(&config);
    }
}

#[tokio::test]
async fn postgres_instances_starting_together_migrate_once() {
    for _ in 0..ROUNDS {
        let Some((config, _guard)) =
            fresh_postgres("postgres_instances_starting_together_migrate_once").await
        else {
            return;
        };
        tokio::task::spawn_blocking(move || start_together(&config))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn unsupported_urls_name_the_key() {
    let err = Store::connect(&StoreConfig {
        database_url: "mysql://root:pw@db/x".into(),
        ..StoreConfig::default()
    })
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("store.database_url") && !text.contains("pw"),
        "{text}"
    );
}
