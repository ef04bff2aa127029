//! What the client hears of a call's progress: each state once, in sylkRTC's words for the
//! client's protocol version, and what a state allows (DTMF in early media).

use serde_json::{Value, json};

use super::{calling, exchange, request, update};
use crate::call::CallUpdate;
use protocol::Version;

/// The states the client is sent for early media then the answer, as JSON.
fn early_then_accepted(version: Version) -> Vec<Value> {
    let mut connection = calling(version);
    let mut out = Vec::new();
    for news in [
        CallUpdate::EarlyMedia {
            sdp: "v=0 early answer".into(),
            call_id: Some("c1".into()),
        },
        CallUpdate::Accepted {
            sdp: None,
            call_id: Some("c1".into()),
        },
    ] {
        out.extend(update(&mut connection, "s1", news));
    }
    out
}

/// `progress` and `ringing` reach the client once each: a call that rang while the callee's
/// devices woke says them again once it is placed.
#[test]
fn progress_and_ringing_are_told_once() {
    let mut connection = calling(Version::V2);
    let mut states = Vec::new();
    for news in [
        CallUpdate::Progress,
        CallUpdate::Ringing,
        CallUpdate::Progress,
        CallUpdate::Ringing,
        CallUpdate::Accepted {
            sdp: Some("v=0 answer".into()),
            call_id: None,
        },
    ] {
        for out in update(&mut connection, "s1", news) {
            states.push(out["state"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(states, ["progress", "ringing", "accepted"]);
}

/// A sylkRTC-1 client knows no `early-media` state: the answer SDP of a 183 reaches it in
/// `accepted`. sylkRTC-2 gets both states as they happen.
#[test]
fn early_media_answer_goes_in_accepted_for_sylkrtc_1() {
    let v1 = early_then_accepted(Version::V1);
    assert_eq!(v1.len(), 1, "{v1:?}");
    assert_eq!(v1[0]["event"], "state");
    assert_eq!(v1[0]["data"]["state"], "accepted");
    assert_eq!(v1[0]["data"]["sdp"], "v=0 early answer");
    let v2 = early_then_accepted(Version::V2);
    assert_eq!(v2.len(), 2, "{v2:?}");
    assert_eq!(v2[0]["state"], "early-media");
    assert_eq!(v2[0]["sdp"], "v=0 early answer");
    assert_eq!(v2[1]["state"], "accepted");
    assert!(v2[1].get("sdp").is_none(), "{v2:?}");
}

/// DTMF may go once the far end's early media reached the client (an IVR before it answers),
/// for either protocol version, but not while the call only rings.
#[test]
fn dtmf_is_allowed_in_early_media() {
    for version in [Version::V1, Version::V2] {
        let mut connection = calling(version);
        let dtmf = json!({"session": "s1", "digit": "1"});
        update(&mut connection, "s1", CallUpdate::Ringing);
        let (_, out) = exchange(
            &mut connection,
            request("session-dtmf-info", "3", dtmf.clone()),
        );
        assert_eq!(out.last().unwrap()["sylkrtc"], "error", "{out:?}");
        update(
            &mut connection,
            "s1",
            CallUpdate::EarlyMedia {
                sdp: "v=0 early answer".into(),
                call_id: None,
            },
        );
        let (_, out) = exchange(&mut connection, request("session-dtmf-info", "4", dtmf));
        assert!(out.iter().any(|o| o["sylkrtc"] == "ack"), "{out:?}");
        assert!(
            out.iter()
                .any(|o| o["what"] == "Dtmf { digits: \"1\", duration: 100 }"),
            "{out:?}"
        );
    }
}
