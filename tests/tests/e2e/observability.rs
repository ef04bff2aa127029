//! What an operator sees of one instance: the SIP, call and set-up metrics of `/metrics`
//! checked against known calls.

use gateway_tests::browser::{AudioCodec, Browser};
use protocol::SessionState;
use serde_json::json;

use crate::calls::{Setup, browser_tone, call_bob, payload_type, state, until, until_heard};

/// A sample of `/metrics` by its full series (labels included), 0 when absent.
async fn sample(setup: &Setup, series: &str) -> f64 {
    let (_, body) = setup.gateway.get("/metrics").await;
    body.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .filter(|rest| rest.starts_with(' '))
        })
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// alice registers, calls bob (answered, then hung up) and carol (who has no phone): the
/// registration, every SIP message of the calls, their outcomes and set-up times are counted.
#[tokio::test]
async fn metrics_count_known_calls() {
    let mut setup = Setup::new(|_| {}).await;
    setup.register_alice().await;
    assert_eq!(
        sample(&setup, "sylkrtc_sip_registrations{state=\"registered\"}").await,
        1.0
    );
    assert_eq!(
        sample(
            &setup,
            "sylkrtc_sip_requests_total{direction=\"out\",method=\"REGISTER\"}"
        )
        .await,
        2.0,
        "the REGISTER and its answer to the challenge"
    );
    assert_eq!(
        sample(
            &setup,
            "sylkrtc_sip_responses_total{direction=\"in\",method=\"REGISTER\",code=\"401\"}"
        )
        .await,
        1.0
    );
    let _bob = setup.bob("PCMU/8000/1", 1000.0);
    let mut browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let answer = call_bob(&mut setup, &mut browser, "to-bob").await;
    // Two seconds of audio both ways before the hang-up.
    let pt = payload_type(&answer, media::Format::Audio(media::Codec::Pcmu));
    browser.send_pcmu_tone(pt, 440.0);
    let tone = || browser_tone(&browser, pt, AudioCodec::Pcmu);
    assert_eq!(until_heard(1000.0, tone).await.0, 1000.0);
    setup
        .client
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "to-bob"}))
        .await;
    until(&mut setup.client, "to-bob", |state| {
        matches!(state, SessionState::Terminated { .. })
    })
    .await;
    browser.close().await;

    // carol has no binding at the registrar: the call fails.
    let browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let offer = browser.offer().await;
    setup
        .client
        .expect_ack_amid_events(
            json!({"sylkrtc": "session-create", "account": "alice@127.0.0.1",
            "session": "to-carol", "uri": "carol@127.0.0.1", "sdp": offer}),
        )
        .await;
    let reason = loop {
        if let SessionState::Terminated { reason } = state(&mut setup.client, "to-carol").await {
            break reason.unwrap_or_default();
        }
    };
    browser.close().await;
    setup.assert_nothing_left().await;

    let outcome = |outcome: &str| {
        format!("sylkrtc_calls_ended_total{{direction=\"out\",outcome=\"{outcome}\"}}")
    };
    assert_eq!(sample(&setup, &outcome("answered")).await, 1.0);
    let expected = if reason.starts_with("480") || reason.starts_with("408") {
        "unanswered"
    } else {
        "failed"
    };
    assert_eq!(sample(&setup, &outcome(expected)).await, 1.0, "{reason}");
    assert_eq!(
        sample(&setup, "sylkrtc_call_setup_seconds_count").await,
        1.0,
        "only bob's call reached its far end"
    );
    assert_eq!(
        sample(&setup, "sylkrtc_call_setup_seconds_bucket{le=\"+Inf\"}").await,
        1.0
    );
    for (series, at_least) in [
        (
            "sylkrtc_sip_requests_total{direction=\"out\",method=\"INVITE\"}",
            2.0,
        ),
        (
            "sylkrtc_sip_requests_total{direction=\"out\",method=\"ACK\"}",
            2.0,
        ),
        (
            "sylkrtc_sip_requests_total{direction=\"out\",method=\"BYE\"}",
            1.0,
        ),
        (
            "sylkrtc_sip_responses_total{direction=\"in\",method=\"INVITE\",code=\"200\"}",
            1.0,
        ),
        (
            "sylkrtc_sip_responses_total{direction=\"in\",method=\"BYE\",code=\"200\"}",
            1.0,
        ),
    ] {
        let value = sample(&setup, series).await;
        assert!(value >= at_least, "{series} = {value}");
    }
    // bob's call carried audio both ways (a few seconds at 50 packets a second), none lost.
    for direction in ["in", "out"] {
        let series = format!("sylkrtc_sip_leg_packets_total{{direction=\"{direction}\"}}");
        let packets = sample(&setup, &series).await;
        assert!(packets >= 50.0, "{series} = {packets}");
    }
    assert_eq!(
        sample(&setup, "sylkrtc_sip_leg_lost_packets_total").await,
        0.0
    );
    let (_, body) = setup.gateway.get("/metrics").await;
    assert!(
        body.contains("sylkrtc_sip_transactions{kind=\"server\"}"),
        "{body}"
    );
}
