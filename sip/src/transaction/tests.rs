//! The four machines on a fake clock: their timers one by one, then client and server together
//! over a link that loses chosen messages.

use std::collections::VecDeque;

use super::*;

const MS: Duration = Duration::from_millis(1);

fn request(method: &str) -> Message {
    let text = format!(
        "{method} sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKtest\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: call-1\r\nCSeq: 1 {method}\r\n\
         Route: <sip:proxy.example.com;lr>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    Message::parse_datagram(text.as_bytes(), 65536).unwrap()
}

fn response(to: &Message, code: u16) -> Message {
    to.response(code, "Reason", (code > 100).then_some("b1"))
}

fn drain(transmit: impl FnMut() -> Option<Bytes>) -> usize {
    std::iter::from_fn(transmit).count()
}

#[test]
fn non_invite_client_retransmits_on_udp_then_times_out() {
    let start = Instant::now();
    let timers = Timers::default();
    let mut client = NonInviteClient::new(
        Bytes::from(request("OPTIONS").to_bytes()),
        false,
        timers,
        start,
    );
    let mut sent_at = Vec::new();
    let mut now = start;
    loop {
        if client.poll_transmit().is_some() {
            sent_at.push(now - start);
        }
        match client.poll_timeout() {
            Some(next) => {
                now = next;
                client.handle_timeout(now);
            }
            None => break,
        }
    }
    // Timer E: T1, doubling up to T2; timer F at 64*T1.
    let expected: Vec<Duration> = [
        0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
    ]
    .into_iter()
    .map(|ms| ms * MS)
    .collect();
    assert_eq!(sent_at, expected);
    assert_eq!(now - start, Duration::from_secs(32));
    assert!(matches!(client.poll_event(), Some(Event::Timeout)));
    assert_eq!(client.state(), State::Terminated);
}

#[test]
fn non_invite_client_provisional_final_and_absorption() {
    let start = Instant::now();
    let options = request("OPTIONS");
    let mut client = NonInviteClient::new(
        Bytes::from(options.to_bytes()),
        false,
        Timers::default(),
        start,
    );
    drain(|| client.poll_transmit());
    client.handle_response(start + 100 * MS, response(&options, 100));
    assert_eq!(client.state(), State::Proceeding);
    assert!(matches!(client.poll_event(), Some(Event::Provisional(_))));
    // In Proceeding the retransmission interval is T2.
    client.handle_timeout(start + 500 * MS);
    assert_eq!(drain(|| client.poll_transmit()), 1);
    assert_eq!(client.poll_timeout(), Some(start + 4500 * MS));
    client.handle_response(start + 600 * MS, response(&options, 200));
    assert_eq!(client.state(), State::Completed);
    assert!(matches!(client.poll_event(), Some(Event::Final(_))));
    client.handle_response(start + 700 * MS, response(&options, 200));
    assert!(
        client.poll_event().is_none(),
        "a retransmitted final is absorbed"
    );
    // Timer K: T4 after the final.
    assert_eq!(client.poll_timeout(), Some(start + 5600 * MS));
    client.handle_timeout(start + 5600 * MS);
    assert_eq!(client.state(), State::Terminated);
}

#[test]
fn reliable_transports_never_retransmit() {
    let start = Instant::now();
    let options = request("OPTIONS");
    let mut client = NonInviteClient::new(
        Bytes::from(options.to_bytes()),
        true,
        Timers::default(),
        start,
    );
    assert_eq!(drain(|| client.poll_transmit()), 1);
    assert_eq!(client.poll_timeout(), Some(start + Duration::from_secs(32)));
    client.handle_response(start + MS, response(&options, 404));
    assert_eq!(client.state(), State::Terminated);

    let invite = request("INVITE");
    let mut client = InviteClient::new(invite.clone(), true, Timers::default(), start);
    assert_eq!(drain(|| client.poll_transmit()), 1);
    client.handle_timeout(start + Duration::from_secs(31));
    assert_eq!(drain(|| client.poll_transmit()), 0);
    client.handle_timeout(start + Duration::from_secs(32));
    assert!(matches!(client.poll_event(), Some(Event::Timeout)));

    let mut server = NonInviteServer::new(true, Timers::default());
    server.respond(start, &response(&options, 200));
    assert_eq!(server.state(), State::Terminated);
}

#[test]
fn invite_client_timer_a_doubles_without_cap_until_b() {
    let start = Instant::now();
    let mut client = InviteClient::new(request("INVITE"), false, Timers::default(), start);
    let mut sent_at = Vec::new();
    let mut now = start;
    while let Some(next) = {
        if client.poll_transmit().is_some() {
            sent_at.push((now - start).as_millis());
        }
        client.poll_timeout()
    } {
        now = next;
        client.handle_timeout(now);
    }
    assert_eq!(sent_at, [0, 500, 1500, 3500, 7500, 15500, 31500]);
    assert!(matches!(client.poll_event(), Some(Event::Timeout)));
}

#[test]
fn invite_client_acks_non_2xx_and_lingers_in_completed() {
    let start = Instant::now();
    let invite = request("INVITE");
    let mut client = InviteClient::new(invite.clone(), false, Timers::default(), start);
    drain(|| client.poll_transmit());
    let busy = response(&invite, 486);
    client.handle_response(start + 100 * MS, busy.clone());
    assert_eq!(client.state(), State::Completed);
    let ack = Message::parse_datagram(&client.poll_transmit().unwrap(), 65536).unwrap();
    assert_eq!(ack.method(), Some(&Method::ACK));
    assert_eq!(ack.cseq().unwrap().cseq, 1);
    assert_eq!(ack.cseq().unwrap().method, Method::ACK);
    assert_eq!(ack.tag(&Name::TO), Some("b1"));
    assert_eq!(ack.vias().unwrap().len(), 1);
    assert_eq!(ack.header(&Name::ROUTE), Some("<sip:proxy.example.com;lr>"));
    assert_eq!(
        ack.start.to_string(),
        invite.start.to_string().replace("INVITE", "ACK")
    );
    ack.validate().unwrap();
    assert!(matches!(client.poll_event(), Some(Event::Final(_))));
    // A retransmitted 486 gets the same ACK again, and is not reported twice.
    client.handle_response(start + 600 * MS, busy);
    assert_eq!(drain(|| client.poll_transmit()), 1);
    assert!(client.poll_event().is_none());
    // Timer D: 32 s.
    assert_eq!(
        client.poll_timeout(),
        Some(start + 100 * MS + Duration::from_secs(32))
    );
}

#[test]
fn invite_client_passes_every_2xx_in_accepted() {
    let start = Instant::now();
    let invite = request("INVITE");
    let mut client = InviteClient::new(invite.clone(), false, Timers::default(), start);
    drain(|| client.poll_transmit());
    client.handle_response(start + 50 * MS, response(&invite, 180));
    assert!(matches!(client.poll_event(), Some(Event::Provisional(_))));
    // A provisional stops timer A.
    client.handle_timeout(start + 500 * MS);
    assert_eq!(drain(|| client.poll_transmit()), 0);
    client.handle_response(start + 900 * MS, response(&invite, 200));
    client.handle_response(start + 1400 * MS, response(&invite, 200));
    assert_eq!(client.state(), State::Accepted);
    assert!(matches!(client.poll_event(), Some(Event::Final(_))));
    assert!(matches!(client.poll_event(), Some(Event::Final(_))));
    assert_eq!(
        drain(|| client.poll_transmit()),
        0,
        "the user agent ACKs a 2xx, not the transaction"
    );
    // Timer M: 64*T1.
    client.handle_timeout(start + 900 * MS + Duration::from_secs(32));
    assert_eq!(client.state(), State::Terminated);
}

#[test]
fn non_invite_server_resends_its_response_until_timer_j() {
    let start = Instant::now();
    let options = request("OPTIONS");
    let mut server = NonInviteServer::new(false, Timers::default());
    server.handle_retransmission();
    assert_eq!(drain(|| server.poll_transmit()), 0, "nothing to resend yet");
    server.respond(start, &response(&options, 100));
    server.handle_retransmission();
    assert_eq!(drain(|| server.poll_transmit()), 2);
    server.respond(start + 10 * MS, &response(&options, 200));
    assert_eq!(server.state(), State::Completed);
    server.handle_retransmission();
    let resent = drain(|| server.poll_transmit());
    assert_eq!(resent, 2);
    assert_eq!(
        server.poll_timeout(),
        Some(start + 10 * MS + Duration::from_secs(32))
    );
    server.handle_timeout(start + 10 * MS + Duration::from_secs(32));
    assert_eq!(server.state(), State::Terminated);
}

#[test]
fn invite_server_retransmits_non_2xx_until_ack_or_timer_h() {
    let start = Instant::now();
    let invite = request("INVITE");
    let mut server = InviteServer::new(&invite, false, Timers::default());
    let trying = Message::parse_datagram(&server.poll_transmit().unwrap(), 65536).unwrap();
    assert_eq!(trying.code(), Some(100));
    server.handle_retransmission();
    assert_eq!(drain(|| server.poll_transmit()), 1, "100 resent");
    server.respond(start, &response(&invite, 486));
    assert_eq!(server.state(), State::Completed);
    let mut sent_at = vec![0];
    drain(|| server.poll_transmit());
    while let Some(now) = server.poll_timeout() {
        server.handle_timeout(now);
        if drain(|| server.poll_transmit()) > 0 {
            sent_at.push((now - start).as_millis());
        }
    }
    // Timer G: T1 doubling up to T2; timer H at 64*T1 with no ACK.
    assert_eq!(
        sent_at,
        [
            0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ]
    );
    assert!(matches!(server.poll_event(), Some(Event::Timeout)));

    let mut server = InviteServer::new(&invite, false, Timers::default());
    server.respond(start, &response(&invite, 486));
    drain(|| server.poll_transmit());
    server.handle_ack(start + 100 * MS, request("ACK"));
    assert_eq!(server.state(), State::Confirmed);
    server.handle_retransmission();
    assert_eq!(
        drain(|| server.poll_transmit()),
        0,
        "absorbed after the ACK"
    );
    // Timer I: T4.
    assert_eq!(server.poll_timeout(), Some(start + 5100 * MS));
}

#[test]
fn invite_server_accepted_passes_acks_and_absorbs_invites() {
    let start = Instant::now();
    let invite = request("INVITE");
    let mut server = InviteServer::new(&invite, false, Timers::default());
    server.respond(start, &response(&invite, 200));
    assert_eq!(server.state(), State::Accepted);
    drain(|| server.poll_transmit());
    server.handle_retransmission();
    assert_eq!(drain(|| server.poll_transmit()), 0);
    // The user agent core retransmits its 2xx through the transaction.
    server.respond(start + 500 * MS, &response(&invite, 200));
    assert_eq!(drain(|| server.poll_transmit()), 1);
    server.handle_ack(start + 600 * MS, request("ACK"));
    assert!(matches!(server.poll_event(), Some(Event::Ack(_))));
    // Timer L: 64*T1.
    server.handle_timeout(start + Duration::from_secs(32));
    assert_eq!(server.state(), State::Terminated);
}

/// A one-way link with a fixed latency that drops the messages whose index is listed.
struct Link {
    latency: Duration,
    drop: Vec<usize>,
    sent: usize,
    in_flight: VecDeque<(Instant, Bytes)>,
}

impl Link {
    fn new(drop: &[usize]) -> Self {
        Link {
            latency: 40 * MS,
            drop: drop.to_vec(),
            sent: 0,
            in_flight: VecDeque::new(),
        }
    }

    fn send(&mut self, now: Instant, bytes: Bytes) {
        if !self.drop.contains(&self.sent) {
            self.in_flight.push_back((now + self.latency, bytes));
        }
        self.sent += 1;
    }

    fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.front().map(|(at, _)| *at)
    }

    fn receive(&mut self, now: Instant) -> Option<Message> {
        if self.next_arrival().is_some_and(|at| at <= now) {
            let (_, bytes) = self.in_flight.pop_front()?;
            return Some(Message::parse_datagram(&bytes, 65536).unwrap());
        }
        None
    }
}

#[test]
fn non_invite_over_a_lossy_link() {
    // The first two requests and the first response are lost.
    let start = Instant::now();
    let options = request("OPTIONS");
    let mut client = NonInviteClient::new(
        Bytes::from(options.to_bytes()),
        false,
        Timers::default(),
        start,
    );
    let mut server: Option<NonInviteServer> = None;
    let (mut up, mut down) = (Link::new(&[0, 1]), Link::new(&[0]));
    let mut now = start;
    let mut final_at = None;
    let mut requests_seen = 0;
    for _ in 0..1000 {
        while let Some(bytes) = client.poll_transmit() {
            up.send(now, bytes);
        }
        if let Some(server) = &mut server {
            while let Some(bytes) = server.poll_transmit() {
                down.send(now, bytes);
            }
        }
        while let Some(event) = client.poll_event() {
            if let Event::Final(response) = event {
                assert_eq!(response.code(), Some(200));
                final_at = Some(now);
            }
        }
        if let Some(request) = up.receive(now) {
            requests_seen += 1;
            match &mut server {
                Some(server) => server.handle_retransmission(),
                None => {
                    let mut transaction = NonInviteServer::new(false, Timers::default());
                    transaction.respond(now, &response(&request, 200));
                    server = Some(transaction);
                }
            }
            continue;
        }
        if let Some(response) = down.receive(now) {
            client.handle_response(now, response);
            continue;
        }
        let next = [
            client.poll_timeout(),
            server.as_ref().and_then(NonInviteServer::poll_timeout),
            up.next_arrival(),
            down.next_arrival(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { break };
        now = next.max(now);
        client.handle_timeout(now);
        if let Some(server) = &mut server {
            server.handle_timeout(now);
        }
    }
    // Sent at 0 (lost), 0.5 (lost), 1.5 s (arrives, answered, answer lost), 3.5 s (arrives: the
    // answer is resent, arrives at 3.58 s).
    assert_eq!(final_at.map(|at| (at - start).as_millis()), Some(3580));
    assert_eq!(requests_seen, 2);
    assert_eq!(client.state(), State::Terminated);
    assert_eq!(server.map(|s| s.state()), Some(State::Terminated));
}

#[test]
fn invite_rejected_over_a_lossy_link_with_a_lost_ack() {
    // The server's first 486 and the client's first ACK are lost.
    let start = Instant::now();
    let invite = request("INVITE");
    let mut client = InviteClient::new(invite.clone(), false, Timers::default(), start);
    let mut server: Option<InviteServer> = None;
    // Upstream: INVITE (0), ACK (1, lost), ACK (2). Downstream: 100 (0), 486 (1, lost), 486...
    let (mut up, mut down) = (Link::new(&[1]), Link::new(&[1]));
    let mut now = start;
    let mut finals = 0;
    for _ in 0..1000 {
        while let Some(bytes) = client.poll_transmit() {
            up.send(now, bytes);
        }
        if let Some(server) = &mut server {
            while let Some(bytes) = server.poll_transmit() {
                down.send(now, bytes);
            }
        }
        while let Some(event) = client.poll_event() {
            finals += usize::from(matches!(event, Event::Final(_)));
        }
        if let Some(message) = up.receive(now) {
            match (message.method(), &mut server) {
                (Some(&Method::ACK), Some(server)) => server.handle_ack(now, message),
                (_, Some(server)) => server.handle_retransmission(),
                (_, None) => {
                    let mut transaction = InviteServer::new(&message, false, Timers::default());
                    transaction.respond(now, &response(&message, 486));
                    server = Some(transaction);
                }
            }
            continue;
        }
        if let Some(response) = down.receive(now) {
            client.handle_response(now, response);
            continue;
        }
        let next = [
            client.poll_timeout(),
            server.as_ref().and_then(InviteServer::poll_timeout),
            up.next_arrival(),
            down.next_arrival(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { break };
        now = next.max(now);
        client.handle_timeout(now);
        if let Some(server) = &mut server {
            server.handle_timeout(now);
        }
    }
    assert_eq!(finals, 1, "the user hears of the 486 once");
    assert_eq!(client.state(), State::Terminated);
    let server = server.unwrap();
    assert_eq!(server.state(), State::Terminated);
    assert!(
        up.sent >= 3,
        "the ACK was sent again for the retransmitted 486"
    );
}
