//! A caller cannot forge log lines or get its number into the logs whole. Alone in its test
//! binary: it installs a log subscriber, and `tracing` caches per call site whether anyone
//! listens, which other tests running in parallel threads of one process would race with. The
//! subscriber is the process's global one, so every thread's logs are captured.

mod common;

/// A `MakeWriter` into a shared buffer: what the service logged.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A caller cannot forge log lines or get its number into the logs whole, in the text format
/// an operator tails, whatever `From` holds.
#[tokio::test]
async fn caller_identifiers_are_escaped_and_masked_in_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber here");
    let h = common::start(|_| {}).await;
    let forged = [
        "sip:+14158675309@trunk.example.com\n2026-01-01T00:00:00Z ERROR forged: admin login",
        "(415) 867-5309\r\nINFO forged: second line",
        "4158675309\u{1b}[2J\u{0}forged",
    ];
    for (i, from) in forged.iter().enumerate() {
        let (status, _) = h.inbound_call(200 + i, from).await;
        assert_eq!(status, 200);
    }
    let logs = captured.text();
    assert!(
        logs.contains("ALLOWED"),
        "the decisions were logged:\n{logs}"
    );
    for line in logs.lines() {
        assert!(
            !line.contains("forged") || line.contains("ALLOWED") || line.contains("call{"),
            "a forged line:\n{line}\n---\n{logs}"
        );
        assert!(
            !line.contains('\r') && !line.contains('\u{1b}') && !line.contains('\u{0}'),
            "{line:?}"
        );
    }
    for whole in ["8675309", "867-5309", "4158675309"] {
        assert!(!logs.contains(whole), "{whole} logged unmasked:\n{logs}");
    }
}
