//! Durability of the companion API: every webhook answered 2xx is committed before the answer,
//! so a `kill -9` right after the last 2xx loses nothing.
//!
//! Runs the real binary (`voxbridge api --config <tmp toml>`), sends status webhooks signed as
//! Twilio signs them over plain HTTP/1.1, SIGKILLs the process right after the last 2xx, then
//! reopens the SQLite file with `voxbridge-store` and checks every row.

mod api_process;

use voxbridge_store::{Store, StoreConfig};
use voxbridge_twilio::RequestValidator;
use voxbridge_twilio::webhook::FormParams;

use api_process::{free_port, http, scratch_dir, start_api};

const TOKEN: &str = "durability-token";
const CALLS: usize = 60;

#[tokio::test]
async fn status_webhooks_answered_2xx_survive_kill_9() {
    let dir = scratch_dir("durability");
    let db = dir.join("voxbridge.db");
    let addr = format!("127.0.0.1:{}", free_port());
    let public_url = format!("http://{addr}");
    std::fs::write(
        dir.join("voxbridge.toml"),
        format!(
            "[api]\nlisten = \"{addr}\"\npublic_url = \"{public_url}\"\n\n[api.twilio]\nauth_token = \"{TOKEN}\"\n\n[store]\ndatabase_url = \"sqlite://{}\"\n",
            db.display()
        ),
    )
    .unwrap();
    // The child's environment is scrubbed: an ambient DATABASE_URL would move the store.
    let mut child = start_api(&dir, &addr, "stderr.log");

    let signer = RequestValidator::new(TOKEN);
    let url = format!("{public_url}/twilio/voice/status");
    let sids: Vec<String> = (0..CALLS).map(|i| format!("CA{i:032x}")).collect();
    for sid in &sids {
        let pairs: Vec<(String, String)> = [
            ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
            ("CallSid", sid.as_str()),
            ("CallStatus", "completed"),
            ("CallDuration", "42"),
            ("Direction", "outbound-api"),
            ("From", "+14155550199"),
            ("To", "+14158675309"),
            ("SequenceNumber", "3"),
            ("Timestamp", "Tue, 14 Nov 2023 22:13:20 +0000"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let signature = signer.sign(&url, &pairs);
        let body = FormParams::from_pairs(pairs).to_body();
        let status = http(
            &addr,
            "POST",
            "/twilio/voice/status",
            &[
                (
                    "Content-Type",
                    "application/x-www-form-urlencoded".to_owned(),
                ),
                ("X-Twilio-Signature", signature),
            ],
            &body,
        );
        assert_eq!(status, Some(204), "webhook for {sid} accepted");
    }
    // SIGKILL right after the last 2xx: no graceful shutdown, nothing flushed on exit.
    child.kill().expect("SIGKILL");
    child.wait().unwrap();

    let store = Store::connect(&StoreConfig {
        database_url: format!("sqlite://{}", db.display()).into(),
        ..StoreConfig::default()
    })
    .await
    .expect("reopen the SQLite file");
    for sid in &sids {
        let call = store
            .call(sid)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{sid} lost"));
        assert_eq!(call.status.as_deref(), Some("completed"));
        assert_eq!(call.duration_seconds, Some(42));
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
