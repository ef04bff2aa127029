//! Helpers of the benchmark programs (`src/bin/*-bench.rs`): the release gateway as a child
//! process, WebSocket clients with small buffers, and per-process memory and CPU from /proc.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Errors of a benchmark run.
pub type Error = Box<dyn std::error::Error>;

/// A WebSocket client connection.
pub type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// The release gateway binary, next to the running benchmark program.
pub fn gateway_binary() -> Result<PathBuf, Error> {
    let binary = std::env::current_exe()?
        .parent()
        .ok_or("no directory")?
        .join("sylkrtc-gateway");
    if !binary.exists() {
        return Err(format!(
            "{} is missing: build it with `cargo build --release -p gateway`",
            binary.display()
        )
        .into());
    }
    Ok(binary)
}

/// The gateway as a child process, killed when dropped.
#[derive(Debug)]
pub struct GatewayProcess {
    child: Child,
    /// Its HTTP address.
    pub addr: SocketAddr,
    /// Its configuration file and its store's directory, removed with it.
    files: (std::path::PathBuf, std::path::PathBuf),
}

impl GatewayProcess {
    /// Starts the gateway on a free loopback port with `config` (TOML, without `[http]`) and
    /// waits until it accepts connections.
    pub fn start(config: &str) -> Result<GatewayProcess, Error> {
        GatewayProcess::start_pinned(config, None)
    }

    /// As [`GatewayProcess::start`], with more keys of its `[storage]` section (such as
    /// `postgres_url`).
    pub fn start_with_storage(config: &str, storage: &str) -> Result<GatewayProcess, Error> {
        GatewayProcess::launch(config, storage, None)
    }

    /// As [`GatewayProcess::start`], pinned to one CPU core (with `taskset`) when `core` is
    /// given.
    pub fn start_pinned(config: &str, core: Option<usize>) -> Result<GatewayProcess, Error> {
        GatewayProcess::launch(config, "", core)
    }

    fn launch(config: &str, storage: &str, core: Option<usize>) -> Result<GatewayProcess, Error> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let path = std::env::temp_dir().join(format!("bench-{}-{port}.toml", std::process::id()));
        let data = std::env::temp_dir().join(format!("bench-{}-{port}-data", std::process::id()));
        std::fs::write(
            &path,
            format!(
                "[http]\nlisten = \"{addr}\"\n{config}\n[storage]\ndata_dir = {data:?}\n{storage}"
            ),
        )?;
        let mut command = match core {
            Some(core) => {
                let mut command = Command::new(crate::peers::require("taskset", "util-linux"));
                command
                    .arg("-c")
                    .arg(core.to_string())
                    .arg(gateway_binary()?);
                command
            }
            None => Command::new(gateway_binary()?),
        };
        let child = command
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .spawn()?;
        let process = GatewayProcess {
            child,
            addr,
            files: (path, data),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                return Err("the gateway did not start".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(process)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its sylkRTC endpoint.
    pub fn url(&self) -> String {
        format!("ws://{}/webrtcgateway/ws", self.addr)
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.files.0);
        let _ = std::fs::remove_dir_all(&self.files.1);
    }
}

/// A kamailio `db_text` directory whose subscriber table has `count` users `u0`, `u1`, ...
/// at 127.0.0.1, each with the password `pw` and its number.
pub fn subscribers(count: usize) -> Result<crate::TempDir, Error> {
    let db = crate::TempDir::new();
    std::fs::write(
        db.path().join("version"),
        "id(int,auto) table_name(string) table_version(int) \n0:subscriber:7\n",
    )?;
    let mut table = String::from(
        "id(int,auto) username(string) domain(string) password(string) ha1(string,null) ha1b(string,null) \n",
    );
    for index in 0..count {
        table.push_str(&format!("{}:u{index}:127.0.0.1:pw{index}::\n", index + 1));
    }
    std::fs::write(db.path().join("subscriber"), table)?;
    Ok(db)
}

/// Opens a sylkRTC-2 connection with small buffers (thousands of clients must not exhaust the
/// benchmark's own memory) and reads the ready event.
pub async fn connect(url: &str) -> Result<Ws, Error> {
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "sylkRTC-2".parse()?);
    let host = request.uri().authority().ok_or("no host")?.to_string();
    let stream = TcpStream::connect(host).await?;
    stream.set_nodelay(true)?;
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096);
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
    match ws.next().await {
        Some(Ok(Message::Text(text))) if text.contains("ready-event") => Ok(ws),
        other => Err(format!("expected ready-event, got {other:?}").into()),
    }
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS".into())
}

/// User plus system CPU time of a process, in seconds, and its parent's pid.
fn stat(pid: u32) -> Result<(f64, u32), Error> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name (which may contain spaces) are space-separated: ppid is
    // the 4th field, utime and stime the 14th and 15th, in clock ticks (USER_HZ, 100 on Linux).
    let rest = stat.rsplit_once(')').ok_or("bad stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok((ticks as f64 / 100.0, fields[1].parse()?))
}

/// User plus system CPU time of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64, Error> {
    stat(pid).map(|(cpu, _)| cpu)
}

/// CPU time of a process and its children (kamailio runs as a tree of processes).
pub fn tree_cpu_seconds(root: u32) -> Result<f64, Error> {
    let mut total = cpu_seconds(root)?;
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok((cpu, parent)) = stat(pid)
            && parent == root
        {
            total += cpu;
        }
    }
    Ok(total)
}
