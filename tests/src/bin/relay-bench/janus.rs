//! Janus (Debian's `janus`, its SIP plugin) as a system under test: its configuration, the
//! process pinned to the systems' core, and calls set up over its WebSocket API. Each call is a
//! handle of the SIP plugin registered as a guest (no REGISTER is sent) that calls sipp's
//! answering scenario; Janus relays between the peer (ICE, DTLS-SRTP) and the reflector (plain
//! RTP), the path the gateway takes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use gateway_tests::bench::{Error, Ws};
use gateway_tests::peers::{free_port, require};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// The plugins and transports the benchmark does not use (they would only add threads).
const PLUGINS_OFF: &str = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_echotest.so,\
    libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_streaming.so,\
    libjanus_textroom.so,libjanus_videocall.so,libjanus_videoroom.so,libjanus_voicemail.so";
const TRANSPORTS_OFF: &str =
    "libjanus_http.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,libjanus_rabbitmq.so";
const LIBRARIES: &str = "/usr/lib/x86_64-linux-gnu/janus";

/// Janus running, with its configuration directory (removed with it).
pub(crate) struct JanusProcess {
    child: Child,
    dir: PathBuf,
    /// Its WebSocket API.
    pub(crate) url: String,
}

impl JanusProcess {
    /// Starts Janus pinned to `core` with one event loop for every handle's media (so that
    /// "one core" means one media thread, as for the other systems) and waits for its API.
    pub(crate) fn start(core: usize) -> Result<JanusProcess, Error> {
        let janus = require("janus", "janus");
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("bench-janus-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        write_config(&dir, port)?;
        let child = Command::new(require("taskset", "util-linux"))
            .args(["-c", &core.to_string()])
            .arg(janus)
            .arg("-C")
            .arg(dir.join("janus.jcfg"))
            .arg("-F")
            .arg(&dir)
            .args(["--disable-colors", "--disable-stdout"])
            .arg("-L")
            .arg(dir.join("janus.log"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut process = JanusProcess {
            child,
            dir,
            url: format!("ws://127.0.0.1:{port}/"),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = process.child.try_wait() {
                return Err(format!("janus exited at start ({status}): see its log").into());
            }
            if started.elapsed() > Duration::from_secs(10) {
                return Err("janus did not open its WebSocket port in 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(process)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for JanusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("JANUS_DEBUG").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn write_config(dir: &Path, ws_port: u16) -> std::io::Result<()> {
    // No session timeout (the benchmark holds its sessions as long as a step lasts), no
    // no-media events, candidates on the loopback only, 5,000 ports for each side.
    std::fs::write(
        dir.join("janus.jcfg"),
        format!(
            "general: {{\n\tconfigs_folder = \"{dir}\"\n\tplugins_folder = \"{LIBRARIES}/plugins\"\n\
             \ttransports_folder = \"{LIBRARIES}/transports\"\n\tevents_folder = \"{LIBRARIES}/events\"\n\
             \tloggers_folder = \"{LIBRARIES}/loggers\"\n\tdebug_level = {level}\n\tsession_timeout = 0\n\
             \tevent_loops = 1\n}}\n\
             media: {{\n\trtp_port_range = \"50000-54999\"\n\tno_media_timer = 0\n}}\n\
             nat: {{\n\tnice_debug = false\n\tice_enforce_list = \"bench0\"\n}}\n\
             plugins: {{\n\tdisable = \"{PLUGINS_OFF}\"\n}}\n\
             transports: {{\n\tdisable = \"{TRANSPORTS_OFF}\"\n}}\n\
             loggers: {{\n\tdisable = \"libjanus_jsonlog.so\"\n}}\nevents: {{\n}}\n",
            dir = dir.display(),
            // JANUS_DEBUG: its log at level 5 (and its configuration kept).
            level = if std::env::var_os("JANUS_DEBUG").is_some() {
                5
            } else {
                3
            },
        ),
    )?;
    std::fs::write(
        dir.join("janus.plugin.sip.jcfg"),
        "general: {\n\tlocal_ip = \"127.0.0.1\"\n\tlocal_media_ip = \"127.0.0.1\"\n\
         \tkeepalive_interval = 0\n\tbehind_nat = false\n\tregister_ttl = 3600\n\
         \trtp_port_range = \"55000-59999\"\n\tevents = false\n}\n",
    )?;
    std::fs::write(
        dir.join("janus.transport.websockets.jcfg"),
        format!(
            "general: {{\n\tjson = \"plain\"\n\tws = true\n\tws_port = {ws_port}\n\
             \tws_ip = \"127.0.0.1\"\n\twss = false\n}}\nadmin: {{\n\tadmin_ws = false\n}}\n"
        ),
    )
}

/// A Janus API session over one WebSocket; every call is a handle of the SIP plugin in it.
pub(crate) struct JanusControl {
    ws: Ws,
    session: u64,
    next: u64,
    /// sipp's answering scenario.
    far_end: String,
    /// Handles registered as guests and not yet calling.
    idle: Vec<u64>,
}

impl JanusControl {
    pub(crate) async fn connect(url: &str, sip: SocketAddr) -> Result<JanusControl, Error> {
        let stream =
            TcpStream::connect(url.trim_start_matches("ws://").trim_end_matches('/')).await?;
        let mut request = url.into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("janus-protocol"),
        );
        let (ws, _) = tokio_tungstenite::client_async(request, stream).await?;
        let mut control = JanusControl {
            ws,
            session: 0,
            next: 0,
            far_end: format!("sip:echo@{sip}"),
            idle: Vec::new(),
        };
        let transaction = control.send(json!({"janus": "create"})).await?;
        let reply = control.reply(&transaction).await?;
        control.session = reply["data"]["id"].as_u64().ok_or("janus: no session id")?;
        Ok(control)
    }

    /// Sends a request with a fresh transaction; returns the transaction.
    async fn send(&mut self, mut request: Value) -> Result<String, Error> {
        self.next += 1;
        let transaction = format!("t{}", self.next);
        request["transaction"] = json!(transaction);
        if self.session != 0 {
            request["session_id"] = json!(self.session);
        }
        self.ws.feed(Message::text(request.to_string())).await?;
        Ok(transaction)
    }

    async fn recv(&mut self) -> Result<Value, Error> {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .map_err(|_| "janus: nothing in 30 s")?
                .ok_or("janus: the connection ended")??;
            if let Message::Text(text) = frame {
                if std::env::var_os("JANUS_DEBUG").is_some() {
                    eprintln!("janus: {text}");
                }
                return Ok(serde_json::from_str(&text)?);
            }
        }
    }

    /// The reply to `transaction` (events in between are dropped: only used before calls).
    async fn reply(&mut self, transaction: &str) -> Result<Value, Error> {
        self.ws.flush().await?;
        loop {
            let message = self.recv().await?;
            if message["transaction"] == transaction && message["janus"] != "ack" {
                if message["janus"] == "error" {
                    return Err(format!("janus: {}", message["error"]).into());
                }
                return Ok(message);
            }
        }
    }

    /// Attaches `count` handles to the SIP plugin and registers each as a guest (pipelined),
    /// ready for calls: what a user does when it connects, before it calls.
    pub(crate) async fn prepare(&mut self, count: usize) -> Result<(), Error> {
        let mut attaching = HashMap::new();
        for _ in 0..count {
            let transaction = self
                .send(json!({"janus": "attach", "plugin": "janus.plugin.sip"}))
                .await?;
            attaching.insert(transaction, ());
        }
        self.ws.flush().await?;
        let mut handles = Vec::new();
        while handles.len() < count {
            let message = self.recv().await?;
            let Some(transaction) = message["transaction"].as_str() else {
                continue;
            };
            if attaching.remove(transaction).is_none() {
                continue;
            }
            match message["data"]["id"].as_u64() {
                Some(handle) => handles.push(handle),
                None => return Err(format!("janus: attach failed: {message}").into()),
            }
        }
        for (index, handle) in handles.iter().enumerate() {
            self.send(json!({"janus": "message", "handle_id": handle, "body": {
                "request": "register", "type": "guest",
                "username": format!("sip:bench{index}@127.0.0.1")}}))
                .await?;
        }
        self.ws.flush().await?;
        let mut waiting: std::collections::HashSet<u64> = handles.iter().copied().collect();
        while !waiting.is_empty() {
            let message = self.recv().await?;
            let Some(sender) = message["sender"].as_u64() else {
                continue;
            };
            let data = &message["plugindata"]["data"];
            if let Some(error) = data.get("error") {
                return Err(format!("janus: guest registration failed: {error}").into());
            }
            if data["result"]["event"] == "registered" {
                waiting.remove(&sender);
            }
        }
        self.idle.extend(handles);
        Ok(())
    }

    /// Places one call per offer (all at once, pipelined) on handles made ready by
    /// [`JanusControl::prepare`] (made here if missing); returns each answer, in order, and the
    /// time from the `call` request to `accepted` of each.
    pub(crate) async fn calls(
        &mut self,
        offers: &[String],
    ) -> Result<(Vec<String>, Vec<Duration>), Error> {
        if self.idle.len() < offers.len() {
            self.prepare(offers.len() - self.idle.len()).await?;
        }
        let handles: Vec<u64> = self.idle.drain(..offers.len()).collect();
        let mut started = HashMap::new();
        for (handle, offer) in handles.iter().zip(offers) {
            self.send(json!({"janus": "message", "handle_id": handle,
                "body": {"request": "call", "uri": self.far_end},
                "jsep": {"type": "offer", "sdp": offer, "trickle": false}}))
                .await?;
            started.insert(*handle, Instant::now());
        }
        self.ws.flush().await?;
        let mut answers: HashMap<u64, (String, Duration)> = HashMap::new();
        while answers.len() < handles.len() {
            let message = self.recv().await?;
            if message["janus"] == "error" || message["janus"] == "hangup" {
                return Err(format!("janus: call failed: {message}").into());
            }
            let Some(sender) = message["sender"].as_u64() else {
                continue;
            };
            let data = &message["plugindata"]["data"];
            if let Some(error) = data.get("error") {
                return Err(format!("janus: call failed: {error}").into());
            }
            match data["result"]["event"].as_str() {
                Some("accepted") => {
                    let sdp = message["jsep"]["sdp"]
                        .as_str()
                        .ok_or("janus: accepted without an answer")?;
                    let took = started
                        .get(&sender)
                        .map(Instant::elapsed)
                        .unwrap_or_default();
                    answers.insert(sender, (sdp.to_owned(), took));
                }
                Some("hangup") => {
                    return Err(format!("janus: call hung up: {}", data["result"]).into());
                }
                _ => {}
            }
        }
        let mut sdps = Vec::new();
        let mut times = Vec::new();
        for handle in handles {
            if let Some((sdp, took)) = answers.remove(&handle) {
                sdps.push(sdp);
                times.push(took);
            }
        }
        Ok((sdps, times))
    }

    /// Ends every call: destroys the session (Janus hangs up each handle's call), then closes.
    pub(crate) async fn close(mut self) {
        if let Ok(transaction) = self.send(json!({"janus": "destroy"})).await {
            let _ = tokio::time::timeout(Duration::from_secs(10), self.reply(&transaction)).await;
        }
        let _ = self.ws.close(None).await;
    }
}
