//! The gateway as a Matrix application service (a bridge) of a real Synapse: the homeserver
//! must show its token; a ghost user (a SIP address) invited to a room joins it; a call to a
//! ghost, which the bridge does not carry yet, is refused saying so.

use std::net::SocketAddr;
use std::time::Duration;

use gateway::{Config, MatrixConfig};
use gateway_tests::Gateway;
use gateway_tests::peers::free_port;
use gateway_tests::synapse::{SERVER_NAME, Synapse, http_json};
use serde_json::{Value, json};

const AS_TOKEN: &str = "as-token-for-the-matrix-tests";
const HS_TOKEN: &str = "hs-token-for-the-matrix-tests";
const WAIT: Duration = Duration::from_secs(15);

/// A configuration with the bridge on, the homeserver at `homeserver` and the gateway's HTTP
/// listener on a port chosen now (the registration names it).
fn bridge_config(homeserver: u16) -> Config {
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
            listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
            ..gateway::HttpConfig::default()
        },
        ..Config::default()
    }
}

/// Polls `check` until it holds.
async fn eventually<F, Fut>(what: &str, mut check: F)
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

#[tokio::test]
async fn a_ghost_invited_to_a_room_joins_and_refuses_calls_saying_why() {
    let homeserver = free_port();
    let config = bridge_config(homeserver);
    let registration = gateway::matrix_registration(&config).expect("a registration");
    let synapse = Synapse::start(homeserver, &registration);
    let _gateway = Gateway::start_at(config).await;
    synapse.register_user("alice", "alicepw");
    let mut alice = synapse.login("alice", "alicepw").await;

    // alice invites the ghost of bob@example.com: the homeserver asks the bridge about the user
    // (which registers it), then the bridge hears of the invite and the ghost joins.
    let ghost = format!("@sip_bob=40example.com:{SERVER_NAME}");
    let room = alice.create_direct_room(&ghost).await;
    eventually("the ghost joins the room", || async {
        alice.joined_members(&room).await.contains(&ghost)
    })
    .await;

    // A call to the ghost: refused (m.call.reject, VoIP version 1), with a notice saying why.
    alice
        .send(
            &room,
            "m.call.invite",
            json!({"call_id": "c1", "party_id": "alicedev", "version": "1", "lifetime": 60000,
                "offer": {"type": "offer", "sdp": "v=0\r\n"}}),
        )
        .await;
    let from_ghost = |events: &[Value], kind: &str| -> Option<Value> {
        events
            .iter()
            .find(|event| event["type"] == kind && event["sender"] == ghost.as_str())
            .map(|event| event["content"].clone())
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    let events = loop {
        let events = alice.events(&room).await;
        if from_ghost(&events, "m.call.reject").is_some()
            && from_ghost(&events, "m.room.message").is_some()
        {
            break events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ghost refuses the call and says why: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reject = from_ghost(&events, "m.call.reject").unwrap();
    assert_eq!(reject["call_id"], "c1");
    assert_eq!(reject["version"], "1");
    assert_eq!(
        reject["party_id"].as_str().map(str::len),
        Some(8),
        "{reject}"
    );
    let notice = from_ghost(&events, "m.room.message").unwrap();
    assert_eq!(notice["msgtype"], "m.notice");
    let body = notice["body"].as_str().unwrap_or_default();
    assert!(
        body.contains("not supported yet") && body.contains("bob@example.com"),
        "{body}"
    );

    // A call for somebody else in the room is not the ghost's to refuse; a version 0 call
    // gets m.call.hangup (version 0 has no reject). The bridge takes events in order, so by
    // the hang-up the other call was seen and left alone.
    alice
        .send(
            &room,
            "m.call.invite",
            json!({"call_id": "c2", "party_id": "alicedev", "version": "1", "lifetime": 60000,
                "invitee": format!("@carol:{SERVER_NAME}"),
                "offer": {"type": "offer", "sdp": "v=0\r\n"}}),
        )
        .await;
    alice
        .send(
            &room,
            "m.call.invite",
            json!({"call_id": "c0", "version": 0, "lifetime": 60000,
                "offer": {"type": "offer", "sdp": "v=0\r\n"}}),
        )
        .await;
    eventually("the ghost hangs up the version 0 call", || async {
        alice.events(&room).await.iter().any(|event| {
            event["type"] == "m.call.hangup"
                && event["sender"] == ghost.as_str()
                && event["content"]["call_id"] == "c0"
        })
    })
    .await;
    let events = alice.events(&room).await;
    assert!(
        !events
            .iter()
            .any(|event| event["sender"] == ghost.as_str() && event["content"]["call_id"] == "c2"),
        "{events:#?}"
    );
}

#[tokio::test]
async fn the_homeserver_must_show_its_token() {
    // No homeserver is needed to refuse one that is not.
    let config = bridge_config(free_port());
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
