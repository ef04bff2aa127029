//! The `sylkrtc-gateway` binary: its command line, and start/stop as an operator runs it.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_sylkrtc-gateway");

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sylkrtc-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn run(args: &[&str]) -> (bool, String) {
    let output = Command::new(BINARY).args(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_the_shipped_file() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../config.toml");
    let (ok, stderr) = run(&["--config", shipped, "--check-config"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("configuration OK"), "{stderr}");
}

#[test]
fn check_config_rejects_unknown_keys_and_missing_files() {
    let bad = temp_file("bad.toml", "[websocket]\nmax_mesage_size = 10\n");
    let (ok, stderr) = run(&["--config", bad.to_str().unwrap(), "--check-config"]);
    assert!(!ok);
    assert!(
        stderr.contains("unknown field `max_mesage_size`"),
        "{stderr}"
    );

    // Two endpoints on one path (the router could not be built): refused, both named.
    let clash = temp_file("clash.toml", "[webrtcsink]\npath = \"/health\"\n");
    let (ok, stderr) = run(&["--config", clash.to_str().unwrap(), "--check-config"]);
    assert!(!ok);
    assert!(
        stderr.contains("webrtcsink.path \"/health\" is already a route of the built-in /health"),
        "{stderr}"
    );

    let (ok, stderr) = run(&["--config", "/nonexistent/gateway.toml", "--check-config"]);
    assert!(!ok);
    assert!(
        stderr.contains("cannot read the configuration file /nonexistent/gateway.toml"),
        "{stderr}"
    );

    let tls = temp_file(
        "tls.toml",
        "[http]\ntls_certificate = \"/nonexistent/c.pem\"\ntls_private_key = \"/nonexistent/k.pem\"\n",
    );
    let (ok, stderr) = run(&["--config", tls.to_str().unwrap(), "--check-config"]);
    assert!(!ok);
    assert!(
        stderr.contains("cannot read certificates from /nonexistent/c.pem"),
        "{stderr}"
    );
}

#[test]
fn serves_until_sigterm() {
    // The store goes in a directory of its own, made by the gateway.
    let data = std::env::temp_dir().join(format!("sylkrtc-gateway-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let config = temp_file(
        "run.toml",
        &format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[storage]\ndata_dir = {:?}\n",
            data.join("store")
        ),
    );
    let mut child = Command::new(BINARY)
        .args(["--config", config.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // The listening line names the bound port.
    let addr = loop {
        let line = lines.next().expect("the gateway logs its address").unwrap();
        if let Some(rest) = line.split("ws://").nth(1) {
            break rest.split('/').next().unwrap().to_owned();
        }
    };
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""status":"ok""#), "{response}");
    assert!(data.join("store/gateway.sqlite").exists());

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the gateway did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|line| line.contains("SIGTERM")), "{rest:?}");
    let _ = std::fs::remove_dir_all(&data);
}
