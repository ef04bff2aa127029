//! Several gateways as one service, as `docs/deployment.md` deploys them: gateway processes
//! (the real binary) on their own loopback addresses (127.0.0.2, .3, ...), HAProxy in front of
//! them for WebSocket and HTTP, and Kamailio's dispatcher in front of them for SIP, both run
//! with the configuration files shipped in `docs/deployment/`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::net::{TcpSocket, TcpStream};

use crate::peers::{Log, free_port, require};
use crate::{Client, TempDir, http_get};

/// The admin token every test instance has.
pub const ADMIN_TOKEN: &str = "cluster-test-admin-token";

/// Where the tests' own connections to an instance come from: HAProxy's address, 127.0.0.1,
/// is the instances' trusted balancer, whose connections must begin with a PROXY header.
const DIRECT_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 99);

/// A TCP connection to `addr` from `source`.
pub async fn connect_from(source: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(source), 0))
        .expect("bind the source address");
    socket.connect(addr).await.expect("connect")
}

/// The shipped deployment files.
fn deployment_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/deployment")
}

/// The gateway binary beside the running program: a test's (in `target/PROFILE/deps`) or a
/// benchmark's (in `target/PROFILE`).
pub fn gateway_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let here = exe.parent().expect("the program's directory");
    let beside = here.join("sylkrtc-gateway");
    let binary = if beside.exists() {
        beside
    } else {
        here.parent().expect("target dir").join("sylkrtc-gateway")
    };
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build -p gateway`",
        binary.display()
    );
    binary
}

/// What the instances of a test share.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// The SIP port of the registrar (on 127.0.0.1) their accounts' REGISTERs go to.
    pub registrar: u16,
    /// The PostgreSQL message store they share, if any (else each has SQLite of its own).
    pub postgres_url: Option<&'a str>,
    /// Whether each knows the others as `[instance] peers` (the local domain's calls ring
    /// the places the others hold).
    pub peers: bool,
    /// More keys of `[local]` (TOML lines), such as limits for a benchmark.
    pub local_extra: &'a str,
    /// More keys of `[sip]` (TOML lines).
    pub sip_extra: &'a str,
    /// How many RTP ports each has.
    pub rtp_ports: u16,
}

/// One gateway process.
#[derive(Debug)]
pub struct Instance {
    child: Option<Child>,
    /// Its id (`[instance] id`): gw1, gw2, ...
    pub id: String,
    /// Its loopback address (everything it listens on).
    pub ip: Ipv4Addr,
    /// Its HTTP listener.
    pub http: SocketAddr,
    /// Its SIP listener (UDP and TCP).
    pub sip: SocketAddr,
    config: PathBuf,
    dir: TempDir,
    /// What it logged.
    pub log: Log,
}

impl Instance {
    /// Starts `count` instances with `settings`, each knowing the others' SIP addresses as its
    /// peers when `settings.peers` says so.
    pub fn start_all(count: u8, settings: &Settings<'_>) -> Vec<Instance> {
        let sips: Vec<SocketAddr> = (1..=count)
            .map(|number| {
                SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(127, 0, 0, number + 1)),
                    free_port(),
                )
            })
            .collect();
        (1..=count)
            .map(|number| {
                let sip = sips[usize::from(number - 1)];
                let peers: Vec<SocketAddr> = if settings.peers {
                    sips.iter().copied().filter(|peer| *peer != sip).collect()
                } else {
                    Vec::new()
                };
                Instance::start(number, sip, settings, &peers)
            })
            .collect()
    }

    /// Starts instance `number` (1, 2, ...) at 127.0.0.(number + 1) with its SIP listener at
    /// `sip`, whose configuration is the common part below (its message store in PostgreSQL
    /// when `settings` names one, else SQLite of its own; `peers` as `[instance] peers`), and
    /// waits until `/health` answers.
    fn start(
        number: u8,
        sip: SocketAddr,
        settings: &Settings<'_>,
        peers: &[SocketAddr],
    ) -> Instance {
        let ip = Ipv4Addr::new(127, 0, 0, number + 1);
        let dir = TempDir::new();
        let http = SocketAddr::new(IpAddr::V4(ip), free_port());
        let sip_registrar = settings.registrar;
        let postgres_url = settings.postgres_url;
        let peers: Vec<String> = peers.iter().map(|peer| format!("\"{peer}\"")).collect();
        let browser_port = free_port();
        let rtp = crate::peers::free_ports(settings.rtp_ports);
        let id = format!("gw{number}");
        let text = format!(
            "[http]\nlisten = \"{http}\"\nproxy_protocol_from = [\"127.0.0.1\"]\n\
             [instance]\nid = \"{id}\"\nadmin_token = \"{ADMIN_TOKEN}\"\ndrain_timeout = 60\n\
             peers = [{peers}]\n\
             [sip]\nlisten = \"{ip}\"\nudp_port = {port}\ntcp_port = {port}\ntls_port = 0\n\
             outbound_proxy = \"sip:127.0.0.1:{sip_registrar}\"\nregister_expires = 60\n{sip_extra}\n\
             [media]\nlisten = \"{ip}\"\nbrowser_port = {browser_port}\nrtp_port_min = {rtp}\n\
             rtp_port_max = {rtp_max}\nmedia_timeout = 10\n\
             [local]\ndomain = \"local.test\"\nopen_registration = true\n{local_extra}\n\
             [storage]\ndata_dir = \"{data}\"\npostgres_url = \"{postgres}\"\n",
            port = sip.port(),
            rtp_max = rtp + settings.rtp_ports - 1,
            data = dir.path().join("data").display(),
            postgres = postgres_url.unwrap_or_default(),
            peers = peers.join(", "),
            local_extra = settings.local_extra,
            sip_extra = settings.sip_extra,
        );
        let config = dir.path().join("config.toml");
        std::fs::write(&config, text).expect("write the instance's configuration");
        let mut instance = Instance {
            child: None,
            id,
            ip,
            http,
            sip,
            config,
            dir,
            log: Log::default(),
        };
        instance.spawn();
        instance
    }

    fn spawn(&mut self) {
        let mut child = Command::new(gateway_binary())
            .arg("--config")
            .arg(&self.config)
            .current_dir(self.dir.path())
            .env(
                "RUST_LOG",
                std::env::var("GATEWAY_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the gateway");
        self.log = Log::collect(&mut child);
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(self.http).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("{} exited ({status}):\n{}", self.id, self.log.text());
            }
            assert!(
                Instant::now() < deadline,
                "{} did not start:\n{}",
                self.id,
                self.log.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it again, with the same configuration and addresses.
    pub fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "{} is still running: wait for it first",
            self.id
        );
        self.spawn();
    }

    /// The sylkRTC URL of the instance itself (not through HAProxy).
    pub fn url(&self) -> String {
        format!("ws://{}/webrtcgateway/ws", self.http)
    }

    /// `GET path` on the instance: the status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(connect_from(DIRECT_SOURCE, self.http).await, path).await
    }

    /// A sylkRTC client connected to the instance itself (not through HAProxy), or the
    /// refusal of its upgrade.
    pub async fn client(&self) -> Result<Client, crate::Refused> {
        let stream = connect_from(DIRECT_SOURCE, self.http).await;
        Client::connect_over(Box::new(stream), &self.url(), &["sylkRTC-2"], None).await
    }

    /// The value of a `/metrics` sample (the line starting with `series` and a space).
    pub async fn metric(&self, series: &str) -> f64 {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "{}'s /metrics", self.id);
        body.lines()
            .find_map(|line| {
                line.strip_prefix(series)
                    .filter(|rest| rest.starts_with(' '))
            })
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no sample {series} in {}'s\n{body}", self.id))
    }

    /// `POST /admin/drain` with `token`: the status code.
    pub async fn post_drain(&self, token: Option<&str>) -> u16 {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = connect_from(DIRECT_SOURCE, self.http).await;
        let authorization = token
            .map(|token| format!("Authorization: Bearer {token}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "POST /admin/drain HTTP/1.1\r\nHost: {}\r\n{authorization}Content-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.http
        );
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .expect("read the response");
        response
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("a status line")
    }

    /// Sends SIGTERM (the instance drains) or SIGKILL.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Waits at most `within` for the process to end: its exit status.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            let child = self.child.as_mut().expect("started");
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop within {within:?}:\n{}",
                self.id,
                self.log.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().ok().flatten().is_none())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// HAProxy in front of three instances, run with `docs/deployment/haproxy.cfg`.
#[derive(Debug)]
pub struct Haproxy {
    child: Child,
    /// Where browsers connect.
    pub addr: SocketAddr,
    /// What it logged.
    pub log: Log,
}

impl Haproxy {
    /// Starts it in front of `instances` (three), checking their `/health` every 200 ms.
    pub fn start(instances: &[Instance]) -> Haproxy {
        assert_eq!(instances.len(), 3, "the shipped file names three instances");
        let binary = require("haproxy", "haproxy");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut command = Command::new(binary);
        command
            .arg("-db")
            .arg("-f")
            .arg(deployment_dir().join("haproxy.cfg"))
            .env("LISTEN", addr.to_string())
            .env("CHECK_INTER", "200ms");
        for (index, instance) in instances.iter().enumerate() {
            command.env(format!("GW{}", index + 1), instance.http.to_string());
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start haproxy");
        let log = Log::collect(&mut child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("haproxy exited ({status}):\n{}", log.text());
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not start:\n{}",
                log.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Haproxy { child, addr, log }
    }

    /// Waits until HAProxy has said `count` times that its server `name` (gw1...) is `state`
    /// (`UP` or `DOWN`), for at most 10 s.
    pub async fn wait_server(&self, name: &str, state: &str, count: usize) {
        let needle = format!("Server gateways/{name} is {state},");
        let deadline = Instant::now() + Duration::from_secs(10);
        // It writes each state change twice: as a warning and as a log line.
        while self.log.count(&needle) < count * 2 {
            assert!(
                Instant::now() < deadline,
                "haproxy never saw {name} {state}:\n{}",
                self.log.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The sylkRTC URL through HAProxy.
    pub fn url(&self) -> String {
        format!("ws://{}/webrtcgateway/ws", self.addr)
    }

    /// A sylkRTC client connected through HAProxy from the local address `source` (a
    /// loopback address, so that the instance's view of the client can be told from
    /// HAProxy's own 127.0.0.1), its ready event read.
    pub async fn client_from(&self, source: Ipv4Addr) -> Client {
        let stream = connect_from(source, self.addr).await;
        let mut client = Client::connect_over(Box::new(stream), &self.url(), &["sylkRTC-2"], None)
            .await
            .expect("the upgrade succeeds through haproxy");
        client.expect_ready().await;
        client
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kamailio's dispatcher in front of the instances, run with `docs/deployment/kamailio.cfg`.
#[derive(Debug)]
pub struct Dispatcher {
    child: Child,
    /// Its SIP port on 127.0.0.1 (UDP and TCP).
    pub port: u16,
    dir: TempDir,
    /// What it logged.
    pub log: Log,
}

impl Dispatcher {
    /// Starts it with `instances` as set 1, probing them every second.
    pub fn start(instances: &[Instance]) -> Dispatcher {
        let binary = require("kamailio", "kamailio");
        require(
            "/usr/lib/x86_64-linux-gnu/kamailio/modules/dispatcher.so",
            "kamailio",
        );
        let dir = TempDir::new();
        let list = dir.path().join("dispatcher.list");
        let lines: String = instances
            .iter()
            .map(|instance| format!("1 sip:{} 0 0\n", instance.sip))
            .collect();
        std::fs::write(&list, lines).expect("write the dispatcher list");
        let port = free_port();
        let mut child = Command::new(binary)
            // Shared memory for its transactions: the default 64 MB runs out at about 2,000
            // requests a second (each kept a few seconds after its answer).
            .args(["-m", "512", "-DD", "-E", "-f"])
            .arg(deployment_dir().join("kamailio.cfg"))
            .arg("-Y")
            .arg(dir.path())
            .arg("-A")
            .arg("ADDR=127.0.0.1")
            .arg("-A")
            .arg(format!("SIPPORT={port}"))
            .arg("-A")
            .arg(format!("DSLIST=\"{}\"", list.display()))
            .arg("-A")
            .arg("PINGINTERVAL=1")
            .arg("-A")
            .arg(format!(
                "CTLSOCK=\"unix:{}\"",
                dir.path().join("ctl").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kamailio");
        let log = Log::collect(&mut child);
        let dispatcher = Dispatcher {
            child,
            port,
            dir,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "kamailio (dispatcher) did not start:\n{}",
                dispatcher.log.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        dispatcher
    }

    /// Its main process's id (its children do the work).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The instances' state as the dispatcher sees it (`kamcmd dispatcher.list`): for each
    /// destination URI, its flags (`AP`: active and probing, `IP`: inactive...).
    pub fn states(&self) -> Vec<(String, String)> {
        let kamcmd = require("kamcmd", "kamailio");
        let output = Command::new(kamcmd)
            .arg("-s")
            .arg(format!("unix:{}", self.dir.path().join("ctl").display()))
            .arg("dispatcher.list")
            .output()
            .expect("run kamcmd");
        let text = String::from_utf8_lossy(&output.stdout);
        let mut states = Vec::new();
        let mut uri = None;
        for line in text.lines().map(str::trim) {
            if let Some(value) = line.strip_prefix("URI:") {
                uri = Some(value.trim().to_owned());
            } else if let Some(flags) = line.strip_prefix("FLAGS:")
                && let Some(uri) = uri.take()
            {
                states.push((uri, flags.trim().to_owned()));
            }
        }
        states
    }

    /// Waits until the dispatcher's flags for `instance` start with `flags` (`A` active, `I`
    /// inactive), for at most 10 s.
    pub async fn wait_state(&self, instance: &Instance, flags: &str) {
        let uri = format!("sip:{}", instance.sip);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let states = self.states();
            if states
                .iter()
                .any(|(got, state)| *got == uri && state.starts_with(flags))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the dispatcher never saw {} as {flags}: {states:?}\n{}",
                instance.id,
                self.log.text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
