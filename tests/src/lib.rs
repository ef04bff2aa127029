//! The end-to-end test harness: a gateway started in-process on `127.0.0.1:0`, and a sylkRTC
//! client over a real WebSocket (tokio-tungstenite, plain or TLS).
//!
//! Everything here talks to 127.0.0.1 only. `tests/run` runs the suite inside a network
//! namespace whose only interface is loopback.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gateway::Config;
use protocol::{ServerMessage, Version};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

pub mod audio;
pub mod baresip;
pub mod bench;
pub mod browser;
pub mod chromium;
pub mod cluster;
pub mod matrix_client;
pub mod opus;
pub mod peers;
pub mod postgres;
pub mod synapse;

/// How long a test waits for a message that must come.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// A gateway running in this process.
#[derive(Debug)]
pub struct Gateway {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The sylkRTC endpoint (`ws://` or `wss://`).
    pub url: String,
    /// The SIP transports' addresses (UDP, TCP).
    pub sip: (SocketAddr, SocketAddr),
    /// The SIP TLS listener's address, when there is one.
    pub sip_tls: Option<SocketAddr>,
    /// GStreamer's signalling listener and whether it is TLS, when enabled.
    pub gstreamer: Option<(SocketAddr, bool)>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<gateway::Result<()>>>,
    /// The store's directory, when the harness made one (removed with the gateway).
    _data: Option<TempDir>,
}

impl Gateway {
    /// Starts a gateway with the default configuration.
    pub async fn start_default() -> Gateway {
        Gateway::start(Config::default()).await
    }

    /// Starts a gateway with `config`, listening on free loopback ports (HTTP, and SIP unless
    /// the test chose its SIP ports).
    pub async fn start(mut config: Config) -> Gateway {
        config.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        Gateway::start_at(config).await
    }

    /// As [`Gateway::start`], but on the HTTP address `config` names (to come back on the
    /// address of a gateway that stopped).
    pub async fn start_at(mut config: Config) -> Gateway {
        config.sip.listen = std::net::Ipv4Addr::LOCALHOST.into();
        if config.sip.udp_port == 5060 {
            config.sip.udp_port = 0;
        }
        if config.sip.tcp_port == 5060 {
            config.sip.tcp_port = 0;
        }
        if config.sip.tls_port == 5061 {
            config.sip.tls_port = 0;
        }
        config.media.listen = std::net::Ipv4Addr::LOCALHOST.into();
        if config.media.browser_port == 20_000 {
            config.media.browser_port = 0;
        }
        if config.gstreamer.listen.port() == 8443 {
            config.gstreamer.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        }
        // The store in a directory of the gateway's own, unless the test chose where.
        let data = (config.storage.data_dir == gateway::StorageConfig::default().data_dir)
            .then(TempDir::new);
        if let Some(data) = &data {
            config.storage.data_dir = data.path().to_path_buf();
        }
        let server = gateway::Server::bind(&config)
            .await
            .expect("the gateway binds");
        let addr = server.local_addr();
        let sip = server.sip_addresses();
        let sip_tls = server.sip_tls_address();
        let url = server.websocket_url();
        let gstreamer = server.gstreamer_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.run(shutdown.clone()));
        Gateway {
            addr,
            url,
            sip,
            sip_tls,
            gstreamer,
            shutdown,
            task: Some(task),
            _data: data,
        }
    }

    /// Connects a client offering `sylkRTC-2` and reads the ready event.
    pub async fn client(&self) -> Client {
        self.client_version(Version::V2).await
    }

    /// Connects a client offering `version` and reads the ready event.
    pub async fn client_version(&self, version: Version) -> Client {
        let mut client = Client::connect(&self.url, &[version.subprotocol()], None)
            .await
            .expect("the upgrade succeeds");
        client.expect_ready().await;
        client
    }

    /// Stops the gateway and waits for it to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the gateway stops in time")
                .expect("the gateway task does not panic");
            result.expect("the gateway ran without error");
        }
    }

    /// A plain HTTP/1.1 GET: the status code and the body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let stream = TcpStream::connect(self.addr)
            .await
            .expect("connect for GET");
        http_get(stream, path).await
    }

    /// A sample of `/metrics`: the value of the line that starts with `series`.
    pub async fn metric(&self, series: &str) -> f64 {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200);
        body.lines()
            .find_map(|line| {
                line.strip_prefix(series)
                    .filter(|rest| rest.starts_with(' '))
            })
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no sample {series} in\n{body}"))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Sends `GET path` over `stream` and reads the response to its end (`Connection: close`).
pub async fn http_get<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    path: &str,
) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the GET");
    let mut response = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .expect("the response comes in time")
        .expect("read the response");
    let response = String::from_utf8(response).expect("the response is text");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or_default();
    (status, body.to_owned())
}

/// Any byte stream a client can run on.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A refused upgrade: the HTTP status and body.
#[derive(Debug)]
pub struct Refused {
    /// The HTTP status code.
    pub status: u16,
    /// The response body.
    pub body: String,
}

/// A sylkRTC client.
pub struct Client {
    ws: WebSocketStream<Box<dyn Io>>,
    /// The subprotocol the gateway chose.
    pub protocol: Option<String>,
    /// The version that subprotocol selects (V2 when none was chosen).
    pub version: Version,
    next_transaction: u64,
    /// Events read while waiting for a reply, handed out by `recv` first.
    pending: std::collections::VecDeque<ServerMessage>,
}

impl Client {
    /// Opens a WebSocket to `url` offering `protocols`, with an optional `Origin`.
    pub async fn connect(
        url: &str,
        protocols: &[&str],
        origin: Option<&str>,
    ) -> Result<Client, Refused> {
        let stream = TcpStream::connect(host_port(url))
            .await
            .expect("connect to the gateway");
        Client::connect_over(Box::new(stream), url, protocols, origin).await
    }

    /// Opens a WebSocket over an already connected stream (plain or TLS).
    pub async fn connect_over(
        stream: Box<dyn Io>,
        url: &str,
        protocols: &[&str],
        origin: Option<&str>,
    ) -> Result<Client, Refused> {
        let mut request = url.into_client_request().expect("a valid URL");
        if !protocols.is_empty() {
            let offer = HeaderValue::from_str(&protocols.join(", ")).expect("a header value");
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", offer);
        }
        if let Some(origin) = origin {
            request.headers_mut().insert(
                "Origin",
                HeaderValue::from_str(origin).expect("a header value"),
            );
        }
        match tokio_tungstenite::client_async(request, stream).await {
            Ok((ws, response)) => {
                let protocol = response
                    .headers()
                    .get("Sec-WebSocket-Protocol")
                    .map(|value| value.to_str().expect("ASCII").to_owned());
                let version = protocol
                    .as_deref()
                    .and_then(Version::from_subprotocol)
                    .unwrap_or(Version::V2);
                Ok(Client {
                    ws,
                    protocol,
                    version,
                    next_transaction: 1,
                    pending: std::collections::VecDeque::new(),
                })
            }
            Err(tungstenite::Error::Http(response)) => Err(Refused {
                status: response.status().as_u16(),
                body: String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                    .into_owned(),
            }),
            Err(other) => panic!("WebSocket handshake failed: {other}"),
        }
    }

    /// A fresh transaction id.
    pub fn transaction(&mut self) -> String {
        self.next_transaction += 1;
        format!("t{}", self.next_transaction)
    }

    /// Reads the ready event, which must be the first message.
    pub async fn expect_ready(&mut self) {
        let first = self.recv().await;
        assert_eq!(
            first,
            ServerMessage::Event(protocol::Event::Ready),
            "the first message is ready"
        );
    }

    /// Sends a JSON value as a text frame.
    pub async fn send_json(&mut self, value: &Value) {
        self.send(Message::text(value.to_string())).await;
    }

    /// Sends a raw frame.
    pub async fn send(&mut self, message: Message) {
        self.ws.send(message).await.expect("send a frame");
    }

    /// Queues frames without flushing, to send several in one write.
    pub async fn feed(&mut self, message: Message) {
        self.ws.feed(message).await.expect("queue a frame");
    }

    /// Queues a frame; false when the connection is gone.
    pub async fn try_feed(&mut self, message: Message) -> bool {
        self.ws.feed(message).await.is_ok()
    }

    /// Flushes queued frames.
    pub async fn flush(&mut self) {
        self.ws.flush().await.expect("flush frames");
    }

    /// Sends `request` (with `transaction` set to a fresh id unless present) and returns the
    /// next message, which must be its reply.
    pub async fn request(&mut self, mut request: Value) -> ServerMessage {
        let transaction = match request.get("transaction").and_then(Value::as_str) {
            Some(transaction) => transaction.to_owned(),
            None => {
                let transaction = self.transaction();
                request["transaction"] = Value::from(transaction.clone());
                transaction
            }
        };
        self.send_json(&request).await;
        let reply = self.recv().await;
        match &reply {
            ServerMessage::Ack { transaction: t } | ServerMessage::Error { transaction: t, .. } => {
                assert_eq!(
                    *t, transaction,
                    "the reply carries the request's transaction"
                );
            }
            ServerMessage::Event(event) => {
                panic!("expected the reply to {transaction}, got {event:?}")
            }
        }
        reply
    }

    /// Sends `request` and asserts it is acked.
    pub async fn expect_ack(&mut self, request: Value) {
        let reply = self.request(request.clone()).await;
        assert!(
            matches!(reply, ServerMessage::Ack { .. }),
            "{request} -> {reply:?}"
        );
    }

    /// Sends `request` and asserts it is acked, where events (of calls running meanwhile) may
    /// come before the reply: they are kept for `recv`, in order.
    pub async fn expect_ack_amid_events(&mut self, request: Value) {
        let reply = self.request_amid_events(request.clone()).await;
        assert!(
            matches!(reply, ServerMessage::Ack { .. }),
            "{request} -> {reply:?}"
        );
    }

    /// Sends `request` and returns its reply (ack or error), where events (of calls running
    /// meanwhile) may come before it: they are kept for `recv`, in order.
    pub async fn request_amid_events(&mut self, mut request: Value) -> ServerMessage {
        let transaction = self.transaction();
        request["transaction"] = Value::from(transaction.clone());
        self.send_json(&request).await;
        loop {
            match self.recv_wire().await {
                ServerMessage::Event(event) => self.pending.push_back(ServerMessage::Event(event)),
                ServerMessage::Ack { transaction: t } if t == transaction => {
                    return ServerMessage::Ack { transaction: t };
                }
                ServerMessage::Error {
                    transaction: t,
                    error,
                } if t == transaction => {
                    return ServerMessage::Error {
                        transaction: t,
                        error,
                    };
                }
                other => panic!("{request} -> {other:?}"),
            }
        }
    }

    /// Sends `request` and returns the error text (it must be an error).
    pub async fn expect_error(&mut self, request: Value) -> String {
        match self.request(request.clone()).await {
            ServerMessage::Error { error, .. } => error,
            other => panic!("{request} -> {other:?}, expected an error"),
        }
    }

    /// The next sylkRTC message (Ping and Pong frames are skipped).
    pub async fn recv(&mut self) -> ServerMessage {
        match self.pending.pop_front() {
            Some(message) => message,
            None => self.recv_wire().await,
        }
    }

    /// The next sylkRTC message off the socket.
    async fn recv_wire(&mut self) -> ServerMessage {
        loop {
            match self.recv_frame().await {
                Some(Message::Text(text)) => {
                    return ServerMessage::parse(&text, self.version)
                        .unwrap_or_else(|error| panic!("unparseable message {text}: {error}"));
                }
                Some(Message::Ping(_) | Message::Pong(_)) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next frame, `None` when the connection ended.
    pub async fn recv_frame(&mut self) -> Option<Message> {
        match tokio::time::timeout(PATIENCE, self.ws.next()).await {
            Ok(Some(Ok(message))) => Some(message),
            Ok(Some(Err(_)) | None) => None,
            Err(_) => panic!("no frame within {PATIENCE:?}"),
        }
    }

    /// The raw text of the next text frame.
    pub async fn recv_text(&mut self) -> String {
        match self.recv_frame().await {
            Some(Message::Text(text)) => text.to_string(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Asserts that nothing but Ping/Pong arrives for `duration`.
    pub async fn expect_silence(&mut self, duration: Duration) {
        let deadline = tokio::time::Instant::now() + duration;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }

    /// Reads frames until the server's Close frame and returns its code and reason.
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.recv_frame().await {
                Some(Message::Close(Some(frame))) => {
                    return (frame.code.into(), frame.reason.to_string());
                }
                Some(Message::Close(None)) => return (1005, String::new()),
                Some(_) => continue,
                None => panic!("the connection ended without a close frame"),
            }
        }
    }

    /// Closes the connection.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // Drain until the server's close reply, so the gateway has seen the close.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(PATIENCE, self.ws.next()).await {}
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("protocol", &self.protocol)
            .finish()
    }
}

/// `host:port` of a `ws://` or `wss://` URL.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files into `dir`.
pub struct TestCertificate {
    /// The certificate file.
    pub certificate: std::path::PathBuf,
    /// The private key file.
    pub key: std::path::PathBuf,
    /// A client configuration that trusts the certificate.
    pub client: Arc<rustls::ClientConfig>,
}

impl TestCertificate {
    /// Generates the certificate into `dir`.
    pub fn generate(dir: &Path) -> TestCertificate {
        Self::generate_for(dir, &["localhost", "127.0.0.1"])
    }

    /// Generates a certificate for these names (DNS names or IP addresses) into `dir`.
    pub fn generate_for(dir: &Path, names: &[&str]) -> TestCertificate {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let generated = rcgen::generate_simple_self_signed(names).expect("generate a certificate");
        let certificate = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&certificate, generated.cert.pem()).expect("write the certificate");
        std::fs::write(&key, generated.signing_key.serialize_pem()).expect("write the key");
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(generated.cert.der().clone())
            .expect("trust the certificate");
        let client = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        TestCertificate {
            certificate,
            key,
            client: Arc::new(client),
        }
    }

    /// Connects to `addr` over TLS, checking the certificate for 127.0.0.1.
    pub async fn connect(&self, addr: SocketAddr) -> Box<dyn Io> {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
        let tls = tokio_rustls::TlsConnector::from(self.client.clone())
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        Box::new(tls)
    }
}

/// Connects to `addr` over TLS accepting any certificate: for listeners that make their own
/// self-signed one, which clients such as GStreamer's do not check either.
pub async fn insecure_tls(addr: SocketAddr) -> Box<dyn Io> {
    Box::new(insecure_connect(addr).await)
}

/// The certificate (DER) a TLS listener at `addr` presents, accepting any.
pub async fn tls_certificate(addr: SocketAddr) -> Vec<u8> {
    let tls = insecure_connect(addr).await;
    let (_, session) = tls.get_ref();
    session.peer_certificates().expect("a certificate")[0].to_vec()
}

async fn insecure_connect(addr: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let client = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
    tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// Accepts every certificate, checking only that the handshake's signatures are sound.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl std::fmt::Debug for TestCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCertificate")
            .field("certificate", &self.certificate)
            .finish()
    }
}

/// A fresh temporary directory, removed when dropped.
#[derive(Debug)]
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// Creates it.
    pub fn new() -> TempDir {
        let path =
            std::env::temp_dir().join(format!("sylkrtc-gateway-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
