//! One run loop for every signalling hub. A hub is sans-IO; the loop owns the connections'
//! outbound queues, feeds the hub what the connections say and the clock's timeouts, and hands
//! each connection what the hub has for it. The protocols differ only in their [`Hub`]
//! adapters: how they name members, and what they do with binary frames.

use std::collections::HashMap;
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tracing::debug;

use super::{Input, Outbound, cuttlefish, gst, nextrtc, now, webrtcsink};

/// A sans-IO signalling hub as the run loop drives it. Connections are numbered by the
/// endpoint; a protocol that names its members otherwise maps the numbers itself.
pub(super) trait Hub: Send + 'static {
    /// A connection opened (through `side`, for Cuttlefish's two endpoints).
    fn connect(&mut self, now: Instant, conn: u64, side: Option<cuttlefish::Side>);
    /// A frame from a connection (`binary`: it came as a binary frame; `text` is its lossy
    /// UTF-8 reading).
    fn receive(&mut self, now: Instant, conn: u64, text: &str, binary: bool);
    /// A connection closed.
    fn disconnect(&mut self, conn: u64);
    /// When [`Hub::handle_timeout`] is due, if ever.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    /// Its timers.
    fn handle_timeout(&mut self, _now: Instant) {}
    /// The next frame or close for a connection.
    fn poll_output(&mut self) -> Option<(u64, Outbound)>;
    /// Called once the outputs of an input are sent.
    fn settled(&mut self) {}
}

/// The hub's task: ends when every sender (the endpoint and its connections) is gone.
pub(super) async fn run<H: Hub>(mut hub: H, mut inputs: mpsc::UnboundedReceiver<Input>) {
    let mut outs: HashMap<u64, mpsc::Sender<Outbound>> = HashMap::new();
    loop {
        let deadline = hub.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            input = inputs.recv() => match input {
                None => return,
                Some(Input::Connected { conn, out, side }) => {
                    outs.insert(conn, out);
                    hub.connect(now(), conn, side);
                }
                Some(Input::Text { conn, text, binary }) => hub.receive(now(), conn, &text, binary),
                Some(Input::Closed { conn }) => {
                    outs.remove(&conn);
                    hub.disconnect(conn);
                }
            },
            () = sleep_until(deadline) => hub.handle_timeout(now()),
        }
        while let Some((conn, outbound)) = hub.poll_output() {
            match outbound {
                Outbound::Close(..) => {
                    // The connection's last frame: nothing more goes to it.
                    if let Some(out) = outs.remove(&conn) {
                        let _ = out.try_send(outbound);
                    }
                }
                Outbound::Text(_) => {
                    if let Some(out) = outs.get(&conn)
                        && out.try_send(outbound).is_err()
                    {
                        debug!(conn, "dropped: the client does not read");
                    }
                }
            }
        }
        hub.settled();
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Members named by UUIDs, as the reference servers name their sessions: both ways.
#[derive(Default)]
struct Names {
    by_conn: HashMap<u64, String>,
    by_name: HashMap<String, u64>,
}

impl Names {
    fn add(&mut self, conn: u64, name: String) {
        self.by_name.insert(name.clone(), conn);
        self.by_conn.insert(conn, name);
    }

    fn remove(&mut self, conn: u64) -> Option<String> {
        let name = self.by_conn.remove(&conn)?;
        self.by_name.remove(&name);
        Some(name)
    }
}

/// NextRTC: members are named by UUIDs (as a servlet container names WebSocket sessions), and
/// the hub has timers (pings, set-up time limits).
pub(super) struct NextRtc {
    hub: nextrtc::Hub,
    names: Names,
}

impl NextRtc {
    pub(super) fn new(hub: nextrtc::Hub) -> Self {
        NextRtc {
            hub,
            names: Names::default(),
        }
    }
}

impl Hub for NextRtc {
    fn connect(&mut self, _now: Instant, conn: u64, _side: Option<cuttlefish::Side>) {
        let name = uuid::Uuid::new_v4().simple().to_string();
        self.hub.connect(name.clone());
        self.names.add(conn, name);
    }

    fn receive(&mut self, now: Instant, conn: u64, text: &str, _binary: bool) {
        if let Some(name) = self.names.by_conn.get(&conn) {
            self.hub.receive(now, name, text);
        }
    }

    fn disconnect(&mut self, conn: u64) {
        if let Some(name) = self.names.remove(conn) {
            self.hub.disconnect(&name);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.hub.poll_timeout())
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.hub.handle_timeout(now);
    }

    fn poll_output(&mut self) -> Option<(u64, Outbound)> {
        loop {
            let (to, message) = self.hub.poll_output()?;
            let Some(conn) = self.names.by_name.get(&to) else {
                continue;
            };
            let Ok(text) = serde_json::to_string(&message) else {
                continue;
            };
            return Some((*conn, Outbound::Text(text)));
        }
    }
}

/// GStreamer's webrtcsink protocol: peers are named by UUIDs, as the reference names them;
/// binary frames are not part of the protocol and the reference ignores them.
pub(super) struct Webrtcsink {
    hub: webrtcsink::Hub,
    names: Names,
}

impl Webrtcsink {
    pub(super) fn new(hub: webrtcsink::Hub) -> Self {
        Webrtcsink {
            hub,
            names: Names::default(),
        }
    }
}

impl Hub for Webrtcsink {
    fn connect(&mut self, _now: Instant, conn: u64, _side: Option<cuttlefish::Side>) {
        let name = uuid::Uuid::new_v4().to_string();
        self.names.add(conn, name.clone());
        self.hub.connect(&name);
    }

    fn receive(&mut self, _now: Instant, conn: u64, text: &str, binary: bool) {
        if binary {
            return;
        }
        if let Some(name) = self.names.by_conn.get(&conn) {
            self.hub.receive(name, text);
        }
    }

    fn disconnect(&mut self, conn: u64) {
        if let Some(name) = self.names.remove(conn) {
            self.hub.disconnect(&name);
        }
    }

    fn poll_output(&mut self) -> Option<(u64, Outbound)> {
        loop {
            let (to, message) = self.hub.poll_output()?;
            if let Some(conn) = self.names.by_name.get(&to) {
                return Some((*conn, Outbound::Text(message.to_string())));
            }
        }
    }
}

/// GStreamer's older line protocol: connections are the hub's own numbers.
impl Hub for gst::Hub {
    fn connect(&mut self, _now: Instant, conn: u64, _side: Option<cuttlefish::Side>) {
        gst::Hub::connect(self, conn);
    }

    fn receive(&mut self, _now: Instant, conn: u64, text: &str, _binary: bool) {
        gst::Hub::receive(self, conn, text);
    }

    fn disconnect(&mut self, conn: u64) {
        gst::Hub::disconnect(self, conn);
    }

    fn poll_output(&mut self) -> Option<(u64, Outbound)> {
        Some(match gst::Hub::poll_output(self)? {
            gst::Output::Send(conn, text) => (conn, Outbound::Text(text)),
            gst::Output::Close(conn, code, reason) => (conn, Outbound::Close(code, reason)),
        })
    }
}

/// The Cuttlefish operator: one hub behind two endpoints (devices, clients), and the device
/// list published for `/devices` after every input.
pub(super) struct Cuttlefish {
    hub: cuttlefish::Hub,
    devices: watch::Sender<Vec<String>>,
}

impl Cuttlefish {
    pub(super) fn new(hub: cuttlefish::Hub, devices: watch::Sender<Vec<String>>) -> Self {
        Cuttlefish { hub, devices }
    }
}

impl Hub for Cuttlefish {
    fn connect(&mut self, _now: Instant, conn: u64, side: Option<cuttlefish::Side>) {
        self.hub
            .connect(conn, side.unwrap_or(cuttlefish::Side::Client));
    }

    fn receive(&mut self, _now: Instant, conn: u64, text: &str, binary: bool) {
        if binary {
            self.hub.binary(conn);
        } else {
            self.hub.receive(conn, text);
        }
    }

    fn disconnect(&mut self, conn: u64) {
        self.hub.disconnect(conn);
    }

    fn poll_output(&mut self) -> Option<(u64, Outbound)> {
        Some(match self.hub.poll_output()? {
            cuttlefish::Output::Send(conn, message) => (conn, Outbound::Text(message.to_string())),
            cuttlefish::Output::Close(conn) => (conn, Outbound::Close(1000, String::new())),
        })
    }

    fn settled(&mut self) {
        let ids = self.hub.device_ids();
        self.devices.send_if_modified(|current| {
            let changed = *current != ids;
            *current = ids;
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A hub that echoes text (and says `binary` for binary frames), closes a connection that
    /// says `bye`, and ticks every second while someone is connected.
    #[derive(Default)]
    struct Echo {
        out: std::collections::VecDeque<(u64, Outbound)>,
        connected: Vec<u64>,
        tick: Option<Instant>,
    }

    impl Hub for Echo {
        fn connect(&mut self, now: Instant, conn: u64, _side: Option<cuttlefish::Side>) {
            self.connected.push(conn);
            self.tick = Some(now + Duration::from_secs(1));
        }

        fn receive(&mut self, _now: Instant, conn: u64, text: &str, binary: bool) {
            let reply = match (binary, text) {
                (true, _) => Outbound::Text("binary".into()),
                (false, "bye") => Outbound::Close(1000, "bye".into()),
                (false, text) => Outbound::Text(text.to_owned()),
            };
            self.out.push_back((conn, reply));
        }

        fn disconnect(&mut self, conn: u64) {
            self.connected.retain(|c| *c != conn);
            if self.connected.is_empty() {
                self.tick = None;
            }
        }

        fn poll_timeout(&self) -> Option<Instant> {
            self.tick
        }

        fn handle_timeout(&mut self, now: Instant) {
            for conn in &self.connected {
                self.out.push_back((*conn, Outbound::Text("tick".into())));
            }
            self.tick = Some(now + Duration::from_secs(1));
        }

        fn poll_output(&mut self) -> Option<(u64, Outbound)> {
            self.out.pop_front()
        }
    }

    fn text(outbound: Option<Outbound>) -> String {
        match outbound {
            Some(Outbound::Text(text)) => text,
            other => panic!("{other:?}"),
        }
    }

    /// The loop hands each connection its own frames, passes the binary flag, drives the
    /// hub's timers on the (paused) clock, sends a close as the connection's last frame, and
    /// ends when every sender is gone.
    #[tokio::test(start_paused = true)]
    async fn frames_timers_and_closes_reach_the_right_connection() {
        let (inputs, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(Echo::default(), receiver));
        let (a_out, mut a) = mpsc::channel(8);
        let (b_out, mut b) = mpsc::channel(8);
        for (conn, out) in [(1, a_out), (2, b_out)] {
            inputs
                .send(Input::Connected {
                    conn,
                    out,
                    side: None,
                })
                .unwrap();
        }
        let say = |conn, text: &str, binary| {
            inputs
                .send(Input::Text {
                    conn,
                    text: text.to_owned(),
                    binary,
                })
                .unwrap();
        };
        say(1, "hello", false);
        say(2, "x", true);
        assert_eq!(text(a.recv().await), "hello");
        assert_eq!(text(b.recv().await), "binary");
        // A second later both get the hub's tick.
        tokio::time::sleep(Duration::from_millis(1001)).await;
        assert_eq!(text(a.recv().await), "tick");
        assert_eq!(text(b.recv().await), "tick");
        // `bye` closes b: its close is its last frame.
        say(2, "bye", false);
        assert!(matches!(b.recv().await, Some(Outbound::Close(1000, _))));
        assert!(b.recv().await.is_none(), "its queue is dropped");
        say(1, "still", false);
        assert_eq!(text(a.recv().await), "still");
        inputs.send(Input::Closed { conn: 1 }).unwrap();
        drop(inputs);
        task.await.unwrap();
    }
}
