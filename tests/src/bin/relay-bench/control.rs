//! Setting calls up on the systems under test: the gateway over sylkRTC, rtpengine over its ng
//! control protocol (bencoded dictionaries over UDP). Both relay between the generator's
//! WebRTC peers and sipp's RTP echo port.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use gateway_tests::Client;
use protocol::{Event, ServerMessage, SessionEvent, SessionState};
use serde_json::json;

/// A sylkRTC connection to the gateway with one account.
pub(crate) struct GatewayControl {
    client: Client,
    next: usize,
}

impl GatewayControl {
    pub(crate) async fn connect(url: &str) -> Result<GatewayControl, String> {
        let mut client = Client::connect(url, &["sylkRTC-2"], None)
            .await
            .map_err(|refused| format!("{refused:?}"))?;
        client.expect_ready().await;
        let ha1 = sip::ha1("bench", "127.0.0.1", "benchpw");
        client
            .expect_ack(
                json!({"sylkrtc": "account-add", "account": "bench@127.0.0.1", "password": ha1}),
            )
            .await;
        Ok(GatewayControl { client, next: 0 })
    }

    /// Places one call per offer (all at once, pipelined); returns each answer, in order, and
    /// the time from request to `accepted` of each.
    pub(crate) async fn calls(
        &mut self,
        offers: &[String],
    ) -> Result<(Vec<String>, Vec<Duration>), String> {
        let mut started = HashMap::new();
        let mut ids = Vec::with_capacity(offers.len());
        for offer in offers {
            let session = format!("bench-{}", self.next);
            self.next += 1;
            self.client
                .send_json(&json!({"sylkrtc": "session-create", "transaction": session,
                    "account": "bench@127.0.0.1", "session": session, "uri": "echo@127.0.0.1", "sdp": offer}))
                .await;
            started.insert(session.clone(), Instant::now());
            ids.push(session);
        }
        let mut answers: HashMap<String, (String, Duration)> = HashMap::new();
        while answers.len() < ids.len() {
            let message = tokio::time::timeout(Duration::from_secs(30), self.client.recv())
                .await
                .map_err(|_| "no answer in 30 s".to_owned())?;
            match message {
                ServerMessage::Event(Event::Session {
                    session,
                    event: SessionEvent::State(state),
                }) => match state {
                    SessionState::Accepted { sdp: Some(sdp), .. } => {
                        let took = started
                            .get(&session)
                            .map(Instant::elapsed)
                            .unwrap_or_default();
                        answers.insert(session, (sdp, took));
                    }
                    SessionState::Terminated { reason } => {
                        return Err(format!("call {session} ended: {reason:?}"));
                    }
                    _ => {}
                },
                ServerMessage::Error { error, .. } => return Err(error),
                _ => {}
            }
        }
        let mut sdps = Vec::new();
        let mut times = Vec::new();
        for id in ids {
            if let Some((sdp, took)) = answers.remove(&id) {
                sdps.push(sdp);
                times.push(took);
            }
        }
        Ok((sdps, times))
    }

    /// Ends every call (by closing the connection).
    pub(crate) async fn close(self) {
        self.client.close().await;
    }
}

/// rtpengine's ng control socket.
pub(crate) struct RtpengineControl {
    socket: UdpSocket,
    server: SocketAddr,
    echo: SocketAddr,
    /// Video mode: the far end's answer has a video m-line too.
    video: bool,
    next: usize,
    calls: Vec<String>,
}

impl RtpengineControl {
    pub(crate) fn new(
        server: SocketAddr,
        echo: SocketAddr,
        video: bool,
    ) -> std::io::Result<RtpengineControl> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(RtpengineControl {
            socket,
            server,
            echo,
            video,
            next: 0,
            calls: Vec::new(),
        })
    }

    fn request(&mut self, message: &[(&str, Value)]) -> Result<HashMap<String, Value>, String> {
        let cookie = format!("c{}", self.next);
        self.next += 1;
        let mut data = format!("{cookie} ").into_bytes();
        encode_dict(message, &mut data);
        self.socket
            .send_to(&data, self.server)
            .map_err(|e| e.to_string())?;
        let mut buffer = vec![0u8; 65_536];
        loop {
            let (length, _) = self
                .socket
                .recv_from(&mut buffer)
                .map_err(|e| format!("rtpengine: {e}"))?;
            let reply = &buffer[..length];
            let Some(space) = reply.iter().position(|b| *b == b' ') else {
                continue;
            };
            if &reply[..space] != cookie.as_bytes() {
                continue;
            }
            let (value, _) = decode(&reply[space + 1..]).ok_or("rtpengine: an unreadable reply")?;
            let Value::Dict(dict) = value else {
                return Err("rtpengine: not a dictionary".into());
            };
            if dict.get("result").and_then(Value::text) != Some("ok") {
                let reason = dict
                    .get("error-reason")
                    .and_then(Value::text)
                    .unwrap_or("?");
                return Err(format!("rtpengine refused: {reason}"));
            }
            return Ok(dict);
        }
    }

    /// Relays each offer (WebRTC) to sipp's echo port (plain RTP): the answers for the peers, and
    /// the time each set-up took.
    pub(crate) fn calls(
        &mut self,
        offers: &[String],
    ) -> Result<(Vec<String>, Vec<Duration>), String> {
        let mut answers = Vec::new();
        let mut times = Vec::new();
        for offer in offers {
            let started = Instant::now();
            let call = format!("bench-{}", self.calls.len());
            self.request(&[
                ("command", Value::text_of("offer")),
                ("call-id", Value::text_of(&call)),
                ("from-tag", Value::text_of("caller")),
                ("sdp", Value::text_of(offer)),
                ("transport-protocol", Value::text_of("RTP/AVP")),
                ("ICE", Value::text_of("remove")),
                ("rtcp-mux", Value::List(vec![Value::text_of("demux")])),
            ])?;
            let media = if self.video {
                "m=video {port} RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"
            } else {
                "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            };
            let plain = format!(
                "v=0\r\no=echo 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n{media}a=sendrecv\r\n",
                ip = self.echo.ip(),
                media = media.replace("{port}", &self.echo.port().to_string()),
            );
            let reply = self.request(&[
                ("command", Value::text_of("answer")),
                ("call-id", Value::text_of(&call)),
                ("from-tag", Value::text_of("caller")),
                ("to-tag", Value::text_of("callee")),
                ("sdp", Value::text_of(&plain)),
            ])?;
            let sdp = reply
                .get("sdp")
                .and_then(Value::text)
                .ok_or("rtpengine: no SDP")?;
            if std::env::var_os("BENCH_SDP").is_some() {
                eprintln!("{sdp}");
            }
            answers.push(bundled(sdp));
            times.push(started.elapsed());
            self.calls.push(call);
        }
        Ok((answers, times))
    }

    /// Deletes every call.
    pub(crate) fn close(&mut self) {
        for call in std::mem::take(&mut self.calls) {
            let deleted = self.request(&[
                ("command", Value::text_of("delete")),
                ("call-id", Value::text_of(&call)),
                ("from-tag", Value::text_of("caller")),
            ]);
            if deleted.is_err() {
                // No answer, or a refusal: the deletes end here. rtpengine is stopped next
                // anyway, and one that has exited would make each delete wait out the read
                // timeout (5 s a call).
                break;
            }
        }
    }
}

/// rtpengine answers a one-stream BUNDLE offer without the `a=group:BUNDLE` line (and may leave
/// out the mid), which str0m insists on: put them back.
fn bundled(sdp: &str) -> String {
    if sdp.contains("a=group:BUNDLE") {
        return sdp.to_owned();
    }
    let mid = sdp
        .lines()
        .find_map(|line| line.strip_prefix("a=mid:"))
        .unwrap_or("0")
        .trim()
        .to_owned();
    let mut out = String::with_capacity(sdp.len() + 64);
    for line in sdp.lines() {
        out.push_str(line);
        out.push_str("\r\n");
        if line.starts_with("t=") {
            out.push_str(&format!("a=group:BUNDLE {mid}\r\n"));
        }
        if line.starts_with("m=") && !sdp.contains("a=mid:") {
            out.push_str(&format!("a=mid:{mid}\r\n"));
        }
    }
    out
}

/// A bencoded value.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Bytes(Vec<u8>),
    Int(i64),
    List(Vec<Value>),
    Dict(HashMap<String, Value>),
}

impl Value {
    fn text_of(text: &str) -> Value {
        Value::Bytes(text.as_bytes().to_vec())
    }

    fn text(&self) -> Option<&str> {
        match self {
            Value::Bytes(bytes) => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }
}

fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Bytes(bytes) => {
            out.extend_from_slice(format!("{}:", bytes.len()).as_bytes());
            out.extend_from_slice(bytes);
        }
        Value::Int(number) => out.extend_from_slice(format!("i{number}e").as_bytes()),
        Value::List(items) => {
            out.push(b'l');
            for item in items {
                encode(item, out);
            }
            out.push(b'e');
        }
        Value::Dict(dict) => {
            let mut keys: Vec<&String> = dict.keys().collect();
            keys.sort();
            out.push(b'd');
            for key in keys {
                encode(&Value::text_of(key), out);
                encode(&dict[key], out);
            }
            out.push(b'e');
        }
    }
}

fn encode_dict(entries: &[(&str, Value)], out: &mut Vec<u8>) {
    let dict = entries
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.clone()))
        .collect();
    encode(&Value::Dict(dict), out);
}

fn decode(data: &[u8]) -> Option<(Value, &[u8])> {
    match *data.first()? {
        b'i' => {
            let end = data.iter().position(|b| *b == b'e')?;
            let number = std::str::from_utf8(&data[1..end]).ok()?.parse().ok()?;
            Some((Value::Int(number), &data[end + 1..]))
        }
        b'l' => {
            let mut rest = &data[1..];
            let mut items = Vec::new();
            while *rest.first()? != b'e' {
                let (item, after) = decode(rest)?;
                items.push(item);
                rest = after;
            }
            Some((Value::List(items), &rest[1..]))
        }
        b'd' => {
            let mut rest = &data[1..];
            let mut dict = HashMap::new();
            while *rest.first()? != b'e' {
                let (key, after) = decode(rest)?;
                let (value, after) = decode(after)?;
                dict.insert(key.text()?.to_owned(), value);
                rest = after;
            }
            Some((Value::Dict(dict), &rest[1..]))
        }
        b'0'..=b'9' => {
            let colon = data.iter().position(|b| *b == b':')?;
            let length: usize = std::str::from_utf8(&data[..colon]).ok()?.parse().ok()?;
            let start = colon + 1;
            let bytes = data.get(start..start + length)?.to_vec();
            Some((Value::Bytes(bytes), &data[start + length..]))
        }
        _ => None,
    }
}
