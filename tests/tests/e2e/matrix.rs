//! The gateway as a Matrix application service (a bridge) of a real Synapse: the homeserver
//! must show its token; a ghost user (a SIP address) invited to a room joins it; a Matrix
//! user's call to a ghost goes to its SIP address through the relay (the echo test answers it,
//! media both ways), and one that cannot go is refused saying why. The Matrix client is the
//! tests' WebRTC peer (webrtc-rs) sending MSC2746 events through Synapse's client-server API.

use std::net::SocketAddr;
use std::time::Duration;

use gateway::{Config, MatrixConfig};
use gateway_tests::Gateway;
use gateway_tests::browser::{AudioCodec, Browser};
use gateway_tests::peers::free_listening_port;
use gateway_tests::synapse::{MatrixUser, SERVER_NAME, Synapse, http_json};
use serde_json::{Value, json};

use crate::calls::{browser_tone, payload_type, until_heard};
use crate::local::{DOMAIN, hears_the_phone, phone, shipped};

pub(crate) const AS_TOKEN: &str = "as-token-for-the-matrix-tests";
pub(crate) const HS_TOKEN: &str = "hs-token-for-the-matrix-tests";
pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// A configuration with the bridge on, the homeserver at `homeserver` and the gateway's HTTP
/// listener on a port chosen now (the registration names it).
pub(crate) fn bridge_config(homeserver: u16) -> Config {
    Config {
        matrix: MatrixConfig {
            enabled: true,
            homeserver_url: format!("http://127.0.0.1:{homeserver}"),
            server_name: SERVER_NAME.into(),
            as_token: AS_TOKEN.into(),
            hs_token: HS_TOKEN.into(),
            ..MatrixConfig::default()
        },
        http: gateway::HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], free_listening_port())),
            ..gateway::HttpConfig::default()
        },
        ..Config::default()
    }
}

/// GATEWAY_LOG=debug shows the gateway's log of a failing test.
fn show_logs() {
    if let Ok(filter) = std::env::var("GATEWAY_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// The shipped configuration (the local domain, open registration) with the bridge on and
/// `users` named in `[matrix] users`, a Synapse, the gateway, and alice logged in there.
pub(crate) async fn synapse_and_bridge(users: &[(&str, &str)]) -> (Synapse, Gateway, MatrixUser) {
    show_logs();
    let homeserver = free_listening_port();
    let mut bridge = bridge_config(homeserver);
    bridge.matrix.users = users
        .iter()
        .map(|(user, id)| ((*user).to_owned(), (*id).to_owned()))
        .collect();
    let config = Config {
        matrix: bridge.matrix,
        http: bridge.http,
        ..shipped()
    };
    let registration = gateway::matrix_registration(&config).expect("a registration");
    let synapse = Synapse::start(homeserver, &registration);
    let gateway = Gateway::start_at(config).await;
    synapse.register_user("alice", "alicepw");
    let alice = synapse.login("alice", "alicepw").await;
    (synapse, gateway, alice)
}

/// Polls `check` until it holds.
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A bridge of the shipped configuration (the local domain, open registration) with Synapse;
/// alice, a Matrix user, logged in; the room she opened with `ghost`, who joined it.
async fn with_ghost(ghost_address: &str) -> (Synapse, Gateway, MatrixUser, String, String) {
    let homeserver = free_listening_port();
    let config = Config {
        matrix: bridge_config(homeserver).matrix,
        http: bridge_config(homeserver).http,
        ..shipped()
    };
    with_ghost_in(config, homeserver, ghost_address).await
}

/// As [`with_ghost`], with this configuration and the homeserver on `homeserver`.
async fn with_ghost_in(
    config: Config,
    homeserver: u16,
    ghost_address: &str,
) -> (Synapse, Gateway, MatrixUser, String, String) {
    show_logs();
    let registration = gateway::matrix_registration(&config).expect("a registration");
    let synapse = Synapse::start(homeserver, &registration);
    let gateway = Gateway::start_at(config).await;
    synapse.register_user("alice", "alicepw");
    let alice = synapse.login("alice", "alicepw").await;
    // alice invites the ghost: the homeserver asks the bridge about the user (which registers
    // it), then the bridge hears of the invite and the ghost joins.
    let ghost = format!("@sip_{ghost_address}:{SERVER_NAME}");
    let room = alice.create_direct_room(&ghost).await;
    eventually("the ghost joins the room", || async {
        alice.joined_members(&room).await.contains(&ghost)
    })
    .await;
    (synapse, gateway, alice, room, ghost)
}

/// The content of the first event of `kind` from `sender` about `call_id`, once there is one.
pub(crate) async fn from_ghost(
    alice: &MatrixUser,
    room: &str,
    ghost: &str,
    kind: &str,
    call_id: &str,
) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let events = alice.events(room).await;
        if let Some(event) = events.iter().find(|event| {
            event["type"] == kind
                && event["sender"] == ghost
                && (call_id.is_empty() || event["content"]["call_id"] == call_id)
        }) {
            return event["content"].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {kind} for {call_id:?} from the ghost: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// alice calls the ghost in `room` (call `c1`, version 1) from a new WebRTC peer: the peer and
/// its offer.
async fn call(alice: &mut MatrixUser, room: &str) -> (Browser, String) {
    let browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let offer = browser.offer().await;
    alice
        .send(room, "m.call.invite", invite("c1", json!("1"), &offer))
        .await;
    (browser, offer)
}

/// alice hangs up call `c1`.
async fn hang_up(alice: &mut MatrixUser, room: &str) {
    let hangup =
        json!({"call_id": "c1", "party_id": "alicedev", "version": "1", "reason": "user_hangup"});
    alice.send(room, "m.call.hangup", hangup).await;
}

/// The gateway's calls all end; the peer goes.
async fn no_calls_left(gateway: &Gateway, browser: Browser) {
    eventually("the call ends", || async {
        gateway.metric("sylkrtc_calls").await == 0.0
    })
    .await;
    browser.close().await;
}

pub(crate) fn invite(call_id: &str, version: Value, sdp: &str) -> Value {
    let mut invite = json!({"call_id": call_id, "version": version, "lifetime": 60000,
        "offer": {"type": "offer", "sdp": sdp}});
    if version != json!(0) {
        invite["party_id"] = json!("alicedev");
    }
    invite
}

#[tokio::test]
async fn a_matrix_user_calls_the_echo_test_through_its_ghost() {
    let (_synapse, gateway, mut alice, room, ghost) = with_ghost(&format!("echo=40{DOMAIN}")).await;
    let (mut browser, _) = call(&mut alice, &room).await;
    // The answer (version 1, the ghost's party), then the end of candidates.
    let answer = from_ghost(&alice, &room, &ghost, "m.call.answer", "c1").await;
    assert_eq!(answer["version"], "1");
    assert_eq!(
        answer["party_id"].as_str().map(str::len),
        Some(8),
        "{answer}"
    );
    assert_eq!(answer["answer"]["type"], "answer");
    let candidates = from_ghost(&alice, &room, &ghost, "m.call.candidates", "c1").await;
    assert_eq!(candidates["candidates"][0]["candidate"], "", "{candidates}");
    // Media through the relay: alice hears her own tone back.
    let sdp = answer["answer"]["sdp"].as_str().expect("an answer SDP");
    browser.accept_answer(sdp).await;
    assert!(browser.connected(WAIT).await);
    let pt = payload_type(sdp, media::Format::Audio(media::Codec::Pcmu));
    browser.send_pcmu_tone(pt, 700.0);
    let (tone, packets) = until_heard(700.0, || browser_tone(&browser, pt, AudioCodec::Pcmu)).await;
    assert!(packets >= 50, "{packets} packets came back");
    assert_eq!(tone, 700.0);
    assert_eq!(gateway.metric("sylkrtc_calls").await, 1.0);
    // alice puts the call on hold (m.call.negotiate with a sendonly offer): the ghost answers
    // with a negotiate of its own, recvonly. (The test's peer only looks at the answer.)
    let hold = browser.offer_with_direction("sendonly").await;
    let negotiate = json!({"call_id": "c1", "party_id": "alicedev", "version": "1",
        "lifetime": 10000, "description": {"type": "offer", "sdp": hold}});
    alice.send(&room, "m.call.negotiate", negotiate).await;
    let negotiated = from_ghost(&alice, &room, &ghost, "m.call.negotiate", "c1").await;
    assert_eq!(negotiated["description"]["type"], "answer", "{negotiated}");
    assert_eq!(negotiated["version"], "1");
    let held = negotiated["description"]["sdp"]
        .as_str()
        .unwrap_or_default();
    assert!(held.contains("a=recvonly"), "{held}");
    // alice hangs up: the call ends, and the ghost says nothing more.
    hang_up(&mut alice, &room).await;
    no_calls_left(&gateway, browser).await;
}

#[tokio::test]
async fn a_restarted_gateway_still_answers_calls_in_its_ghosts_rooms() {
    let homeserver = free_listening_port();
    let data = gateway_tests::TempDir::new();
    let config = Config {
        matrix: bridge_config(homeserver).matrix,
        http: bridge_config(homeserver).http,
        storage: gateway::StorageConfig {
            data_dir: data.path().to_path_buf(),
            ..gateway::StorageConfig::default()
        },
        ..shipped()
    };
    let (_synapse, gateway, mut alice, room, ghost) =
        with_ghost_in(config.clone(), homeserver, &format!("echo=40{DOMAIN}")).await;
    // The gateway restarts (on the same store); the homeserver is not told. A call in the
    // room is still the ghost's.
    gateway.stop().await;
    let gateway = Gateway::start_at(config).await;
    let (browser, _) = call(&mut alice, &room).await;
    let answer = from_ghost(&alice, &room, &ghost, "m.call.answer", "c1").await;
    assert_eq!(answer["answer"]["type"], "answer");
    hang_up(&mut alice, &room).await;
    no_calls_left(&gateway, browser).await;
}

#[tokio::test]
async fn a_matrix_user_and_a_phone_talk_and_the_phone_hangs_up() {
    let (_synapse, gateway, mut alice, room, ghost) =
        with_ghost(&format!("carol=40{DOMAIN}")).await;
    let carol = phone(&gateway, "carol", "anything", 1000.0).await;
    let (mut browser, _) = call(&mut alice, &room).await;
    // carol's phone answers: each hears the other (440 Hz from alice, 1000 Hz from carol).
    let answer = from_ghost(&alice, &room, &ghost, "m.call.answer", "c1").await;
    let sdp = answer["answer"]["sdp"].as_str().expect("an answer SDP");
    browser.accept_answer(sdp).await;
    hears_the_phone(&mut browser, sdp).await;
    // carol hangs up: alice's call is hung up, as the spec words it.
    carol.command("hangup", "");
    assert!(carol.wait_for("CALL_CLOSED", 1, WAIT).await);
    assert_eq!(carol.received_tone().expect("carol's recording").0, 440.0);
    let hangup = from_ghost(&alice, &room, &ghost, "m.call.hangup", "c1").await;
    assert_eq!(hangup["reason"], "user_hangup", "{hangup}");
    assert_eq!(hangup["version"], "1");
    assert_eq!(hangup["party_id"], answer["party_id"]);
    no_calls_left(&gateway, browser).await;
}

#[tokio::test]
async fn a_matrix_user_has_at_most_four_calls_at_once() {
    let (_synapse, gateway, mut alice, room, ghost) = with_ghost(&format!("echo=40{DOMAIN}")).await;
    let browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let offer = browser.offer().await;
    let calls = ["c1", "c2", "c3", "c4", "c5"];
    for call_id in calls {
        alice
            .send(&room, "m.call.invite", invite(call_id, json!("1"), &offer))
            .await;
    }
    for call_id in &calls[..4] {
        from_ghost(&alice, &room, &ghost, "m.call.answer", call_id).await;
    }
    from_ghost(&alice, &room, &ghost, "m.call.reject", "c5").await;
    let notice = from_ghost(&alice, &room, &ghost, "m.room.message", "").await;
    let body = notice["body"].as_str().unwrap_or_default();
    assert!(
        body.contains("4 calls through this bridge already"),
        "{body}"
    );
    for call_id in &calls[..4] {
        let hangup = json!({"call_id": call_id, "party_id": "alicedev", "version": "1",
            "reason": "user_hangup"});
        alice.send(&room, "m.call.hangup", hangup).await;
    }
    no_calls_left(&gateway, browser).await;
}

#[tokio::test]
async fn calls_that_cannot_go_are_refused_saying_why() {
    let (_synapse, _gateway, mut alice, room, ghost) =
        with_ghost(&format!("nobody=40{DOMAIN}")).await;
    // nobody has no device: a version 1 call is rejected, and the ghost says why.
    let (browser, offer) = call(&mut alice, &room).await;
    let reject = from_ghost(&alice, &room, &ghost, "m.call.reject", "c1").await;
    assert_eq!(reject["version"], "1");
    let notice = from_ghost(&alice, &room, &ghost, "m.room.message", "").await;
    assert_eq!(notice["msgtype"], "m.notice");
    let body = notice["body"].as_str().unwrap_or_default();
    assert!(
        body.contains(&format!("nobody@{DOMAIN}")) && body.contains("480"),
        "{body}"
    );
    // A version 0 call has no reject: it is hung up, with the reason 480 maps to.
    alice
        .send(&room, "m.call.invite", invite("c0", json!(0), &offer))
        .await;
    let hangup = from_ghost(&alice, &room, &ghost, "m.call.hangup", "c0").await;
    assert_eq!(hangup["reason"], "invite_timeout", "{hangup}");
    assert_eq!(hangup["version"], 0);
    // A call for somebody else in the room is not the ghost's; an expired one neither (the
    // bridge takes events in order: by the third call's answer, both were seen).
    let mut other = invite("c2", json!("1"), &offer);
    other["invitee"] = json!(format!("@carol:{SERVER_NAME}"));
    alice.send(&room, "m.call.invite", other).await;
    let mut expired = invite("c3", json!("1"), &offer);
    expired["lifetime"] = json!(0);
    alice.send(&room, "m.call.invite", expired).await;
    alice
        .send(&room, "m.call.invite", invite("c4", json!("1"), &offer))
        .await;
    from_ghost(&alice, &room, &ghost, "m.call.reject", "c4").await;
    let events = alice.events(&room).await;
    for call_id in ["c2", "c3"] {
        assert!(
            !events
                .iter()
                .any(|event| event["sender"] == ghost.as_str()
                    && event["content"]["call_id"] == call_id),
            "{call_id}: {events:#?}"
        );
    }
    browser.close().await;
}

#[tokio::test]
async fn the_homeserver_must_show_its_token() {
    // No homeserver is needed to refuse one that is not.
    let config = bridge_config(free_listening_port());
    let gateway = Gateway::start_at(config).await;
    let transaction = |txn: &str, token: Option<&'static str>, body: Value| {
        let path = format!("/_matrix/app/v1/transactions/{txn}");
        async move { http_json(gateway.addr, "PUT", &path, token, Some(body)).await }
    };
    let events = json!({"events": []});
    let (status, answer) = transaction("1", None, events.clone()).await;
    assert_eq!(
        (status, answer["errcode"].clone()),
        (401, json!("M_UNAUTHORIZED"))
    );
    let (status, answer) = transaction("1", Some("not-the-token-at-all"), events.clone()).await;
    assert_eq!(
        (status, answer["errcode"].clone()),
        (403, json!("M_FORBIDDEN"))
    );
    let (status, _) = transaction("1", Some(HS_TOKEN), events.clone()).await;
    assert_eq!(status, 200);
    // Again: taken once, answered again.
    let (status, _) = transaction("1", Some(HS_TOKEN), events).await;
    assert_eq!(status, 200);
    let (status, answer) = transaction("2", Some(HS_TOKEN), json!({"no": "events"})).await;
    assert_eq!(
        (status, answer["errcode"].clone()),
        (400, json!("M_BAD_JSON"))
    );
    // The legacy query token is taken as well.
    let path = format!("/_matrix/app/v1/transactions/3?access_token={HS_TOKEN}");
    let (status, _) = http_json(
        gateway.addr,
        "PUT",
        &path,
        None,
        Some(json!({"events": []})),
    )
    .await;
    assert_eq!(status, 200);

    // Queries: a user outside the bridge's namespace, and room aliases, are not its.
    let (status, answer) = http_json(
        gateway.addr,
        "GET",
        "/_matrix/app/v1/users/%40alice%3Atest.local",
        Some(HS_TOKEN),
        None,
    )
    .await;
    assert_eq!(
        (status, answer["errcode"].clone()),
        (404, json!("M_NOT_FOUND"))
    );
    let (status, _) = http_json(
        gateway.addr,
        "GET",
        "/_matrix/app/v1/users/%40sip_bob%3D40example.com%3Atest.local",
        Some("wrong-token-0000000"),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = http_json(
        gateway.addr,
        "GET",
        "/_matrix/app/v1/rooms/%23room%3Atest.local",
        Some(HS_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

/// With `answer_on_183`, a far end's early media is answered on Matrix at once (Matrix has no
/// early media): the caller hears announcements while the phone never answers; her hang-up
/// then cancels the SIP call. The far end is sipp in another domain (registration closed, so
/// the local domain calls out).
#[tokio::test]
async fn early_media_is_answered_on_matrix_when_configured() {
    let (port, sipp) = crate::sipp_calls::sipp_uas("uas_183_then_cancel.xml");
    let homeserver = free_listening_port();
    let mut bridge = bridge_config(homeserver);
    bridge.matrix.answer_on_183 = true;
    let config = Config {
        matrix: bridge.matrix,
        http: bridge.http,
        ..crate::local::closed(&[])
    };
    let (_synapse, gateway, mut alice, room, ghost) =
        with_ghost_in(config, homeserver, &format!("ivr=40127.0.0.1=3a{port}")).await;
    let (browser, _) = call(&mut alice, &room).await;
    let answer = from_ghost(&alice, &room, &ghost, "m.call.answer", "c1").await;
    assert_eq!(answer["answer"]["type"], "answer");
    // The far end never answered: alice's hang-up is its CANCEL (sipp checks it).
    hang_up(&mut alice, &room).await;
    crate::sipp_calls::sipp_done(sipp).await;
    no_calls_left(&gateway, browser).await;
}

/// Events the homeserver would never send, or sends twice, straight to the bridge's route:
/// nothing breaks, nothing is taken twice, and calls go on as before.
#[tokio::test]
async fn bad_events_and_replays_change_nothing() {
    let (_synapse, gateway, mut alice, room, ghost) = with_ghost(&format!("echo=40{DOMAIN}")).await;
    let event = |id: &str, kind: &str, content: Value| {
        json!({"event_id": id, "type": kind, "room_id": room, "sender": alice.user_id,
            "origin_server_ts": 1, "content": content})
    };
    let put = |txn: &str, events: Vec<Value>| {
        let path = format!("/_matrix/app/v1/transactions/{txn}");
        let body = json!({"events": events});
        async move { http_json(gateway.addr, "PUT", &path, Some(HS_TOKEN), Some(body)).await }
    };
    let junk = vec![
        json!("not an event"),
        json!({"type": "m.call.invite"}),
        json!({"type": 5, "room_id": [], "sender": {}}),
        event("$a", "m.call.invite", json!({"call_id": 7, "offer": "x"})),
        event(
            "$b",
            "m.call.invite",
            json!({"call_id": "bad-sdp", "version": "1",
            "lifetime": 60000, "offer": {"type": "offer", "sdp": "v=0 not sdp"}}),
        ),
        event(
            "$c",
            "m.call.answer",
            json!({"call_id": "nobody", "answer": {"sdp": 1}}),
        ),
        event("$d", "m.call.hangup", json!({"call_id": "nobody"})),
        event(
            "$e",
            "m.call.negotiate",
            json!({"call_id": "nobody", "description": null}),
        ),
        event(
            "$f",
            "m.call.candidates",
            json!({"call_id": "bad-sdp", "candidates": "x"}),
        ),
        event("$g", "m.room.member", json!({"membership": 3})),
    ];
    let (status, _) = put("junk-1", junk).await;
    assert_eq!(status, 200);
    // The unreadable offer is refused, saying so; the same event again, in another
    // transaction, is not taken again; an invite without an offer is no call event at all.
    from_ghost(&alice, &room, &ghost, "m.call.reject", "bad-sdp").await;
    let again = event(
        "$b",
        "m.call.invite",
        json!({"call_id": "bad-sdp", "version": "1",
        "lifetime": 60000, "offer": {"type": "offer", "sdp": "v=0 not sdp"}}),
    );
    let offerless = event(
        "$h",
        "m.call.invite",
        json!({"call_id": "no-offer", "version": "1",
        "party_id": "x", "lifetime": 60000}),
    );
    let (status, _) = put("replay-1", vec![again, offerless]).await;
    assert_eq!(status, 200);
    // A real call still goes through, and by its answer the others were seen to.
    let (browser, _) = call(&mut alice, &room).await;
    from_ghost(&alice, &room, &ghost, "m.call.answer", "c1").await;
    let events = alice.events(&room).await;
    let about = |call_id: &str| {
        events
            .iter()
            .filter(|event| {
                event["sender"] == ghost.as_str() && event["content"]["call_id"] == call_id
            })
            .count()
    };
    assert_eq!(about("bad-sdp"), 1, "{events:#?}");
    assert_eq!(about("no-offer"), 0, "{events:#?}");
    hang_up(&mut alice, &room).await;
    no_calls_left(&gateway, browser).await;
}
