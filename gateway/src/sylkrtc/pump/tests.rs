//! The connection driver on channels and a paused clock: no sockets, no real waiting.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::config::Config;
use crate::sylkrtc::connection::{Connection, Output, SipDomains};

/// A client on channels: frames in, frames out, and the driver's result.
struct Peer {
    to_gateway: Option<UnboundedSender<Result<Message, axum::Error>>>,
    from_gateway: UnboundedReceiver<Message>,
    driver: JoinHandle<Ended>,
    gate: Arc<Gate>,
    /// Set when the pump drops its handler.
    handler_dropped: Arc<AtomicBool>,
}

/// Sets its flag when dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A handler without SIP or media: the sans-IO connection, whose replies go to the writer
/// (requests that would need the SIP driver are not sent by these tests).
async fn handler(
    mut requests: mpsc::Receiver<Inbound>,
    out: mpsc::Sender<Outbound>,
    dropped: Arc<AtomicBool>,
) -> Option<Ended> {
    let _flag = DropFlag(dropped);
    let mut connection = Connection::new(Version::V2, Arc::new(SipDomains::new(&["*".to_owned()])));
    loop {
        while let Some(output) = connection.poll_output() {
            if let Output::Send(text) = output
                && out.send(Outbound::Text(text)).await.is_err()
            {
                return None;
            }
        }
        let inbound = requests.recv().await?;
        match inbound {
            Inbound::Text(text) => connection.handle_text(&text),
            Inbound::Binary(data) => connection.handle_binary(&data),
        };
    }
}

async fn start(config: Config, stalled: bool) -> Peer {
    let gate = Arc::new(Gate::new(
        &config.websocket,
        &config.http.web_origins,
        Arc::default(),
    ));
    let handler_dropped = Arc::new(AtomicBool::new(false));
    let (to_gateway, mut inbound) = unbounded_channel();
    let (outbound, from_gateway) = unbounded_channel();
    let stream = futures_util::stream::poll_fn(move |cx| inbound.poll_recv(cx));
    let driver = {
        let gate = gate.clone();
        let dropped = handler_dropped.clone();
        let handler = move |requests, out| handler(requests, out, dropped);
        tokio::spawn(async move {
            if stalled {
                drive(stream, Stalled, &gate, Version::V2, handler).await
            } else {
                let sink =
                    futures_util::sink::unfold(outbound, |outbound, message: Message| async move {
                        let _ = outbound.send(message);
                        Ok::<_, Infallible>(outbound)
                    });
                drive(stream, Box::pin(sink), &gate, Version::V2, handler).await
            }
        })
    };
    Peer {
        to_gateway: Some(to_gateway),
        from_gateway,
        driver,
        gate,
        handler_dropped,
    }
}

impl Peer {
    fn send(&self, value: Value) {
        let frame = Message::Text(value.to_string().into());
        self.to_gateway.as_ref().unwrap().send(Ok(frame)).unwrap();
    }

    async fn recv(&mut self) -> Message {
        self.from_gateway.recv().await.expect("a frame")
    }

    async fn recv_json(&mut self) -> Value {
        match self.recv().await {
            Message::Text(text) => serde_json::from_str(&text).unwrap(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    async fn ended(self) -> Ended {
        self.driver.await.unwrap()
    }
}

/// A client that never reads: its sink is never ready.
struct Stalled;

impl Sink<Message> for Stalled {
    type Error = Infallible;

    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Pending
    }

    fn start_send(self: Pin<&mut Self>, _: Message) -> Result<(), Infallible> {
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Pending
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Pending
    }
}

fn close_code(message: Message) -> u16 {
    match message {
        Message::Close(Some(frame)) => frame.code,
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn ready_comes_first_and_replies_follow_in_order() {
    let mut peer = start(Config::default(), false).await;
    for index in 0..10 {
        peer.send(json!({"sylkrtc": "ping", "transaction": index.to_string()}));
    }
    assert_eq!(peer.recv_json().await, json!({"sylkrtc": "ready-event"}));
    for index in 0..10 {
        assert_eq!(
            peer.recv_json().await,
            json!({"sylkrtc": "ack", "transaction": index.to_string()})
        );
    }
    peer.to_gateway = None;
    assert!(matches!(peer.ended().await, Ended::ClientClosed));
}

#[tokio::test(start_paused = true)]
async fn a_burst_larger_than_the_queue_is_absorbed() {
    let mut config = Config::default();
    config.websocket.max_queued_requests = 2;
    let mut peer = start(config, false).await;
    for index in 0..1000 {
        peer.send(json!({"sylkrtc": "ping", "transaction": index.to_string()}));
    }
    peer.recv_json().await;
    for index in 0..1000 {
        assert_eq!(peer.recv_json().await["transaction"], index.to_string());
    }
    assert!(
        peer.gate
            .metrics
            .render()
            .contains("kind=\"queue_full\"} 0")
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_does_not_read_overflows_the_queue_and_is_dropped() {
    let mut config = Config::default();
    config.websocket.max_queued_requests = 4;
    let peer = start(config, true).await;
    // The writer is stuck on the first frame: the outbound queue, then the request queue fill.
    for index in 0..(OUTBOUND_QUEUE + 100) {
        peer.send(json!({"sylkrtc": "ping", "transaction": index.to_string()}));
    }
    let started = Instant::now();
    let ended = peer.ended().await;
    assert!(matches!(ended, Ended::Overflow(4)), "{ended:?}");
    // One QUEUE_WAIT for the request that found no room, then the writer's grace period.
    assert_eq!(started.elapsed(), QUEUE_WAIT + CLOSE_GRACE);
}

#[tokio::test(start_paused = true)]
async fn no_pong_closes_with_1001_and_pongs_keep_the_connection() {
    let mut config = Config::default();
    config.websocket.websocket_ping_interval = 10;
    let mut peer = start(config.clone(), false).await;
    peer.recv().await; // ready
    let started = Instant::now();
    assert!(matches!(peer.recv().await, Message::Ping(_)));
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert_eq!(close_code(peer.recv().await), 1001);
    assert_eq!(started.elapsed(), Duration::from_secs(15));
    assert!(matches!(peer.ended().await, Ended::NoPong(_)));

    let mut peer = start(config, false).await;
    peer.recv().await;
    for _ in 0..20 {
        assert!(matches!(peer.recv().await, Message::Ping(_)));
        peer.to_gateway
            .as_ref()
            .unwrap()
            .send(Ok(Message::Pong(Default::default())))
            .unwrap();
    }
    peer.send(json!({"sylkrtc": "ping", "transaction": "alive"}));
    assert_eq!(peer.recv_json().await["transaction"], "alive");
}

/// Shutdown closes the connection with 1001 and drops its handler (whose drop releases the
/// connection's accounts and calls).
#[tokio::test(start_paused = true)]
async fn shutdown_closes_with_1001_and_drops_the_handler() {
    let mut peer = start(Config::default(), false).await;
    peer.recv().await;
    peer.send(
        json!({"sylkrtc": "account-add", "transaction": "a", "account": "a@example.com",
        "password": "884edfee38ed471b8a15006700139485"}),
    );
    assert_eq!(peer.recv_json().await["sylkrtc"], "ack");
    assert!(!peer.handler_dropped.load(Ordering::SeqCst));
    peer.gate.shutdown().cancel();
    assert_eq!(close_code(peer.recv().await), 1001);
    let dropped = peer.handler_dropped.clone();
    assert!(matches!(peer.ended().await, Ended::Shutdown));
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn socket_errors_end_the_connection_with_the_right_code() {
    let mut config = Config::default();
    config.websocket.max_message_size = 2048;
    let mut peer = start(config, false).await;
    peer.recv().await;
    let too_big = tungstenite::Error::Capacity(tungstenite::error::CapacityError::MessageTooLong {
        size: 5000,
        max_size: 2048,
    });
    peer.to_gateway
        .as_ref()
        .unwrap()
        .send(Err(axum::Error::new(too_big)))
        .unwrap();
    assert_eq!(close_code(peer.recv().await), 1009);
    assert!(matches!(peer.ended().await, Ended::TooBig(2048)));
}

#[test]
fn close_codes() {
    let code = |ended: Ended| ended.close_frame().map(|frame| frame.code);
    assert_eq!(code(Ended::TooBig(65536)), Some(1009));
    assert_eq!(code(Ended::Overflow(100)), Some(1008));
    assert_eq!(code(Ended::Shutdown), Some(1001));
    assert_eq!(code(Ended::NoPong(Duration::from_secs(60))), Some(1001));
    let reason = |ended: Ended| ended.close_frame().map(|frame| frame.reason.to_string());
    assert_eq!(
        reason(Ended::NoPong(Duration::from_secs(60))).as_deref(),
        Some("no pong within 60 s")
    );
    assert_eq!(
        reason(Ended::NoPong(Duration::from_millis(500))).as_deref(),
        Some("no pong within 500 ms")
    );
    assert_eq!(code(Ended::ClientClosed), None);
    assert_eq!(
        Ended::TooBig(65536).to_string(),
        "message too big (limit 65536 bytes) (close code 1009)"
    );
}

/// A client's Close frame is answered with one (RFC 6455 section 5.5.1), its code echoed, so
/// the client sees a clean close instead of 1006.
#[tokio::test(start_paused = true)]
async fn a_clients_close_frame_is_answered() {
    for (sent, echoed) in [
        (Some(1000), Some(1000)),
        (Some(4001), Some(4001)),
        (None, None),
    ] {
        let mut peer = start(Config::default(), false).await;
        assert_eq!(peer.recv_json().await, json!({"sylkrtc": "ready-event"}));
        let frame = sent.map(|code| CloseFrame {
            code,
            reason: "bye".into(),
        });
        peer.to_gateway
            .as_ref()
            .unwrap()
            .send(Ok(Message::Close(frame)))
            .unwrap();
        match peer.recv().await {
            Message::Close(reply) => assert_eq!(reply.map(|frame| frame.code), echoed),
            other => panic!("expected a close frame, got {other:?}"),
        }
        assert!(matches!(peer.ended().await, Ended::ClientClose(code) if code == sent));
    }
}
