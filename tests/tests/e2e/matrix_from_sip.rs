//! Calls from SIP phones to Matrix users through the bridge, with a real Synapse and baresip:
//! the caller's ghost opens a direct room with the Matrix user (or takes the one it has),
//! waits for them to join and calls with the relay's offer; the first answer is selected;
//! tones and DTMF (RFC 4733) go both ways; hang-ups, rejections,
//! crossed invites, encrypted rooms and a homeserver that restarts end calls as MSC2746 and
//! SIP say. The Matrix client is the tests' WebRTC peer (webrtc-rs)
//! sending MSC2746 events through Synapse's client-server API.

use std::time::Duration;

use gateway_tests::Gateway;
use gateway_tests::baresip::Baresip;
use gateway_tests::browser::{AudioCodec, Browser};
use gateway_tests::synapse::{MatrixUser, SERVER_NAME, Synapse, encode};
use serde_json::{Value, json};

use crate::calls::{browser_tone, payload_type, until_heard};
use crate::local::{DOMAIN, phone};
use crate::matrix::{WAIT, eventually, from_ghost, invite, synapse_and_bridge};

/// A bridge of the shipped configuration (the local domain, open registration) with `users`
/// named in `[matrix] users`, Synapse, alice logged in there, and bob's phone (1000 Hz).
async fn bridge(users: &[(&str, &str)]) -> (Synapse, Gateway, MatrixUser, Baresip) {
    let (synapse, gateway, alice) = synapse_and_bridge(users).await;
    let bob = phone(&gateway, "bob", "anything", 1000.0).await;
    (synapse, gateway, alice, bob)
}

pub(crate) fn alice_id() -> String {
    format!("@alice:{SERVER_NAME}")
}

/// bob's ghost.
pub(crate) fn bob_ghost() -> String {
    format!("@sip_bob=40{DOMAIN}:{SERVER_NAME}")
}

/// The SIP address a Matrix user's own calls come from: the user id escaped as ghosts'
/// localparts are, at the local domain.
pub(crate) fn address_of(user_id: &str) -> String {
    let escaped: String = user_id
        .bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' => char::from(byte).to_string(),
            other => format!("={other:02x}"),
        })
        .collect();
    format!("sip:{escaped}@{DOMAIN}")
}

/// The room alice is newly invited to, once she is.
async fn invited_room(alice: &MatrixUser, bob: &Baresip) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(room) = alice.invited_rooms().await.into_iter().next() {
            return room;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice is never invited; bob's call:\n{}",
            bob.log.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The room alice is invited to, once she is; she joins it.
async fn joins_the_invited_room(alice: &MatrixUser, bob: &Baresip) -> String {
    let room = invited_room(alice, bob).await;
    alice.join(&room).await;
    room
}

/// The ghost's `m.call.invite` other than those of `seen`, once there is one.
async fn ghost_invite(alice: &MatrixUser, room: &str, seen: &[&str]) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let events = alice.events(room).await;
        if let Some(event) = events.iter().find(|event| {
            event["type"] == "m.call.invite"
                && event["sender"] == bob_ghost().as_str()
                && !seen.contains(&event["content"]["call_id"].as_str().unwrap_or_default())
        }) {
            return event["content"].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new invite from the ghost: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// alice answers the ghost's `invite` from `browser` (party `alicedev`): her answer SDP.
async fn answers(alice: &mut MatrixUser, room: &str, browser: &Browser, invite: &Value) -> String {
    let offer = invite["offer"]["sdp"].as_str().expect("an offer");
    let answer = browser.answer(offer).await;
    let content = json!({"call_id": invite["call_id"], "party_id": "alicedev", "version": "1",
        "answer": {"type": "answer", "sdp": answer}});
    alice.send(room, "m.call.answer", content).await;
    answer
}

/// The reason of bob's closed call, once it closed `count` times.
pub(crate) async fn bob_closed(bob: &Baresip, count: usize) -> String {
    assert!(
        bob.wait_for("CALL_CLOSED", count, WAIT).await,
        "bob's call does not close: {:?}",
        bob.events()
    );
    bob.events()
        .iter()
        .filter(|event| event["type"] == "CALL_CLOSED")
        .nth(count - 1)
        .map(|event| event["param"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

pub(crate) async fn no_calls_left(gateway: &Gateway) {
    eventually("the calls end", || async {
        gateway.metric("sylkrtc_calls").await == 0.0
    })
    .await;
}

#[tokio::test]
async fn a_phone_calls_a_matrix_user_who_answers_talks_and_hangs_up() {
    let (_synapse, gateway, mut alice, bob) = bridge(&[]).await;
    // bob calls alice at the address her own calls come from.
    bob.command("dial", &address_of(&alice_id()));
    let room = joins_the_invited_room(&alice, &bob).await;
    let offer = ghost_invite(&alice, &room, &[]).await;
    assert_eq!(offer["version"], "1");
    assert_eq!(offer["invitee"], alice_id().as_str());
    assert_eq!(offer["lifetime"], 60000);
    assert_eq!(offer["offer"]["type"], "offer");
    let call_id = offer["call_id"].as_str().expect("a call id").to_owned();
    let candidates = from_ghost(&alice, &room, &bob_ghost(), "m.call.candidates", &call_id).await;
    assert_eq!(candidates["candidates"][0]["candidate"], "", "{candidates}");

    // alice answers: her answer is selected, and each hears the other.
    let mut browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let answer = answers(&mut alice, &room, &browser, &offer).await;
    let select = from_ghost(
        &alice,
        &room,
        &bob_ghost(),
        "m.call.select_answer",
        &call_id,
    )
    .await;
    assert_eq!(select["selected_party_id"], "alicedev", "{select}");
    assert_eq!(select["party_id"], offer["party_id"]);
    assert!(browser.connected(WAIT).await);
    assert!(bob.wait_for("CALL_ESTABLISHED", 1, WAIT).await);
    let pt = payload_type(&answer, media::Format::Audio(media::Codec::Pcmu));
    browser.send_pcmu_tone(pt, 440.0);
    let tone = || browser_tone(&browser, pt, AudioCodec::Pcmu);
    assert_eq!(until_heard(1000.0, tone).await.0, 1000.0);

    // DTMF from Matrix goes in RTP (RFC 4733), as MSC2746 has it: bob sees the key.
    let event_pt = payload_type(&answer, media::Format::TelephoneEvent(8000));
    browser.send_event(event_pt, 9, 800).await;
    browser.send_pcmu_tone(pt, 440.0);
    assert!(
        bob.wait_for("CALL_DTMF_START", 1, WAIT).await,
        "bob sees no DTMF: {:?}",
        bob.events()
    );
    // And the phone's key (RFC 4733) reaches Matrix: event 4 in the relay's telephone-events.
    browser.clear_received();
    bob.command("sndcode", "4");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !browser
        .received()
        .iter()
        .any(|packet| packet.header.payload_type == event_pt && packet.payload.first() == Some(&4))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice gets no telephone-event from bob:\n{}",
            bob.log.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // alice hangs up: bob's call ends; he heard her.
    let hangup = json!({"call_id": call_id, "party_id": "alicedev", "version": "1",
        "reason": "user_hangup"});
    alice.send(&room, "m.call.hangup", hangup).await;
    bob_closed(&bob, 1).await;
    assert_eq!(bob.received_tone().expect("bob's recording").0, 440.0);
    no_calls_left(&gateway).await;
    browser.close().await;
}

#[tokio::test]
async fn a_matrix_user_who_rejects_and_a_caller_who_gives_up_in_the_same_room() {
    // alice is also reached at a name of the local domain.
    let alice_id = alice_id();
    let (_synapse, gateway, mut alice, bob) = bridge(&[("alice", &alice_id)]).await;
    bob.command("dial", &format!("sip:alice@{DOMAIN}"));
    let room = joins_the_invited_room(&alice, &bob).await;
    let first = ghost_invite(&alice, &room, &[]).await;
    let first_id = first["call_id"].as_str().expect("a call id").to_owned();
    // alice rejects: bob hears busy (the gateway's decline code).
    let reject = json!({"call_id": first_id, "party_id": "alicedev", "version": "1"});
    alice.send(&room, "m.call.reject", reject).await;
    let reason = bob_closed(&bob, 1).await;
    assert!(reason.contains("486"), "{reason}");

    // bob calls again: the same room (alice is not invited anew), a new call; he gives up
    // before she answers, and the ghost hangs up.
    bob.command("dial", &format!("sip:alice@{DOMAIN}"));
    let second = ghost_invite(&alice, &room, &[&first_id]).await;
    let second_id = second["call_id"].as_str().expect("a call id").to_owned();
    assert!(alice.invited_rooms().await.is_empty());
    bob.command("hangup", "");
    let hangup = from_ghost(&alice, &room, &bob_ghost(), "m.call.hangup", &second_id).await;
    assert_eq!(hangup["reason"], "user_hangup", "{hangup}");
    no_calls_left(&gateway).await;

    // alice leaves the room and declines the next one: bob's call is unavailable.
    alice.leave(&room).await;
    bob.command("dial", &format!("sip:alice@{DOMAIN}"));
    let next = invited_room(&alice, &bob).await;
    assert_ne!(next, room);
    alice.leave(&next).await;
    let reason = bob_closed(&bob, 3).await;
    assert!(reason.contains("480"), "{reason}");
}

#[tokio::test]
async fn invites_that_cross_go_on_as_the_smaller_call_id() {
    let (_synapse, gateway, mut alice, bob) = bridge(&[]).await;
    bob.command("dial", &address_of(&alice_id()));
    let room = joins_the_invited_room(&alice, &bob).await;
    let ours = ghost_invite(&alice, &room, &[]).await;
    let ours_id = ours["call_id"].as_str().expect("a call id").to_owned();

    // alice calls bob meanwhile, with a call id larger than the ghost's: hers is dropped
    // (nothing is said of it) and she answers the ghost's.
    let browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let her_offer = browser.offer().await;
    alice
        .send(
            &room,
            "m.call.invite",
            invite("~later", json!("1"), &her_offer),
        )
        .await;
    let answering = Browser::new(&[AudioCodec::Pcmu]).await;
    answers(&mut alice, &room, &answering, &ours).await;
    from_ghost(
        &alice,
        &room,
        &bob_ghost(),
        "m.call.select_answer",
        &ours_id,
    )
    .await;
    assert!(bob.wait_for("CALL_ESTABLISHED", 1, WAIT).await);
    let events = alice.events(&room).await;
    assert!(
        !events
            .iter()
            .any(|event| event["sender"] == bob_ghost().as_str()
                && event["content"]["call_id"] == "~later"),
        "{events:#?}"
    );
    bob.command("hangup", "");
    bob_closed(&bob, 1).await;
    no_calls_left(&gateway).await;

    // bob calls again and alice's invite crosses it with a smaller call id: hers goes on.
    // bob's call is refused (busy, saying why), the ghost withdraws its invite, and bob's
    // phone takes alice's call.
    bob.command("dial", &address_of(&alice_id()));
    let again = ghost_invite(&alice, &room, &[&ours_id]).await;
    let again_id = again["call_id"].as_str().expect("a call id").to_owned();
    alice
        .send(&room, "m.call.invite", invite("0", json!("1"), &her_offer))
        .await;
    let withdrawn = from_ghost(&alice, &room, &bob_ghost(), "m.call.hangup", &again_id).await;
    assert_eq!(withdrawn["reason"], "user_hangup");
    let reason = bob_closed(&bob, 2).await;
    assert!(reason.contains("486"), "{reason}");
    let answer = from_ghost(&alice, &room, &bob_ghost(), "m.call.answer", "0").await;
    assert_eq!(answer["answer"]["type"], "answer");
    let hangup = json!({"call_id": "0", "party_id": "alicedev", "version": "1",
        "reason": "user_hangup"});
    alice.send(&room, "m.call.hangup", hangup).await;
    no_calls_left(&gateway).await;
    browser.close().await;
    answering.close().await;
}

#[tokio::test]
async fn an_encrypted_room_is_refused_saying_why() {
    let (_synapse, _gateway, alice, bob) = bridge(&[]).await;
    bob.command("dial", &address_of(&alice_id()));
    let room = joins_the_invited_room(&alice, &bob).await;
    let first = ghost_invite(&alice, &room, &[]).await;
    bob.command("hangup", "");
    let first_id = first["call_id"].as_str().unwrap_or_default();
    from_ghost(&alice, &room, &bob_ghost(), "m.call.hangup", first_id).await;
    // alice turns encryption on: the ghost says it cannot read the room, and bob's next call
    // is unavailable with a Warning that says why.
    let path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.encryption/",
        encode(&room)
    );
    let (status, answer) = alice
        .request(
            "PUT",
            &path,
            Some(json!({"algorithm": "m.megolm.v1.aes-sha2"})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let notice = from_ghost(&alice, &room, &bob_ghost(), "m.room.message", "").await;
    assert!(
        notice["body"]
            .as_str()
            .is_some_and(|body| body.contains("encrypted")),
        "{notice}"
    );
    bob.command("dial", &address_of(&alice_id()));
    let reason = bob_closed(&bob, 2).await;
    assert!(reason.contains("480"), "{reason}");
    let events = alice.events(&room).await;
    let notices = events
        .iter()
        .filter(|event| {
            event["sender"] == bob_ghost().as_str() && event["type"] == "m.room.message"
        })
        .count();
    assert_eq!(
        notices, 2,
        "the ghost says why the call cannot ring: {events:#?}"
    );
}

#[tokio::test]
async fn a_homeserver_restarted_during_a_call() {
    let (mut synapse, gateway, mut alice, bob) = bridge(&[]).await;
    bob.command("dial", &address_of(&alice_id()));
    let room = joins_the_invited_room(&alice, &bob).await;
    let offer = ghost_invite(&alice, &room, &[]).await;
    let call_id = offer["call_id"].as_str().expect("a call id").to_owned();
    let mut browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let answer = answers(&mut alice, &room, &browser, &offer).await;
    assert!(browser.connected(WAIT).await);
    let pt = payload_type(&answer, media::Format::Audio(media::Codec::Pcmu));
    browser.send_pcmu_tone(pt, 440.0);
    let tone = || browser_tone(&browser, pt, AudioCodec::Pcmu);
    assert_eq!(until_heard(1000.0, tone).await.0, 1000.0);

    // The homeserver goes away: the call goes on (its media never went through it), and a
    // call for alice meanwhile is unavailable, saying why.
    synapse.stop();
    browser.clear_received();
    let tone = || browser_tone(&browser, pt, AudioCodec::Pcmu);
    assert_eq!(until_heard(1000.0, tone).await.0, 1000.0);
    let carol = phone(&gateway, "carol", "anything", 1000.0).await;
    carol.command("dial", &address_of(&alice_id()));
    let reason = bob_closed(&carol, 1).await;
    assert!(reason.contains("480"), "{reason}");

    // bob hangs up while it is away: the ghost's hang-up reaches the room once it is back.
    bob.command("hangup", "");
    bob_closed(&bob, 1).await;
    synapse.start_again();
    let hangup = from_ghost(&alice, &room, &bob_ghost(), "m.call.hangup", &call_id).await;
    assert_eq!(hangup["reason"], "user_hangup", "{hangup}");
    no_calls_left(&gateway).await;

    // The bridge takes calls again: bob is rung through to alice in the same room.
    bob.command("dial", &address_of(&alice_id()));
    let again = ghost_invite(&alice, &room, &[&call_id]).await;
    let reject = json!({"call_id": again["call_id"], "party_id": "alicedev", "version": "1"});
    alice.send(&room, "m.call.reject", reject).await;
    let reason = bob_closed(&bob, 2).await;
    assert!(reason.contains("486"), "{reason}");
    browser.close().await;
}

/// A caller of another domain cannot authenticate: its From is nobody's word, and a ghost
/// would speak under it in Matrix. Its call to a Matrix user is refused, saying why.
#[tokio::test]
async fn callers_who_cannot_authenticate_do_not_reach_matrix() {
    let (_synapse, gateway, alice, _bob) = bridge(&[]).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("a socket");
    let local = socket.local_addr().expect("its address");
    let user = address_of(&alice_id())
        .trim_start_matches("sip:")
        .trim_end_matches(&format!("@{DOMAIN}"))
        .to_owned();
    let invite = crate::local::foreign_invite_to(local, "mallory-1", &user);
    socket
        .send_to(invite.as_bytes(), gateway.sip.0)
        .await
        .expect("send the INVITE");
    let finals = crate::local::finals(&socket, &["mallory-1".to_owned()]).await;
    let (code, text) = &finals["mallory-1"];
    assert_eq!(*code, 403, "{text}");
    assert!(
        text.contains("Warning:") && text.contains("authenticated"),
        "{text}"
    );
    assert!(
        alice.invited_rooms().await.is_empty(),
        "no room for mallory"
    );
}
