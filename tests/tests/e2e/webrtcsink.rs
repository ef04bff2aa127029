//! GStreamer's webrtcsink signalling: the same script against the gateway and against the
//! reference server (`gst-webrtc-signalling-server`, from crates.io), replies compared with
//! peer and session ids normalised.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gateway_tests::peers::free_port;
use gateway_tests::{Client, Gateway};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// How long a connection stays quiet before a step's replies are taken as complete.
const QUIET: Duration = Duration::from_millis(250);

/// The reference server on a free port, killed when dropped.
struct Reference {
    child: Child,
    url: String,
}

impl Reference {
    async fn start() -> Reference {
        let program = reference_binary();
        let port = free_port();
        let child = Command::new(program)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gst-webrtc-signalling-server starts");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Reference {
            child,
            url: format!("ws://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn reference_binary() -> PathBuf {
    let name = "gst-webrtc-signalling-server";
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    let candidates = cargo_home
        .map(|home| home.join("bin").join(name))
        .into_iter()
        .chain(
            std::env::var_os("PATH")
                .map(|path| {
                    std::env::split_paths(&path)
                        .map(|dir| dir.join(name))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        );
    for candidate in candidates {
        if candidate.exists() {
            return candidate;
        }
    }
    panic!(
        "{name} is not installed: cargo install --locked gst-plugin-webrtc-signalling@0.15.4 \
         (tests/install-peers does it)"
    );
}

/// One side of the comparison: the script's peers on one server, with what they received.
struct Run {
    peers: Vec<Client>,
    /// The peers' names, in the order of `peers`.
    labels: Vec<&'static str>,
    /// What each peer received over the whole script, by name: the comparison. A reply that
    /// comes late (a loaded machine) still lands in its peer's stream in order.
    streams: std::collections::BTreeMap<&'static str, Vec<String>>,
    /// Ids in the order they appeared, replaced by their names.
    names: HashMap<String, String>,
    sessions: usize,
    transcript: Vec<String>,
}

impl Run {
    async fn new(url: &str, count: usize) -> Run {
        let mut run = Run {
            peers: Vec::new(),
            labels: Vec::new(),
            streams: std::collections::BTreeMap::new(),
            names: HashMap::new(),
            sessions: 0,
            transcript: Vec::new(),
        };
        for index in 0..count {
            let mut peer = Client::connect(url, &[], None)
                .await
                .expect("the upgrade succeeds");
            let welcome: Value = serde_json::from_str(&peer.recv_text().await).expect("JSON");
            assert_eq!(welcome["type"], "welcome", "{welcome}");
            let id = welcome["peerId"].as_str().expect("an id").to_owned();
            let name = ["A", "B", "C", "D"][index].to_owned();
            run.names.insert(id, name);
            run.peers.push(peer);
            run.labels.push(["A", "B", "C", "D"][index]);
        }
        run
    }

    fn id(&self, name: &str) -> String {
        self.names
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| name.to_owned())
    }

    /// Replaces every id in a message by its name; new session ids get S1, S2...
    fn normalise(&mut self, text: &str) -> String {
        let mut value: Value = serde_json::from_str(text).expect("JSON");
        if let Some(session) = value.get("sessionId").and_then(Value::as_str)
            && !self.names.contains_key(session)
        {
            self.sessions += 1;
            self.names
                .insert(session.to_owned(), format!("S{}", self.sessions));
        }
        // Lists come in the server's map order: sort them.
        for key in ["producers", "consumers"] {
            if let Some(Value::Array(items)) = value.get_mut(key) {
                items.sort_by_key(|item| item["id"].to_string());
            }
        }
        self.named(&value.to_string())
    }

    /// `text` with every known id replaced by its name.
    fn named(&self, text: &str) -> String {
        let mut text = text.to_owned();
        let mut ids: Vec<(&String, &String)> = self.names.iter().collect();
        ids.sort_by_key(|(id, _)| std::cmp::Reverse(id.len()));
        for (id, name) in ids {
            text = text.replace(id.as_str(), name);
        }
        text
    }

    /// Sends `message` (ids given by name, as `{A}`) from peer `from`, then records what every
    /// peer receives until all are quiet.
    async fn step(&mut self, from: usize, message: &str) {
        let mut text = message.to_owned();
        let names: Vec<String> = self.names.values().cloned().collect();
        for name in names {
            text = text.replace(&format!("{{{name}}}"), &self.id(&name));
        }
        self.peers[from].send(Message::Text(text.into())).await;
        let label = self.named(&format!("{} sends {message}", self.labels[from]));
        self.collect(&label).await;
    }

    fn record(&mut self, index: usize, text: &str) {
        let line = self.normalise(text);
        self.record_line(index, line);
    }

    fn record_line(&mut self, index: usize, line: String) {
        let label = self.labels[index];
        self.transcript.push(format!("{label} <- {line}"));
        self.streams.entry(label).or_default().push(line);
    }

    /// Waits (as long as a reply may take) for peer `index`'s next text frame.
    async fn wait_for(&mut self, index: usize) {
        loop {
            match self.peers[index].recv_frame().await {
                Some(Message::Text(text)) => return self.record(index, &text),
                Some(Message::Ping(_) | Message::Pong(_)) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    async fn collect(&mut self, label: &str) {
        self.transcript.push(format!("-- {label}"));
        for index in 0..self.peers.len() {
            loop {
                let frame = tokio::time::timeout(QUIET, self.peers[index].recv_frame()).await;
                match frame {
                    Ok(Some(Message::Text(text))) => self.record(index, &text),
                    Ok(Some(Message::Ping(_) | Message::Pong(_))) => {}
                    Ok(Some(other)) => {
                        let line = format!("{other:?}");
                        self.record_line(index, line);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}

/// The script: a listener, a producer, a consumer; a session with SDP and ICE; errors; the
/// producer leaving mid-session.
async fn script(url: &str) -> Run {
    let mut run = Run::new(url, 3).await;
    let (a, b, c) = (0, 1, 2);
    run.step(c, r#"{"type":"setPeerStatus","roles":["listener"]}"#)
        .await;
    run.step(
        a,
        r#"{"type":"setPeerStatus","roles":["producer"],"meta":{"name":"cam"}}"#,
    )
    .await;
    run.step(b, r#"{"type":"list"}"#).await;
    run.step(b, r#"{"type":"listConsumers"}"#).await;
    run.step(b, r#"{"type":"startSession","peerId":"{A}"}"#)
        .await;
    // The rest of the script needs the session's id: wait for it however long it takes.
    while !run.names.values().any(|name| name == "S1") {
        run.wait_for(b).await;
    }
    let session = run
        .names
        .iter()
        .find(|(_, name)| name.as_str() == "S1")
        .map(|(id, _)| id.clone())
        .expect("a session");
    let offer =
        json!({"type": "peer", "sessionId": session, "sdp": {"type": "offer", "sdp": "v=0\r\n"}});
    run.step(a, &offer.to_string()).await;
    run.step(b, &offer.to_string()).await;
    let ice = json!({"type": "peer", "sessionId": session,
        "ice": {"candidate": "candidate:1 1 UDP 1 127.0.0.1 9 typ host", "sdpMLineIndex": 0}});
    run.step(b, &ice.to_string()).await;
    run.step(b, r#"{"type":"startSession","peerId":"nobody"}"#)
        .await;
    run.step(c, r#"{"type":"startSession","peerId":"{B}"}"#)
        .await;
    run.step(
        a,
        r#"{"type":"setPeerStatus","roles":["producer","consumer"]}"#,
    )
    .await;
    run.step(b, r#"{"type":"not a message"}"#).await;
    run.step(
        b,
        &json!({"type": "endSession", "sessionId": session}).to_string(),
    )
    .await;
    run.step(b, r#"{"type":"startSession","peerId":"{A}"}"#)
        .await;
    // The producer leaves during the second session.
    let producer = run.peers.remove(a);
    run.labels.remove(a);
    producer.close().await;
    run.collect("A closes").await;
    run
}

#[tokio::test]
async fn the_gateway_answers_the_script_as_the_reference_server_does() {
    let reference = Reference::start().await;
    let gateway = Gateway::start_default().await;
    let theirs = script(&reference.url).await;
    let ours = script(&format!("ws://{}/webrtcsink", gateway.addr)).await;
    let received: usize = theirs.streams.values().map(Vec::len).sum();
    assert!(received > 15, "{:#?}", theirs.transcript);
    assert!(
        ours.streams == theirs.streams,
        "the replies differ.\ngateway:\n{}\nreference:\n{}",
        ours.transcript.join("\n"),
        theirs.transcript.join("\n")
    );
}
