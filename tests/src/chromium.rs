//! A real browser for the end-to-end tests: Debian's chromium, headless, driven by
//! `tests/browser/driver.mjs` (playwright-core, no browser download) over its stdin and stdout,
//! one JSON command and one JSON reply per line. Its fake microphone plays a WAV file.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::peers::require;

/// A headless chromium with one page.
#[derive(Debug)]
pub struct Chromium {
    child: Child,
    input: ChildStdin,
    output: Lines<BufReader<ChildStdout>>,
    next: u64,
}

/// The directory of the browser driver (with its `node_modules`, installed by
/// `tests/install-peers`).
pub fn driver_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

impl Chromium {
    /// Starts chromium with `microphone` (a WAV file) as its fake capture device.
    pub fn start(microphone: &Path) -> Chromium {
        let node = require("node", "nodejs");
        require("chromium", "chromium");
        let dir = driver_dir();
        assert!(
            dir.join("node_modules/playwright-core").exists(),
            "playwright-core is not installed in {}: tests/install-peers installs it (npm ci)",
            dir.display()
        );
        let mut child = Command::new(node)
            .arg(dir.join("driver.mjs"))
            .arg(microphone)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the browser driver");
        let input = child.stdin.take().expect("the driver's stdin");
        let output = BufReader::new(child.stdout.take().expect("the driver's stdout")).lines();
        Chromium {
            child,
            input,
            output,
            next: 1,
        }
    }

    /// Runs one command; its value, or the driver's error.
    pub async fn try_command(&mut self, mut command: Value) -> Result<Value, String> {
        let id = self.next;
        self.next += 1;
        command["id"] = json!(id);
        let line = format!("{command}\n");
        self.input
            .write_all(line.as_bytes())
            .await
            .map_err(|error| format!("the browser driver is gone: {error}"))?;
        loop {
            let line = tokio::time::timeout(Duration::from_secs(60), self.output.next_line())
                .await
                .map_err(|_| format!("no reply to {command}"))?
                .map_err(|error| error.to_string())?
                .ok_or_else(|| "the browser driver ended".to_owned())?;
            let Ok(reply) = serde_json::from_str::<Value>(&line) else {
                continue; // Something else the driver printed.
            };
            if reply["id"] != json!(id) {
                continue;
            }
            return if reply["ok"] == true {
                Ok(reply["value"].clone())
            } else {
                Err(reply["error"].as_str().unwrap_or("failed").to_owned())
            };
        }
    }

    /// Runs one command, failing the test (with the page's console log) if it fails.
    pub async fn command(&mut self, command: Value) -> Value {
        match self.try_command(command.clone()).await {
            Ok(value) => value,
            Err(error) => {
                let log = self
                    .try_command(json!({"do": "log"}))
                    .await
                    .unwrap_or_default();
                panic!(
                    "{command} failed: {error}\npage console:\n{}",
                    log.as_str().unwrap_or("")
                );
            }
        }
    }

    /// Waits until `selector`'s text matches `pattern` (a JavaScript regular expression).
    pub async fn wait_text(&mut self, selector: &str, pattern: &str) -> String {
        self.command(json!({"do": "waitText", "selector": selector, "pattern": pattern}))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Saves a screenshot of the page.
    pub async fn screenshot(&mut self, file: &Path) {
        if let Some(dir) = file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        self.command(json!({"do": "screenshot", "file": file}))
            .await;
    }

    /// The dominant frequency the page hears (a WebAudio analyser on the remote audio, over
    /// `seconds`).
    pub async fn heard_frequency(&mut self, seconds: f64) -> f64 {
        let value = self
            .command(json!({"do": "tone", "seconds": seconds}))
            .await;
        value["frequency"].as_f64().unwrap_or(0.0)
    }

    /// Closes the browser.
    pub async fn close(mut self) {
        let _ = self.input.write_all(b"{\"do\":\"quit\"}\n").await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}
