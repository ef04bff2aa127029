//! What an operator sees of one instance: the SIP, call, set-up and media metrics of
//! `/metrics` checked against known calls, and the quality summary a client gets at a call's
//! end.

use std::time::Duration;

use gateway_tests::browser::{AudioCodec, Browser};
use protocol::{Event, ServerMessage, SessionEvent, SessionState};
use serde_json::json;

use crate::calls::{Setup, browser_tone, call_bob, next, payload_type, state, until, until_heard};

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
    // bob's call carried audio both ways on both legs (a few seconds at 50 packets a
    // second), none lost.
    for leg in ["browser", "sip"] {
        for direction in ["sent", "received"] {
            let series =
                format!("sylkrtc_media_packets_total{{leg=\"{leg}\",direction=\"{direction}\"}}");
            let packets = sample(&setup, &series).await;
            assert!(packets >= 50.0, "{series} = {packets}");
            let series =
                format!("sylkrtc_media_bytes_total{{leg=\"{leg}\",direction=\"{direction}\"}}");
            let bytes = sample(&setup, &series).await;
            assert!(bytes >= 160.0 * packets, "{series} = {bytes}");
        }
        let series = format!("sylkrtc_media_lost_packets_total{{leg=\"{leg}\"}}");
        assert_eq!(sample(&setup, &series).await, 0.0, "{series}");
        let series = format!("sylkrtc_media_jitter_seconds_count{{leg=\"{leg}\"}}");
        assert_eq!(sample(&setup, &series).await, 1.0, "{series}");
    }
    let (_, body) = setup.gateway.get("/metrics").await;
    assert!(
        body.contains("sylkrtc_sip_transactions{kind=\"server\"}"),
        "{body}"
    );
    // Every metric the shipped Grafana dashboard queries is one the gateway exports.
    let dashboard = include_str!("../../../docs/deployment/grafana-dashboard.json");
    let mut queried = 0;
    for (start, _) in dashboard.match_indices("sylkrtc_") {
        let name: String = dashboard[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name);
        // Only a gateway with a local domain has bindings (checked in `nat.rs`).
        if family == "sylkrtc_local_bindings" {
            continue;
        }
        assert!(
            body.contains(&format!("# TYPE {family} ")),
            "the dashboard queries {name}, which /metrics does not have"
        );
        queried += 1;
    }
    assert!(queried > 15, "{queried}");
}

/// One packet in ten lost on the way from the browser: the browser leg counts it lost and the
/// SIP leg does not, in the quality event the client gets just before the call's end, in the
/// `call quality` figures of `/metrics`, which also count the call's packets and bytes per leg
/// as the event does; both legs have a round trip from RTCP (webrtc-rs and baresip answer
/// sender reports).
#[tokio::test]
async fn loss_on_one_leg_shows_on_that_leg() {
    let mut setup = Setup::new(|_| {}).await;
    setup.register_alice().await;
    let _bob = setup.bob("PCMU/8000/1", 1000.0);
    let mut browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let answer = call_bob(&mut setup, &mut browser, "lossy").await;
    let pt = payload_type(&answer, media::Format::Audio(media::Codec::Pcmu));
    browser.lose_every(10);
    browser.send_pcmu_tone(pt, 440.0);
    let tone = || browser_tone(&browser, pt, AudioCodec::Pcmu);
    assert_eq!(until_heard(1000.0, tone).await.0, 1000.0);
    // Reports go every 5 s each way: long enough for each side to answer one of ours.
    tokio::time::sleep(Duration::from_secs(12)).await;
    setup
        .client
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "lossy"}))
        .await;
    let quality = loop {
        match next(&mut setup.client).await {
            ServerMessage::Event(Event::Session {
                session,
                event: SessionEvent::Quality(quality),
            }) if session == "lossy" => break quality,
            ServerMessage::Event(Event::Session {
                session,
                event: SessionEvent::State(SessionState::Terminated { .. }),
            }) if session == "lossy" => panic!("the call ended without its quality"),
            _ => {}
        }
    };
    until(&mut setup.client, "lossy", |state| {
        matches!(state, SessionState::Terminated { .. })
    })
    .await;
    browser.close().await;

    assert_eq!(quality.codec.as_deref(), Some("PCMU"));
    assert!(quality.duration >= Duration::from_secs(12), "{quality:?}");
    let (web, sip) = (&quality.browser, &quality.sip);
    // About 13 s at 50 packets a second, one in ten lost.
    let expected = (web.packets_received + web.packets_lost) / 10;
    assert!(web.packets_received > 500, "{quality:?}");
    assert!(
        web.packets_lost.abs_diff(expected) <= 2,
        "the browser leg loses one packet in ten: {quality:?}"
    );
    assert_eq!(
        sip.packets_lost, 0,
        "nothing lost on the SIP leg: {quality:?}"
    );
    assert!(sip.packets_received > 500, "{quality:?}");
    // Toward the phone, the relay sends what it got: the phone's count is the browser's.
    assert!(
        sip.packets_sent.abs_diff(web.packets_received) <= 2,
        "{quality:?}"
    );
    assert_eq!(web.bytes_received, 160 * web.packets_received);
    for (leg, figures) in [("browser", web), ("sip", sip)] {
        let rtt = figures
            .round_trip_time
            .unwrap_or_else(|| panic!("a round trip on the {leg} leg: {quality:?}"));
        assert!(rtt < Duration::from_millis(200), "{leg}: {rtt:?}");
        assert!(
            figures.jitter < Duration::from_millis(40),
            "{leg}: {quality:?}"
        );
    }
    assert!(
        web.remote_packets_lost.is_some_and(|lost| lost <= 2),
        "the browser got all the relay sent: {quality:?}"
    );

    // The same figures in the metrics.
    for (series, value) in [
        (
            "sylkrtc_media_lost_packets_total{leg=\"browser\"}",
            web.packets_lost,
        ),
        ("sylkrtc_media_lost_packets_total{leg=\"sip\"}", 0),
        (
            "sylkrtc_media_packets_total{leg=\"browser\",direction=\"received\"}",
            web.packets_received,
        ),
        (
            "sylkrtc_media_packets_total{leg=\"sip\",direction=\"sent\"}",
            sip.packets_sent,
        ),
        (
            "sylkrtc_media_bytes_total{leg=\"sip\",direction=\"received\"}",
            sip.bytes_received,
        ),
        ("sylkrtc_media_round_trip_seconds_count{leg=\"browser\"}", 1),
        ("sylkrtc_media_round_trip_seconds_count{leg=\"sip\"}", 1),
    ] {
        assert_eq!(sample(&setup, series).await, value as f64, "{series}");
    }
    setup.assert_nothing_left().await;
}
