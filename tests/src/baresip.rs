//! baresip as the far-end phone: it registers with the test registrar, auto-answers, plays its
//! own tone from a WAV file and records what it receives (`*-dec.wav`); the harness steers it
//! over its ctrl_tcp socket (JSON in netstrings) and keeps every event it reports.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::TempDir;
use crate::audio::{PROBES, Tone, dominant, read_wav, voiced, write_wav};
use crate::peers::{Log, data_dir, free_port, free_ports, require};

/// A baresip user agent.
#[derive(Debug)]
pub struct Baresip {
    child: Child,
    dir: TempDir,
    /// Its SIP port.
    pub sip_port: u16,
    control: Mutex<TcpStream>,
    messages: Arc<Mutex<Vec<Value>>>,
    /// What it printed.
    pub log: Log,
}

/// baresip's video settings: a moving test picture as the camera, a display that only counts
/// frames, VP8 and VP9, and snapshots of what it receives.
const VIDEO: &str = "module\t\t\tfakevideo.so\nmodule\t\t\tvp8.so\nmodule\t\t\tvp9.so\n\
module\t\t\tavcodec.so\n\
module\t\t\tsnapshot.so\nvideo_source\t\tfakevideo,nil\nvideo_display\t\tfakevideo,nil\n\
video_size\t\t320x240\nvideo_bitrate\t\t300000\nvideo_fps\t\t15\n";

/// A port that is free together with the one above it (baresip opens TLS on port+1).
/// A port for baresip's SIP, whose TLS listener takes the next one too.
fn free_pair() -> u16 {
    free_ports(2)
}

/// How long a call waits for RTP before baresip ends it, unless a test says otherwise.
const RTP_TIMEOUT: u32 = 60;

impl Baresip {
    /// Starts `user` (password `password`, registering with the registrar on `registrar_port`),
    /// offering `codecs` (baresip's full names, such as `PCMU/8000/1`), playing `tone` Hz.
    pub fn start(
        user: &str,
        password: &str,
        registrar_port: u16,
        codecs: &str,
        tone: f64,
    ) -> Baresip {
        Baresip::start_with(user, password, registrar_port, codecs, tone, true)
    }

    /// As [`Baresip::start`]; without `auto_answer`, calls ring until told (`accept`).
    pub fn start_with(
        user: &str,
        password: &str,
        registrar_port: u16,
        codecs: &str,
        tone: f64,
        auto_answer: bool,
    ) -> Baresip {
        let account = format!(
            "<sip:{user}@127.0.0.1:{registrar_port};transport=udp>;auth_pass={password};answermode={mode};audio_codecs={codecs};regint=300\n",
            mode = if auto_answer { "auto" } else { "manual" }
        );
        Baresip::start_account(&account, tone)
    }

    /// A phone registering `user@domain` through the SIP server at `127.0.0.1:port` (its
    /// outbound proxy), auto-answering.
    pub fn start_at_domain(
        user: &str,
        password: &str,
        domain: &str,
        port: u16,
        codecs: &str,
        tone: f64,
    ) -> Baresip {
        let account = format!(
            "<sip:{user}@{domain};transport=udp>;outbound=\"sip:127.0.0.1:{port};transport=udp\";auth_pass={password};answermode=auto;audio_codecs={codecs};regint=300\n"
        );
        Baresip::start_account(&account, tone)
    }

    /// Starts baresip with one account line (baresip's `accounts` syntax), playing `tone` Hz.
    pub fn start_account(account: &str, tone: f64) -> Baresip {
        Baresip::launch(account, tone, false, false)
    }

    /// As [`Baresip::start_account`], with `contact` (`<sip:user@domain>`) as its only and
    /// current contact: the `message TEXT` command sends it a SIP MESSAGE. Traced (`-s`): the
    /// MESSAGEs it receives are in its log.
    pub fn start_messaging(account: &str, contact: &str) -> Baresip {
        let baresip = Baresip::launch_with(account, 440.0, true, false, Some(contact));
        baresip.command("contact_next", "");
        baresip
    }

    /// As [`Baresip::start_account`], with baresip's `presence` module and `contacts`
    /// (`<sip:user@domain>;presence=p2p` ones are subscribed to, through the account's
    /// outbound proxy). Traced (`-s`): the SUBSCRIBE, NOTIFY and PUBLISH requests are in its
    /// log. `presence_online` and `presence_offline` set what it publishes and notifies; an
    /// account with `pubint=N` PUBLISHes its state.
    pub fn start_presence(account: &str, contacts: &[&str]) -> Baresip {
        Baresip::launch_full(account, 440.0, true, false, contacts, true, RTP_TIMEOUT)
    }

    /// As [`Baresip::start_account`], with video: the `fakevideo` camera and display, the
    /// VP8, VP9 and H.264 (`avcodec`, from `baresip-ffmpeg`) codecs, and the `snapshot` module (`snapshot_recv PATH` saves the next
    /// received frame). The account line chooses the video codecs (`video_codecs=VP8`).
    pub fn start_video(account: &str, tone: f64) -> Baresip {
        require("/usr/lib/baresip/modules/avcodec.so", "baresip-ffmpeg");
        Baresip::launch(account, tone, false, true)
    }

    /// As [`Baresip::start_account`], printing every SIP message it sends and receives to its
    /// log (`-s`), for tests that look at a header.
    pub fn start_account_traced(account: &str, tone: f64) -> Baresip {
        Baresip::launch(account, tone, true, false)
    }

    fn launch(account: &str, tone: f64, trace: bool, video: bool) -> Baresip {
        Baresip::launch_with(account, tone, trace, video, None)
    }

    fn launch_with(
        account: &str,
        tone: f64,
        trace: bool,
        video: bool,
        contact: Option<&str>,
    ) -> Baresip {
        let contacts: Vec<&str> = contact.into_iter().collect();
        Baresip::launch_full(account, tone, trace, video, &contacts, false, RTP_TIMEOUT)
    }

    /// As [`Baresip::start_account`], ending a call by itself once no RTP has come for
    /// `seconds` (a far end that vanished).
    pub fn start_with_rtp_timeout(account: &str, tone: f64, seconds: u32) -> Baresip {
        Baresip::launch_full(account, tone, false, false, &[], false, seconds)
    }

    fn launch_full(
        account: &str,
        tone: f64,
        trace: bool,
        video: bool,
        contacts: &[&str],
        presence: bool,
        rtp_timeout: u32,
    ) -> Baresip {
        let binary = require("baresip", "baresip-core");
        let dir = TempDir::new();
        let sip_port = free_pair();
        let control_port = free_port();
        let rtp = free_ports(20);
        let sound = dir.path().join("sound");
        std::fs::create_dir_all(&sound).expect("a sound directory");
        let source = dir.path().join("tone.wav");
        let mut generator = Tone::new(tone, 8000);
        write_wav(&source, &generator.samples(8000 * 60), 8000).expect("write the tone");
        let template = std::fs::read_to_string(data_dir().join("baresip/config.tmpl"))
            .expect("the baresip template");
        let config = template
            .replace("@SIPPORT@", &sip_port.to_string())
            .replace("@CTRLPORT@", &control_port.to_string())
            .replace("@RTPPORTS@", &format!("{rtp}-{}", rtp + 19))
            .replace("@SRCWAV@", &source.display().to_string())
            .replace("@SNDPATH@", &sound.display().to_string())
            .replace("@RTPTIMEOUT@", &rtp_timeout.to_string());
        let config = if contacts.is_empty() {
            config
        } else {
            format!("{config}\nmodule_app\t\t\tcontact.so\n")
        };
        let config = if presence {
            format!("{config}\nmodule_app\t\t\tpresence.so\n")
        } else {
            config
        };
        let config = if video {
            format!("{config}\n{VIDEO}")
        } else {
            config
        };
        std::fs::write(dir.path().join("config"), config).expect("write the config");
        std::fs::write(dir.path().join("accounts"), account).expect("write the account");
        if !contacts.is_empty() {
            let list: String = contacts
                .iter()
                .map(|contact| format!("{contact}\n"))
                .collect();
            std::fs::write(dir.path().join("contacts"), list).expect("write the contacts");
        }
        let mut child = Command::new(binary)
            .args(trace.then_some("-s"))
            .arg("-f")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start baresip");
        let log = Log::collect_all(&mut child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let control = loop {
            match TcpStream::connect(("127.0.0.1", control_port)) {
                Ok(stream) => break stream,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(error) => panic!("baresip's control port: {error}\n{}", log.text()),
            }
        };
        let messages = Arc::new(Mutex::new(Vec::new()));
        let reader = control.try_clone().expect("clone the control socket");
        let sink = messages.clone();
        std::thread::spawn(move || read_messages(reader, &sink));
        Baresip {
            child,
            dir,
            sip_port,
            control: Mutex::new(control),
            messages,
            log,
        }
    }

    /// Sends a command (`dial`, `hangup`, `hold`, `resume`, `accept`, `quit`...).
    pub fn command(&self, command: &str, params: &str) {
        let body = json!({"command": command, "params": params, "token": command}).to_string();
        let frame = format!("{}:{body},", body.len());
        let mut control = self.control.lock().expect("control lock");
        control
            .write_all(frame.as_bytes())
            .expect("write to baresip's control port");
    }

    /// Every event so far (`{"event":true,"type":"CALL_ESTABLISHED",...}`).
    pub fn events(&self) -> Vec<Value> {
        self.messages
            .lock()
            .map(|messages| {
                messages
                    .iter()
                    .filter(|m| m["event"] == true)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every answer to a command so far (`{"response":true,"ok":true,"data":"...",...}`).
    pub fn responses(&self) -> Vec<Value> {
        self.messages
            .lock()
            .map(|messages| {
                messages
                    .iter()
                    .filter(|m| m["response"] == true)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many events of `kind` came.
    pub fn count(&self, kind: &str) -> usize {
        self.events()
            .iter()
            .filter(|event| event["type"] == kind)
            .count()
    }

    /// Waits until `count` events of `kind` came; false on timeout.
    pub async fn wait_for(&self, kind: &str, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.count(kind) >= count {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Waits until its log has a line with `needle`; false on timeout.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log.count(needle) > 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// The recordings of what it received (`*-dec.wav`), oldest first.
    pub fn received_recordings(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("sound"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|path| path.to_string_lossy().ends_with("-dec.wav"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// Waits (at most `timeout`) until the latest call's recording, read while the call goes
    /// on, holds `seconds` of sound whose dominant tone is `tone`.
    pub async fn until_received(&self, tone: f64, seconds: f64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self
                .received_tone()
                .is_some_and(|(heard, length)| heard == tone && length >= seconds)
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The dominant tone of the latest call's recording and how many seconds carry sound.
    pub fn received_tone(&self) -> Option<(f64, f64)> {
        let path = self.received_recordings().pop()?;
        let (samples, rate) = read_wav(&path).ok()?;
        let sound = voiced(&samples, rate);
        let seconds = sound.len() as f64 / f64::from(rate);
        let (frequency, _) = dominant(&sound[..sound.len().min(rate as usize * 5)], rate, &PROBES);
        Some((frequency, seconds))
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads netstrings of JSON from baresip's control socket into `sink`.
fn read_messages(mut stream: TcpStream, sink: &Mutex<Vec<Value>>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(read) = stream.read(&mut chunk) {
        if read == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..read]);
        while let Some(colon) = buffer.iter().position(|b| *b == b':') {
            let Some(length) = std::str::from_utf8(&buffer[..colon])
                .ok()
                .and_then(|text| text.parse::<usize>().ok())
            else {
                buffer.clear();
                break;
            };
            let end = colon + 1 + length;
            if buffer.len() < end + 1 {
                break;
            }
            if let Ok(message) = serde_json::from_slice::<Value>(&buffer[colon + 1..end])
                && let Ok(mut sink) = sink.lock()
            {
                sink.push(message);
            }
            buffer.drain(..=end);
        }
    }
}
