//! A Synapse homeserver for the Matrix tests (PyPI's `matrix-synapse`, installed by
//! `tests/install-peers` in `tests/.synapse`): SQLite in a temporary directory, one loopback
//! HTTP listener, the bridge's registration file, rate limits out of the way; and a small
//! client-server API client for its users.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::TempDir;
use crate::peers::Log;

/// The server name of the tests' homeserver.
pub const SERVER_NAME: &str = "test.local";
/// Its shared registration secret (users are made with `register_new_matrix_user`).
const SHARED_SECRET: &str = "synapse-test-shared-secret";

/// A running Synapse.
#[derive(Debug)]
pub struct Synapse {
    child: Child,
    /// Its client-server API.
    pub addr: SocketAddr,
    dir: TempDir,
    /// What it logged (warnings and errors).
    pub log: Log,
}

fn venv() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".synapse");
    assert!(
        venv.join("bin/synapse_homeserver").exists(),
        "matrix-synapse is not installed: tests/install-peers installs it (PyPI, in tests/.synapse)"
    );
    venv
}

impl Synapse {
    /// Starts one on `port` with the application service `registration` (YAML) and waits
    /// until it answers.
    pub fn start(port: u16, registration: &str) -> Synapse {
        let venv = venv();
        let dir = TempDir::new();
        let path = dir.path();
        std::fs::write(path.join("appservice.yaml"), registration).expect("the registration");
        std::fs::write(
            path.join("log.yaml"),
            "version: 1\nformatters:\n  plain:\n    format: '%(asctime)s %(name)s %(levelname)s %(message)s'\n\
             handlers:\n  console:\n    class: logging.StreamHandler\n    formatter: plain\n\
             root:\n  level: WARNING\n  handlers: [console]\ndisable_existing_loggers: false\n",
        )
        .expect("the log configuration");
        let unlimited = "{per_second: 10000, burst_count: 10000}";
        let config = format!(
            "server_name: \"{SERVER_NAME}\"\n\
             pid_file: {dir}/homeserver.pid\n\
             listeners:\n\
             \x20 - port: {port}\n\
             \x20   bind_addresses: ['127.0.0.1']\n\
             \x20   type: http\n\
             \x20   tls: false\n\
             \x20   x_forwarded: false\n\
             \x20   resources: [{{names: [client], compress: false}}]\n\
             database: {{name: sqlite3, args: {{database: {dir}/homeserver.db}}}}\n\
             media_store_path: {dir}/media\n\
             signing_key_path: {dir}/signing.key\n\
             log_config: {dir}/log.yaml\n\
             report_stats: false\n\
             registration_shared_secret: \"{SHARED_SECRET}\"\n\
             trusted_key_servers: []\n\
             suppress_key_server_warning: true\n\
             app_service_config_files: [{dir}/appservice.yaml]\n\
             rc_message: {unlimited}\n\
             rc_registration: {unlimited}\n\
             rc_login: {{address: {unlimited}, account: {unlimited}, failed_attempts: {unlimited}}}\n\
             rc_joins: {{local: {unlimited}, remote: {unlimited}}}\n\
             rc_invites: {{per_room: {unlimited}, per_user: {unlimited}}}\n",
            dir = path.display()
        );
        let config_path = path.join("homeserver.yaml");
        std::fs::write(&config_path, config).expect("the homeserver's configuration");
        let python = venv.join("bin/python");
        let keys = Command::new(&python)
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(&config_path)
            .arg("--generate-keys")
            .output()
            .expect("run synapse");
        assert!(
            keys.status.success(),
            "synapse --generate-keys: {}",
            String::from_utf8_lossy(&keys.stderr)
        );
        let (child, log) = spawn(&config_path);
        let synapse = Synapse {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            log,
        };
        synapse.wait_ready();
        synapse
    }

    /// Stops it (as a crash would: killed).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port, database and configuration, and waits until it
    /// answers.
    pub fn start_again(&mut self) {
        self.stop();
        let (child, log) = spawn(&self.dir.path().join("homeserver.yaml"));
        self.child = child;
        self.log = log;
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "synapse does not answer:\n{}",
                self.log.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Makes the user `name` (not an admin) with `password`.
    pub fn register_user(&self, name: &str, password: &str) {
        let output = Command::new(venv().join("bin/register_new_matrix_user"))
            .args([
                "-u",
                name,
                "-p",
                password,
                "--no-admin",
                "-k",
                SHARED_SECRET,
            ])
            .arg(format!("http://{}", self.addr))
            .output()
            .expect("run register_new_matrix_user");
        assert!(
            output.status.success(),
            "register_new_matrix_user {name}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Logs `name` in; their client.
    pub async fn login(&self, name: &str, password: &str) -> MatrixUser {
        let (status, answer) = http_json(
            self.addr,
            "POST",
            "/_matrix/client/v3/login",
            None,
            Some(json!({"type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": name}, "password": password})),
        )
        .await;
        assert_eq!(status, 200, "login {name}: {answer}");
        MatrixUser {
            addr: self.addr,
            token: answer["access_token"].as_str().expect("a token").to_owned(),
            user_id: answer["user_id"].as_str().expect("a user id").to_owned(),
            next_transaction: 0,
            since: std::sync::Mutex::new(None),
        }
    }

    /// Its directory (its database and configuration).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// Runs Synapse with the configuration at `config`: the process and its log.
fn spawn(config: &std::path::Path) -> (Child, Log) {
    let mut child = Command::new(venv().join("bin/python"))
        .args(["-m", "synapse.app.homeserver", "-c"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start synapse");
    let log = Log::collect(&mut child);
    (child, log)
}

impl Drop for Synapse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Matrix user's client (the client-server API, v3).
#[derive(Debug)]
pub struct MatrixUser {
    addr: SocketAddr,
    token: String,
    /// Their user id.
    pub user_id: String,
    next_transaction: u64,
    /// Where the next sync goes on from.
    since: std::sync::Mutex<Option<String>>,
}

impl MatrixUser {
    /// The user's access token.
    pub fn access_token(&self) -> &str {
        &self.token
    }

    /// The homeserver's client-server API address.
    pub fn homeserver(&self) -> SocketAddr {
        self.addr
    }

    /// A request with the user's token; the status and the JSON answer.
    pub async fn request(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        http_json(self.addr, method, path, Some(&self.token), body).await
    }

    /// Creates a direct room inviting `invitee`; its id.
    pub async fn create_direct_room(&self, invitee: &str) -> String {
        let (status, answer) = self
            .request(
                "POST",
                "/_matrix/client/v3/createRoom",
                Some(json!({"is_direct": true, "invite": [invitee],
                    "preset": "trusted_private_chat"})),
            )
            .await;
        assert_eq!(status, 200, "createRoom: {answer}");
        answer["room_id"].as_str().expect("a room id").to_owned()
    }

    /// The rooms the user was invited to since the last look (Synapse keeps an initial sync's
    /// answer for a while: each look goes on from the last).
    pub async fn invited_rooms(&self) -> Vec<String> {
        let since = self.since.lock().expect("sync token").clone();
        let path = match since {
            Some(since) => format!("/_matrix/client/v3/sync?timeout=0&since={}", encode(&since)),
            None => "/_matrix/client/v3/sync?timeout=0".to_owned(),
        };
        let (status, answer) = self.request("GET", &path, None).await;
        assert_eq!(status, 200, "sync: {answer}");
        if let Some(next) = answer["next_batch"].as_str() {
            *self.since.lock().expect("sync token") = Some(next.to_owned());
        }
        answer["rooms"]["invite"]
            .as_object()
            .map(|rooms| rooms.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Joins `room`.
    pub async fn join(&self, room: &str) {
        let path = format!("/_matrix/client/v3/join/{}", encode(room));
        let (status, answer) = self.request("POST", &path, Some(json!({}))).await;
        assert_eq!(status, 200, "join: {answer}");
    }

    /// Leaves `room`.
    pub async fn leave(&self, room: &str) {
        let path = format!("/_matrix/client/v3/rooms/{}/leave", encode(room));
        let (status, answer) = self.request("POST", &path, Some(json!({}))).await;
        assert_eq!(status, 200, "leave: {answer}");
    }

    /// The users joined to `room`.
    pub async fn joined_members(&self, room: &str) -> Vec<String> {
        let (status, answer) = self
            .request(
                "GET",
                &format!("/_matrix/client/v3/rooms/{}/joined_members", encode(room)),
                None,
            )
            .await;
        assert_eq!(status, 200, "joined_members: {answer}");
        answer["joined"]
            .as_object()
            .map(|joined| joined.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Sends an event of `kind` to `room`.
    pub async fn send(&mut self, room: &str, kind: &str, content: Value) {
        self.next_transaction += 1;
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/{kind}/t{}",
            encode(room),
            self.next_transaction
        );
        let (status, answer) = self.request("PUT", &path, Some(content)).await;
        assert_eq!(status, 200, "send {kind}: {answer}");
    }

    /// The latest events of `room`, oldest first.
    pub async fn events(&self, room: &str) -> Vec<Value> {
        let (status, answer) = self
            .request(
                "GET",
                &format!(
                    "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100",
                    encode(room)
                ),
                None,
            )
            .await;
        assert_eq!(status, 200, "messages: {answer}");
        let mut events = answer["chunk"].as_array().cloned().unwrap_or_default();
        events.reverse();
        events
    }
}

/// `text` percent-encoded for a path segment.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// One HTTP/1.1 request with a JSON body to `addr` (`Connection: close`); the status and the
/// JSON answer (`null` when there is none).
pub async fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the homeserver");
    let body = body.map(|body| body.to_string()).unwrap_or_default();
    let auth = bearer
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response))
        .await
        .expect("the answer comes in time")
        .expect("read the answer");
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or_default();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// A chunked body's content.
fn dechunk(mut body: &str) -> String {
    let mut text = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        text.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    text
}
