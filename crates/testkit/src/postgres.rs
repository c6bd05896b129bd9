//! A fresh PostgreSQL database per test, dropped with it.

use sqlx::Connection as _;

/// A database no other test (or test run) uses, on the server [`crate::postgres_url`] names.
/// Dropped, connections and all, when the value goes, also when the test panics.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    /// Its URL.
    pub url: String,
}

impl TestDatabase {
    /// Creates one named after `test`; `None` when no PostgreSQL server answers (the skip is
    /// recorded, and is a failure under CI). Once the server answers, any error panics: a role
    /// that cannot log in or create databases is a broken set-up, not a reason to skip.
    pub async fn create(test: &str) -> Option<Self> {
        let base = crate::require_postgres(test)?;
        let mut admin = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{test}: PostgreSQL at {} answers but: {e} (scripts/services.sh provisions the \
                 role and database)",
                    crate::redact(&base)
                )
            });
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("voxbridge_test_{}_{nanos}", std::process::id());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("{test}: CREATE DATABASE {name}: {e}"));
        admin.close().await.ok();
        let prefix = base.rsplit_once('/').map_or(base.as_str(), |(p, _)| p);
        Some(Self {
            url: format!("{prefix}/{name}"),
            admin_url: base.clone(),
            name,
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database now, closing every connection to it (the store goes down under a
    /// running service).
    ///
    /// # Panics
    /// When the server refuses.
    pub async fn drop_now(&self) {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .expect("connect to drop the test database");
        sqlx::query(&self.drop_sql())
            .execute(&mut admin)
            .await
            .expect("drop the test database");
    }

    fn drop_sql(&self) -> String {
        format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let sql = self.drop_sql();
        // `Drop` cannot await, and may run inside a runtime: a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(&sql).execute(&mut admin).await;
                }
            });
        })
        .join();
    }
}
