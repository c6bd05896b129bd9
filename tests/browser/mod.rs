//! Driving the console in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which `scripts/setup.sh` installs) over WebDriver, and the small steps the
//! browser tests share. Screenshots go to `<target>/console-screenshots/`.

#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::api_process::{free_port, http, voxbridge_command};

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `<target>/console-screenshots/`: beside the build, kept as the run's artifacts.
pub(crate) fn screenshot_dir() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), PathBuf::from);
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Kills a child process when dropped (the test's browser driver and server).
pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn wait_for_port(what: &str, addr: &str, log: &Path) {
    let started = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} did not listen on {addr}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) async fn shoot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

/// Polls `check` (a JavaScript expression) in the page until it is true, or fails after
/// `limit` with `what` and the page's text.
pub(crate) async fn wait_until(browser: &Client, what: &str, limit: Duration, check: &str) {
    let deadline = Instant::now() + limit;
    loop {
        let value = browser
            .execute(&format!("return Boolean({check});"), vec![])
            .await
            .expect("script runs");
        if value == json!(true) {
            return;
        }
        if Instant::now() > deadline {
            let text = browser
                .execute("return document.body.innerText;", vec![])
                .await
                .unwrap_or_default();
            panic!("timed out after {limit:?} waiting for {what}; the page says:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn fill(browser: &Client, id: &str, text: &str) {
    let field = browser.find(Locator::Id(id)).await.expect(id);
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

pub(crate) async fn click(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

pub(crate) async fn page_text(browser: &Client) -> String {
    browser
        .execute("return document.body.innerText;", vec![])
        .await
        .unwrap()
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// chromedriver on a free port (killed when the first value drops) and a headless Chromium
/// session, 1280x1000, its profile in `dir`.
pub(crate) async fn start_browser(dir: &Path) -> (Killed, Client) {
    let driver_port = free_port();
    let driver_log = dir.join("chromedriver.log");
    let driver = Killed(
        Command::new("chromedriver")
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&driver_log).unwrap())
            .spawn()
            .expect("start chromedriver"),
    );
    wait_for_port(
        "chromedriver",
        &format!("127.0.0.1:{driver_port}"),
        &driver_log,
    );
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,1000", "--lang=en-US",
                     format!("--user-data-dir={}", dir.join("chromium").display())],
        }),
    );
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "WebDriver session: {e}\n{}",
                std::fs::read_to_string(&driver_log).unwrap_or_default()
            )
        });
    (driver, browser)
}

/// Signs in through the sign-in page at `base` and waits for the calls page.
pub(crate) async fn sign_in(browser: &Client, base: &str, email: &str, password: &str) {
    browser
        .goto(&format!("{base}/console/login"))
        .await
        .unwrap();
    fill(browser, "email", email).await;
    fill(browser, "password", password).await;
    click(browser, "form.card button[type=submit]").await;
    wait_until(
        browser,
        "the calls page",
        Duration::from_secs(10),
        "document.querySelector('h1') && document.querySelector('h1').textContent === 'Calls'",
    )
    .await;
}

/// `voxbridge user add EMAIL` (the password from `VOXBRIDGE_USER_PASSWORD`, as README tells an
/// operator), then `voxbridge serve`, both with `dir/voxbridge.toml`; waits until `listen`
/// answers `/readyz`. The server is killed when the value drops.
pub(crate) fn serve_with_user(dir: &Path, listen: &str, email: &str, password: &str) -> Killed {
    let config = dir.join("voxbridge.toml");
    let added = voxbridge_command()
        .args(["user", "add", email, "--config"])
        .arg(&config)
        .current_dir(dir)
        .env("VOXBRIDGE_USER_PASSWORD", password)
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "voxbridge user add: {}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&added.stdout).trim(),
        format!("created console user {email}")
    );
    let serve_log = dir.join("serve.log");
    let serve = Killed(
        voxbridge_command()
            .args(["serve", "--config"])
            .arg(&config)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&serve_log).unwrap())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while http(listen, "GET", "/readyz", &[], "") != Some(200) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "voxbridge serve did not become ready\n{}",
            std::fs::read_to_string(&serve_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    serve
}
