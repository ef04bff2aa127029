//! A real Matrix VoIP client for the bridge's tests: matrix-js-sdk's `MatrixCall` (MSC2746, as
//! Element Web's 1:1 calls use it) in headless chromium, with a fake microphone. The page is
//! one of the homeserver's own (a secure context on 127.0.0.1, the client-server API on the
//! same origin); `tests/browser/matrix-call.mjs`, bundled by `tests/install-peers`, is loaded
//! into it and driven through `window.mx`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::chromium::{Chromium, driver_dir};
use crate::synapse::MatrixUser;

/// matrix-js-sdk's client in a browser, logged in as one user.
#[derive(Debug)]
pub struct MatrixClient {
    pub page: Chromium,
}

/// The bundle `tests/install-peers` builds.
fn bundle() -> PathBuf {
    driver_dir().join("matrix-call.bundle.js")
}

impl MatrixClient {
    /// Starts a browser whose microphone plays `microphone` (a WAV file) and logs `user` in
    /// there, synced and ready for calls.
    pub async fn start(user: &MatrixUser, microphone: &Path) -> MatrixClient {
        let bundle = bundle();
        assert!(
            bundle.exists(),
            "{} is missing: tests/install-peers bundles matrix-js-sdk (npm, esbuild)",
            bundle.display()
        );
        let mut page = Chromium::start(microphone);
        let base = format!("http://{}", user.homeserver());
        page.command(json!({"do": "open", "url": format!("{base}/_matrix/client/versions")}))
            .await;
        page.command(json!({"do": "script", "path": bundle})).await;
        let mut client = MatrixClient { page };
        client
            .run(&format!(
                "mx.start({}, {}, {})",
                json!(base),
                json!(user.user_id),
                json!(user.access_token())
            ))
            .await;
        client
    }

    /// Evaluates `expression` in the page (awaited when it is a promise): its value.
    pub async fn run(&mut self, expression: &str) -> Value {
        self.page
            .command(json!({"do": "evaluate", "expression": expression}))
            .await
    }

    /// The current call: `callId`, `state`, `reason`, `incoming` (the ids of incoming calls)
    /// and `log`.
    pub async fn status(&mut self) -> Value {
        self.run("mx.status()").await
    }

    /// Waits until `check` holds of the status; the status. Panics with the client's log
    /// after `timeout`.
    pub async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self.status().await;
            if check(&status) {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: the Matrix client's status is {status:#}\n{}",
                status["log"].as_str().unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the current call is in `state` (matrix-js-sdk's names: `ringing`,
    /// `connected`, `ended`, ...).
    pub async fn wait_state(&mut self, state: &str, timeout: Duration) -> Value {
        self.wait_for(&format!("the call is {state}"), timeout, |status| {
            status["state"] == state
        })
        .await
    }

    /// Closes the browser.
    pub async fn close(self) {
        self.page.close().await;
    }
}
