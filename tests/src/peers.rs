//! Real SIP peers for the end-to-end tests: kamailio (registrar and proxy with digest auth) and
//! dnsmasq (SRV and A records). Each test starts its own, on free loopback ports.
//!
//! A missing program is a test failure that names its Debian package (`tests/install-peers`
//! installs them); tests never skip.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::TempDir;
use crate::postgres::Postgres;

/// The users of the test registrar: (user, password), domain 127.0.0.1.
pub const USERS: [(&str, &str); 3] = [("alice", "alicepw"), ("bob", "bobpw"), ("carol", "carolpw")];

/// Fails the test, naming the package, when `program` (or an absolute file) is not installed.
pub fn require(program: &str, package: &str) -> PathBuf {
    if program.starts_with('/') && Path::new(program).exists() {
        return PathBuf::from(program);
    }
    for dir in [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/bin",
        "/usr/local/sbin",
    ] {
        let path = Path::new(dir).join(program);
        if path.exists() {
            return path;
        }
    }
    panic!(
        "{program} is not installed: install the Debian package {package} (tests/install-peers does it)"
    );
}

/// The directory of the tests' data files.
pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// A free port on 127.0.0.1 for both UDP and TCP (as far as can be known without holding it),
/// below the kernel's ephemeral range (32768 and up): a peer started with it (baresip,
/// kamailio, sipp) binds it a moment later, and meanwhile an ephemeral port could become some
/// outgoing connection's or socket's local port, which never happens below that range.
/// Ports 10000-19999; each process starts at its own place, and never hands a port out twice
/// in a row.
pub fn free_port() -> u16 {
    free_in(10_000, 1)
}

/// The first of `count` consecutive free ports (an even one), as [`free_port`] picks them: no
/// other pick of this process hands them out while the counter goes round.
pub fn free_ports(count: u16) -> u16 {
    free_in(10_000, count)
}

/// As [`free_port`], in 20000-29999 (for servers such as Synapse, so that they never meet the
/// peers' ports).
pub fn free_listening_port() -> u16 {
    free_in(20_000, 1)
}

fn free_in(base: u16, count: u16) -> u16 {
    static NEXT: [std::sync::atomic::AtomicU32; 2] = [
        std::sync::atomic::AtomicU32::new(0),
        std::sync::atomic::AtomicU32::new(0),
    ];
    let next = &NEXT[usize::from(base >= 20_000)];
    let start = std::process::id() % 625 * 16;
    let free = |port: u16| {
        UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
    };
    loop {
        // Each pick takes the next `count` places (rounded up to even) of one cycle of 10000,
        // so picks never overlap until the counter goes round; a range that would run past the
        // top is skipped whole.
        let step = u32::from(count + count % 2);
        let offset = next.fetch_add(step, std::sync::atomic::Ordering::Relaxed);
        let place = (start + offset) % 10_000;
        if place + u32::from(count) > 10_000 {
            continue;
        }
        let first = base + u16::try_from(place).unwrap_or_default();
        if (first..first + count).all(free) {
            return first;
        }
    }
}

/// The output of a child process, collected by a thread.
#[derive(Debug, Clone, Default)]
pub struct Log(Arc<Mutex<String>>);

impl Log {
    pub(crate) fn collect(child: &mut Child) -> Log {
        let log = Log::default();
        if let Some(stderr) = child.stderr.take() {
            let sink = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut text = sink.0.lock().expect("log lock");
                    text.push_str(&line);
                    text.push('\n');
                }
            });
        }
        log
    }

    /// Collects both standard output and standard error.
    pub fn collect_all(child: &mut Child) -> Log {
        let log = Log::collect(child);
        if let Some(stdout) = child.stdout.take() {
            let sink = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let mut text = sink.0.lock().expect("log lock");
                    text.push_str(&line);
                    text.push('\n');
                }
            });
        }
        log
    }

    /// Everything so far.
    pub fn text(&self) -> String {
        self.0.lock().expect("log lock").clone()
    }

    /// How many lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.text()
            .lines()
            .filter(|line| line.contains(needle))
            .count()
    }
}

/// Settings of a test registrar.
#[derive(Debug, Clone)]
pub struct KamailioOptions {
    /// The longest expiry it grants.
    pub max_expires: u32,
    /// The shortest expiry it accepts (below it: 423).
    pub min_expires: u32,
    /// A TLS listener with this certificate and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// A db_text directory with the subscriber table (the tests' three users otherwise).
    pub db: Option<PathBuf>,
    /// The digest realm it challenges with (the From domain otherwise).
    pub realm: Option<String>,
    /// The digest algorithm it challenges with (`SHA-256`; MD5 otherwise).
    pub algorithm: Option<String>,
    /// Also a presence server and a resource list server (RFC 4662), on a PostgreSQL database
    /// of the test run's server made from kamailio's own schema; lists are added with
    /// [`Kamailio::add_presence_list`].
    pub presence: bool,
}

impl Default for KamailioOptions {
    fn default() -> Self {
        KamailioOptions {
            max_expires: 3600,
            min_expires: 1,
            tls: None,
            db: None,
            realm: None,
            algorithm: None,
            presence: false,
        }
    }
}

/// A kamailio registrar and proxy on 127.0.0.1, UDP and TCP.
#[derive(Debug)]
pub struct Kamailio {
    child: Child,
    /// Its SIP port (UDP and TCP).
    pub port: u16,
    /// Its TLS port, when it listens for TLS.
    pub tls_port: Option<u16>,
    options: KamailioOptions,
    /// Its presence database's name and URL, when it serves presence.
    presence: Option<(String, String)>,
    dir: TempDir,
    /// What it logged (`REGISTER ok ...` lines among others).
    pub log: Log,
}

impl Kamailio {
    /// Starts one and waits until it answers.
    pub fn start(options: KamailioOptions) -> Kamailio {
        let dir = TempDir::new();
        let port = free_port();
        let tls_port = options.tls.as_ref().map(|_| free_port());
        let presence = options.presence.then(presence_database);
        let (child, log) = Self::spawn(&options, presence.as_ref(), port, tls_port, dir.path());
        let kamailio = Kamailio {
            child,
            port,
            tls_port,
            options,
            presence,
            dir,
            log,
        };
        kamailio.wait_ready();
        kamailio
    }

    fn spawn(
        options: &KamailioOptions,
        presence: Option<&(String, String)>,
        port: u16,
        tls_port: Option<u16>,
        dir: &Path,
    ) -> (Child, Log) {
        let binary = require("kamailio", "kamailio");
        let data = data_dir().join("kamailio");
        let mut command = Command::new(binary);
        if let (Some((certificate, key)), Some(tls_port)) = (&options.tls, tls_port) {
            require(
                "/usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so",
                "kamailio-tls-modules",
            );
            let config = dir.join("tls.cfg");
            let text = format!(
                "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n\
                 private_key = {}\ncertificate = {}\n\n[client:default]\nverify_certificate = no\n\
                 require_certificate = no\n",
                key.display(),
                certificate.display()
            );
            std::fs::write(&config, text).expect("write kamailio's TLS configuration");
            command
                .arg("-A")
                .arg(format!("TLSPORT={tls_port}"))
                .arg("-A")
                .arg(format!("TLSCFG=\"{}\"", config.display()));
        }
        if let Some(realm) = &options.realm {
            command.arg("-A").arg(format!("REALM=\"{realm}\""));
        }
        if let Some(algorithm) = &options.algorithm {
            command.arg("-A").arg(format!("DIGESTALG=\"{algorithm}\""));
        }
        if let Some((_, url)) = presence {
            command
                .arg("-A")
                .arg(format!("PRESDB=\"{url}\""))
                .arg("-A")
                .arg(format!("PRESADDR=\"sip:presence@127.0.0.1:{port}\""))
                .arg("-A")
                .arg(format!("RLSADDR=\"sip:rls@127.0.0.1:{port}\""))
                .arg("-A")
                .arg(format!("SELF=\"sip:127.0.0.1:{port}\""));
        }
        let mut child = command
            .args(["-DD", "-E", "-f"])
            .arg(data.join("kamailio.cfg"))
            .arg("-Y")
            .arg(dir)
            .arg("-A")
            .arg(format!(
                "DBURL=\"text://{}\"",
                options
                    .db
                    .clone()
                    .unwrap_or_else(|| data.join("db"))
                    .display()
            ))
            .arg("-A")
            .arg(format!("SIPPORT={port}"))
            .arg("-A")
            .arg(format!("MAXEXPIRES={}", options.max_expires))
            .arg("-A")
            .arg(format!("MINEXPIRES={}", options.min_expires))
            .arg("-A")
            .arg(format!("CTLSOCK=\"unix:{}\"", dir.join("ctl").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kamailio");
        let log = Log::collect(&mut child);
        (child, log)
    }

    /// Gives `user` a presence list at `list_user`@127.0.0.1 naming `entries` (SIP URIs), as
    /// an integrated XCAP server would store its rls-services document (RFC 4826).
    pub fn add_presence_list(&self, user: &str, list_user: &str, entries: &[&str]) {
        assert!(
            self.options.presence,
            "kamailio was started without presence"
        );
        let entries: String = entries
            .iter()
            .map(|uri| format!("<rl:entry uri=\"{uri}\"/>"))
            .collect();
        let document = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <rls-services xmlns=\"urn:ietf:params:xml:ns:rls-services\" \
             xmlns:rl=\"urn:ietf:params:xml:ns:resource-lists\">\
             <service uri=\"sip:{list_user}@127.0.0.1\"><list name=\"{list_user}\">{entries}</list>\
             <packages><package>presence</package></packages></service></rls-services>"
        );
        // doc_type 8: rls-services (kamailio's RLS_SERVICE).
        let sql = format!(
            "INSERT INTO xcap (username, domain, doc, doc_type, etag, source, doc_uri, port) \
             VALUES ('{user}', '127.0.0.1', convert_to('{document}', 'UTF8'), 8, 'e1', 0, \
             '/xcap-root/rls-services/users/sip:{user}@127.0.0.1/index', 0);"
        );
        let (database, _) = self
            .presence
            .as_ref()
            .expect("kamailio has a presence database");
        Postgres::shared().psql(database, &sql);
    }

    /// The address to register with.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Waits until an OPTIONS to the server is answered.
    fn wait_ready(&self) {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a probe");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buffer = [0u8; 2048];
        while Instant::now() < deadline {
            let local = socket.local_addr().expect("probe address");
            let options = format!(
                "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKprobe{n}\r\n\
                 From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1>\r\nCall-ID: probe-{n}\r\nCSeq: 1 OPTIONS\r\n\
                 Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                port = self.port,
                n = deadline.elapsed().as_nanos()
            );
            let _ = socket.send_to(options.as_bytes(), self.addr());
            if socket.recv(&mut buffer).is_ok() {
                return;
            }
        }
        panic!(
            "kamailio did not start on port {}:\n{}",
            self.port,
            self.log.text()
        );
    }

    /// Stops it and starts it again on the same port (bindings are lost: they are in memory).
    pub fn restart(&mut self) {
        self.stop();
        let (child, log) = Self::spawn(
            &self.options,
            self.presence.as_ref(),
            self.port,
            self.tls_port,
            self.dir.path(),
        );
        self.child = child;
        self.log = log;
        self.wait_ready();
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    /// The process id of its main process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every binding, from `kamcmd ul.dump`.
    pub fn all_bindings(&self) -> Vec<Binding> {
        let kamcmd = require("kamcmd", "kamailio");
        let output = Command::new(kamcmd)
            .arg("-s")
            .arg(format!("unix:{}", self.dir.path().join("ctl").display()))
            .arg("ul.dump")
            .output()
            .expect("run kamcmd");
        parse_dump(&String::from_utf8_lossy(&output.stdout))
    }

    /// Adds a binding of `user` to `contact` (for an hour), as a registration would: for a
    /// far end that cannot register itself (sipp).
    pub fn add_binding(&self, user: &str, contact: &str) {
        let kamcmd = require("kamcmd", "kamailio");
        let output = Command::new(kamcmd)
            .arg("-s")
            .arg(format!("unix:{}", self.dir.path().join("ctl").display()))
            .args(["ul.add", "location", user, contact, "3600", "1.0", "."])
            .args(["0", "0", "0"])
            .output()
            .expect("run kamcmd");
        assert!(
            output.status.success() && self.bindings(user).iter().any(|b| b.address == contact),
            "ul.add failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The bindings of `user`, from `kamcmd ul.dump`.
    pub fn bindings(&self, user: &str) -> Vec<Binding> {
        self.all_bindings()
            .into_iter()
            .filter(|binding| binding.aor == user)
            .collect()
    }

    /// Waits until `user` has `count` bindings.
    pub fn wait_bindings(&self, user: &str, count: usize, within: Duration) -> Vec<Binding> {
        let deadline = Instant::now() + within;
        loop {
            let bindings = self.bindings(user);
            if bindings.len() == count {
                return bindings;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{user} has {} bindings, expected {count}: {bindings:?}\n{}",
                    bindings.len(),
                    self.log.text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One binding in kamailio's location table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Binding {
    /// The address of record (the user).
    pub aor: String,
    /// The Contact URI.
    pub address: String,
    /// Seconds left.
    pub expires: i64,
    /// The socket it arrived on (`udp:127.0.0.1:5060`).
    pub socket: String,
    /// Its `+sip.instance`.
    pub instance: String,
    /// The User-Agent.
    pub user_agent: String,
}

/// Makes kamailio's presence and resource list tables in a new database of the test run's
/// PostgreSQL server (from the schema kamailio-postgres-modules ships), and returns its name
/// and kamailio's URL for it.
fn presence_database() -> (String, String) {
    require(
        "/usr/lib/x86_64-linux-gnu/kamailio/modules/rls.so",
        "kamailio-presence-modules",
    );
    let schema = require(
        "/usr/share/kamailio/postgres/rls-create.sql",
        "kamailio-postgres-modules",
    );
    let schema = schema.parent().expect("the schema's directory");
    let postgres = Postgres::shared();
    let url = postgres.database();
    let name = url.rsplit('/').next().expect("a database name").to_owned();
    let mut sql = String::new();
    for table in ["standard", "presence", "rls"] {
        let file = schema.join(format!("{table}-create.sql"));
        sql += &std::fs::read_to_string(&file)
            .unwrap_or_else(|error| panic!("{}: {error}", file.display()));
    }
    postgres.psql(&name, &sql);
    // kamailio's URL wants a password; the test server trusts loopback.
    let url = url.replacen("postgres@", "postgres:unused@", 1);
    (name, url)
}

fn parse_dump(text: &str) -> Vec<Binding> {
    let mut bindings = Vec::new();
    let mut aor = String::new();
    let mut current: Option<Binding> = None;
    for line in text.lines() {
        let line = line.trim();
        let Some((key, value)) = line.split_once(": ") else {
            continue;
        };
        match key {
            "AoR" => aor = value.to_owned(),
            "Address" => {
                if let Some(done) = current.take() {
                    bindings.push(done);
                }
                current = Some(Binding {
                    aor: aor.clone(),
                    address: value.to_owned(),
                    ..Binding::default()
                });
            }
            "Expires" => {
                if let Some(binding) = &mut current {
                    binding.expires = value.parse().unwrap_or(-1);
                }
            }
            "Socket" => {
                if let Some(binding) = &mut current {
                    binding.socket = value.to_owned();
                }
            }
            "Instance" => {
                if let Some(binding) = &mut current {
                    binding.instance = value.to_owned();
                }
            }
            "User-Agent" => {
                if let Some(binding) = &mut current {
                    binding.user_agent = value.to_owned();
                }
            }
            _ => {}
        }
    }
    if let Some(done) = current {
        bindings.push(done);
    }
    bindings
}

/// A DNS server for the tests: dnsmasq on 127.0.0.1, answering only the records it is given.
#[derive(Debug)]
pub struct Dnsmasq {
    child: Child,
    /// Its address.
    pub addr: SocketAddr,
}

impl Dnsmasq {
    /// Starts one with these extra options (`--srv-host=...`, `--address=/name/ip`, ...).
    pub fn start(records: &[String]) -> Dnsmasq {
        Self::start_at(free_port(), records)
    }

    /// As [`Dnsmasq::start`], on this port (to change the records a client is given: stop one,
    /// start another where it was).
    pub fn start_at(port: u16, records: &[String]) -> Dnsmasq {
        let binary = require("dnsmasq", "dnsmasq-base");
        let child = Command::new(binary)
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--bind-interfaces",
            ])
            .args([
                "--listen-address=127.0.0.1",
                "--user=root",
                "--pid-file",
                "--log-queries",
            ])
            .arg(format!("--port={port}"))
            .args(records)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // Held from here, so that a failed start still stops the process.
        let dnsmasq = Dnsmasq { child, addr };
        // Ready when it answers a query.
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a probe");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let query = [
            0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 4, b't', b'e', b's', b't', 0, 0, 1, 0, 1,
        ];
        let mut buffer = [0u8; 512];
        for _ in 0..100 {
            let _ = socket.send_to(&query, addr);
            if socket.recv(&mut buffer).is_ok() {
                return dnsmasq;
            }
        }
        panic!("dnsmasq did not start on {addr}");
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ul_dump() {
        let dump = "{\n\tDomains: {\n\t\tDomain: {\n\t\t\tDomain: location\n\t\t\tAoRs: {\n\t\t\t\tInfo: {\n\
                    \t\t\t\t\tAoR: alice\n\t\t\t\t\tContacts: {\n\t\t\t\t\t\tContact: {\n\
                    \t\t\t\t\t\t\tAddress: sip:abc@127.0.0.1:5062;transport=udp\n\t\t\t\t\t\t\tExpires: 594\n\
                    \t\t\t\t\t\t\tSocket: udp:127.0.0.1:5060\n\t\t\t\t\t\t\tInstance: <urn:uuid:1>\n\
                    \t\t\t\t\t\t}\n\t\t\t\t\t\tContact: {\n\t\t\t\t\t\t\tAddress: sip:def@127.0.0.1:5062\n\
                    \t\t\t\t\t\t\tExpires: 10\n\t\t\t\t\t\t}\n";
        let bindings = parse_dump(dump);
        assert_eq!(bindings.len(), 2);
        assert_eq!(bindings[0].aor, "alice");
        assert_eq!(bindings[0].expires, 594);
        assert_eq!(bindings[0].socket, "udp:127.0.0.1:5060");
        assert_eq!(bindings[0].instance, "<urn:uuid:1>");
        assert_eq!(bindings[1].address, "sip:def@127.0.0.1:5062");
    }
}

#[cfg(test)]
mod port_tests {
    use super::*;

    /// Ports and ranges handed out in one run never overlap, whatever their sizes (until the
    /// counter goes round 10000 places: these picks take about 5600).
    #[test]
    fn picks_never_overlap() {
        let mut taken = std::collections::HashSet::new();
        for pick in 0..800_u32 {
            let count = [1, 2, 20, 4][(pick % 4) as usize];
            let first = free_ports(count);
            assert!(
                (10_000..20_000).contains(&first) && first.is_multiple_of(2),
                "{first}"
            );
            for port in first..first + count {
                assert!(taken.insert(port), "port {port} handed out twice");
            }
        }
    }
}
