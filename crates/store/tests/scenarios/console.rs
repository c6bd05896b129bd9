//! The recruiter console's records: accounts, sessions (expiry, sign-out), the calls list by
//! job and today's counts by outcome.

use voxbridge_store::{ConsoleCallFilter, ConsoleSession, NewScreening, Store};

#[allow(clippy::too_many_lines)] // one scenario: accounts, sessions, calls list, export
pub(super) async fn console(store: &Store) {
    assert!(
        store
            .put_console_user("ada@example.com", "$argon2id$first", 10)
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_console_user("ada@example.com", "$argon2id$second", 20)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .console_password_hash("ada@example.com")
            .await
            .unwrap()
            .as_deref(),
        Some("$argon2id$second")
    );
    assert_eq!(
        store
            .console_password_hash("bob@example.com")
            .await
            .unwrap(),
        None
    );

    let session = |hash: &str, created_at: i64| ConsoleSession {
        token_hash: hash.to_owned(),
        subject: "ada@example.com".to_owned(),
        csrf_token: "csrf".to_owned(),
        created_at,
        expires_at: created_at + 1_000,
    };
    store
        .insert_console_session(&session("s1", 5_000))
        .await
        .unwrap();
    assert_eq!(
        store.console_session("s1", 5_999).await.unwrap(),
        Some(session("s1", 5_000))
    );
    assert_eq!(
        store.console_session("s1", 6_000).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(store.console_session("nope", 5_500).await.unwrap(), None);
    // A new sign-in sweeps the expired ones.
    store
        .insert_console_session(&session("s2", 7_000))
        .await
        .unwrap();
    assert!(!store.delete_console_session("s1").await.unwrap(), "swept");
    assert!(store.delete_console_session("s2").await.unwrap());
    assert_eq!(store.console_session("s2", 7_001).await.unwrap(), None);

    // Calls by job, with their candidate; counts by outcome over a day.
    let day = 1_000_000_000;
    let mut ids = Vec::new();
    for (n, job) in [
        (1, "Console Driver"),
        (2, "Console Picker"),
        (3, "Console Picker"),
    ] {
        let id = store
            .insert_screening(&NewScreening {
                candidate_id: format!("console-{n}"),
                first_name: format!("Name{n}"),
                phone: "+14158675309".to_owned(),
                job_title: job.to_owned(),
                screening: "default".to_owned(),
                created_at_ms: day + n,
            })
            .await
            .unwrap();
        let sid = format!("CA{:032x}", 0xc0de_0000 + n);
        store
            .mark_screening_initiated(id, &sid, "+14155550199", day + n)
            .await
            .unwrap();
        ids.push((id, sid));
    }
    assert!(
        store
            .save_screening_result(
                &ids[2].1,
                &serde_json::json!([]),
                "qualified",
                None,
                day + 9
            )
            .await
            .unwrap()
    );
    let filter = ConsoleCallFilter {
        job_title: Some("Console Picker".to_owned()),
        limit: 10,
        ..ConsoleCallFilter::default()
    };
    let (calls, total) = store.console_calls(&filter).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(calls[0].call.call_sid, ids[2].1, "newest first");
    assert_eq!(calls[0].first_name.as_deref(), Some("Name3"));
    assert_eq!(calls[0].screening_id, Some(ids[2].0));
    assert_eq!(calls[0].call.outcome.as_deref(), Some("qualified"));
    let qualified = ConsoleCallFilter {
        outcome: Some("qualified".to_owned()),
        ..filter.clone()
    };
    assert_eq!(store.console_calls(&qualified).await.unwrap().1, 1);
    let one = store.console_call(&ids[0].1).await.unwrap().unwrap();
    assert_eq!(one.job_title.as_deref(), Some("Console Driver"));
    let counts = store.outcome_counts(day, day + 100).await.unwrap();
    assert_eq!(counts, [(None, 2), (Some("qualified".to_owned()), 1)]);
    let jobs = store.job_titles().await.unwrap();
    assert!(
        jobs.contains(&"Console Driver".to_owned()) && jobs.contains(&"Console Picker".to_owned())
    );
}
