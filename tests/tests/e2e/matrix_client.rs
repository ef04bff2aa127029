//! The bridge with a real Matrix VoIP client: matrix-js-sdk's `MatrixCall` (as Element Web's
//! 1:1 calls use it) in headless chromium, whose fake microphone plays 440 Hz, and baresip
//! phones of the local domain (1000 Hz), through a real Synapse. Calls both ways with tones
//! checked by ear on each side, DTMF, hang-ups from each side, a busy phone, a Matrix user who
//! rejects.

use std::time::Duration;

use gateway_tests::audio::{Tone, write_wav};
use gateway_tests::matrix_client::MatrixClient;
use gateway_tests::synapse::{MatrixUser, SERVER_NAME, Synapse};
use gateway_tests::{Gateway, TempDir};

use crate::local::{DOMAIN, phone};
use crate::matrix::{WAIT, eventually, synapse_and_bridge};
use crate::matrix_from_sip::{address_of, alice_id, bob_closed, no_calls_left};
use crate::phones::phone_with;
use crate::web_phone::{hears, near};

/// The tone of the Matrix client's microphone, and the phones'.
const CLIENT_TONE: f64 = 440.0;
const PHONE_TONE: f64 = 1000.0;
/// Calls through chromium take longer to set up than the test peers'.
const CONNECT: Duration = Duration::from_secs(30);

/// A bridge of the shipped configuration with Synapse; alice logged in (REST) and in a direct
/// room with the ghost of `callee@DOMAIN`, who joined; her matrix-js-sdk client in chromium.
async fn bridge_and_client(
    callee: &str,
    dir: &TempDir,
) -> (Synapse, Gateway, MatrixUser, String, MatrixClient) {
    let (synapse, gateway, alice) = synapse_and_bridge(&[]).await;
    let ghost = format!("@sip_{callee}=40{DOMAIN}:{SERVER_NAME}");
    let room = alice.create_direct_room(&ghost).await;
    eventually("the ghost joins the room", || async {
        alice.joined_members(&room).await.contains(&ghost)
    })
    .await;
    let wav = dir.path().join("microphone.wav");
    let mut tone = Tone::new(CLIENT_TONE, 48_000);
    write_wav(&wav, &tone.samples(48_000 * 60), 48_000).expect("write the microphone's tone");
    let client = MatrixClient::start(&alice, &wav).await;
    (synapse, gateway, alice, room, client)
}

#[tokio::test]
async fn element_s_call_client_calls_a_phone_and_the_phone_calls_it() {
    let dir = TempDir::new();
    let (_synapse, gateway, _alice, room, mut client) = bridge_and_client("bob", &dir).await;
    let bob = phone(&gateway, "bob", "anything", PHONE_TONE).await;

    // alice calls bob from matrix-js-sdk: bob's phone answers; each hears the other.
    client
        .run(&format!("mx.call({})", serde_json::json!(room)))
        .await;
    client.wait_state("connected", CONNECT).await;
    let heard = hears(&mut client.page, PHONE_TONE).await;
    assert!(
        near(heard, PHONE_TONE),
        "alice hears {heard} Hz: {:#}",
        client.status().await
    );
    // Her key goes in the media (RFC 4733): bob sees it.
    client.run("mx.dtmf('7')").await;
    assert!(
        bob.wait_for("CALL_DTMF_START", 1, WAIT).await,
        "bob sees no DTMF: {:?}",
        bob.events()
    );
    client.run("mx.hangup()").await;
    bob_closed(&bob, 1).await;
    let (tone, _) = bob.received_tone().expect("bob's recording");
    assert_eq!(tone, CLIENT_TONE, "bob hears alice's microphone");
    no_calls_left(&gateway).await;

    // bob calls alice back at the address her call came from: it rings in matrix-js-sdk (in
    // the same room), she answers, they talk, bob hangs up.
    bob.command("dial", &address_of(&alice_id()));
    client
        .wait_for("alice's client rings", CONNECT, |status| {
            status["incoming"]
                .as_array()
                .is_some_and(|calls| !calls.is_empty())
                && status["state"] == "ringing"
        })
        .await;
    client.run("mx.answer()").await;
    client.wait_state("connected", CONNECT).await;
    assert!(bob.wait_for("CALL_ESTABLISHED", 2, WAIT).await);
    let heard = hears(&mut client.page, PHONE_TONE).await;
    assert!(near(heard, PHONE_TONE), "alice hears {heard} Hz");
    bob.command("hangup", "");
    let status = client.wait_state("ended", WAIT).await;
    assert_eq!(status["reason"], "user_hangup", "{status:#}");
    let (tone, _) = bob.received_tone().expect("bob's recording");
    assert_eq!(tone, CLIENT_TONE, "bob hears alice's microphone again");
    no_calls_left(&gateway).await;
    client.close().await;
}

#[tokio::test]
async fn a_busy_phone_and_a_matrix_user_who_rejects() {
    let dir = TempDir::new();
    let (_synapse, gateway, _alice, room, mut client) = bridge_and_client("erin", &dir).await;
    // erin's phone rings until told; she refuses (486): alice's call ends as rejected.
    let erin = phone_with(&gateway, "erin", PHONE_TONE, "answermode=manual").await;
    client
        .run(&format!("mx.call({})", serde_json::json!(room)))
        .await;
    assert!(erin.wait_for("CALL_INCOMING", 1, CONNECT).await);
    erin.command("hangup", "");
    let status = client.wait_state("ended", WAIT).await;
    assert!(
        status["log"]
            .as_str()
            .is_some_and(|log| log.contains("hangup")),
        "{status:#}"
    );
    no_calls_left(&gateway).await;

    // erin calls alice, who rejects in matrix-js-sdk: erin's call is refused (busy).
    erin.command("dial", &address_of(&alice_id()));
    client
        .wait_for("alice's client rings", CONNECT, |status| {
            status["state"] == "ringing"
        })
        .await;
    client.run("mx.reject()").await;
    let reason = bob_closed(&erin, 2).await;
    assert!(reason.contains("486"), "{reason}");
    no_calls_left(&gateway).await;
    client.close().await;
}
