use serde_json::json;

use super::*;

fn drain(hub: &mut Hub) -> Vec<Output> {
    std::iter::from_fn(|| hub.poll_output()).collect()
}

fn send(conn: ConnId, message: Value) -> Output {
    Output::Send(conn, message)
}

fn error(conn: ConnId, text: &str) -> Output {
    Output::Send(conn, json!({"error": text}))
}

fn say(hub: &mut Hub, conn: ConnId, message: Value) {
    hub.receive(conn, &message.to_string());
}

fn config() -> Value {
    json!({"message_type": "config", "ice_servers": [{"urls": ["stun:127.0.0.1:3478"]}]})
}

/// Device "cvd-1" on connection 1.
fn with_device() -> Hub {
    let mut hub = Hub::new(&["127.0.0.1:3478".to_owned()]);
    hub.connect(1, Side::Device);
    say(
        &mut hub,
        1,
        json!({"message_type": "register", "device_id": "cvd-1", "device_info": {"screens": 1}}),
    );
    assert_eq!(drain(&mut hub), [send(1, config())]);
    hub
}

#[test]
fn clients_get_config_and_device_info_and_forward_both_ways_with_1_based_ids() {
    let mut hub = with_device();
    hub.connect(2, Side::Client);
    hub.connect(3, Side::Client);
    say(
        &mut hub,
        2,
        json!({"message_type": "connect", "device_id": "cvd-1"}),
    );
    say(
        &mut hub,
        3,
        json!({"message_type": "connect", "device_id": "cvd-1"}),
    );
    let info = json!({"message_type": "device_info", "device_info": {"screens": 1}});
    assert_eq!(
        drain(&mut hub),
        [
            send(2, config()),
            send(2, info.clone()),
            send(3, config()),
            send(3, info)
        ]
    );
    say(
        &mut hub,
        3,
        json!({"message_type": "forward", "payload": {"type": "request-offer"}}),
    );
    assert_eq!(
        drain(&mut hub),
        [send(
            1,
            json!({"message_type": "client_msg", "client_id": 2, "payload": {"type": "request-offer"}})
        )]
    );
    say(
        &mut hub,
        1,
        json!({"message_type": "forward", "client_id": 2, "payload": {"type": "offer", "sdp": "v=0"}}),
    );
    assert_eq!(
        drain(&mut hub),
        [send(
            3,
            json!({"message_type": "device_msg", "payload": {"type": "offer", "sdp": "v=0"}})
        )]
    );
    // A client that leaves is announced, and forwarding to it says so again.
    hub.disconnect(2);
    let gone = json!({"message_type": "client_disconnected", "client_id": 1});
    assert_eq!(drain(&mut hub), [send(1, gone.clone())]);
    say(
        &mut hub,
        1,
        json!({"message_type": "forward", "client_id": 1, "payload": {}}),
    );
    say(
        &mut hub,
        1,
        json!({"message_type": "forward", "client_id": 7, "payload": {}}),
    );
    assert_eq!(
        drain(&mut hub),
        [send(1, gone), error(1, "Forward failed: Unknown client 7")]
    );
    assert_eq!(hub.device_ids(), ["cvd-1"]);
}

#[test]
fn every_device_error_and_whether_it_closes() {
    let mut hub = with_device();
    say(
        &mut hub,
        1,
        json!({"message_type": "forward", "client_id": "one", "payload": {}}),
    );
    assert_eq!(
        drain(&mut hub),
        [
            error(1, "Forward failed: Missing or invalid client id"),
            Output::Close(1)
        ]
    );
    assert!(hub.device_ids().is_empty());

    let mut hub = with_device();
    say(
        &mut hub,
        1,
        json!({"message_type": "forward", "client_id": 1}),
    );
    assert_eq!(
        drain(&mut hub),
        [
            error(1, "Forward failed: Missing payload"),
            Output::Close(1)
        ]
    );

    let mut hub = with_device();
    say(
        &mut hub,
        1,
        json!({"message_type": "register", "device_id": "again"}),
    );
    assert_eq!(
        drain(&mut hub),
        [
            error(1, "Device already registered: cvd-1"),
            Output::Close(1)
        ]
    );

    let mut hub = with_device();
    hub.connect(2, Side::Device);
    say(
        &mut hub,
        2,
        json!({"message_type": "register", "device_id": ""}),
    );
    hub.connect(3, Side::Device);
    say(
        &mut hub,
        3,
        json!({"message_type": "register", "device_id": "cvd-1"}),
    );
    hub.connect(4, Side::Device);
    say(&mut hub, 4, json!({"message_type": "hello"}));
    hub.receive(4, "not json");
    hub.connect(5, Side::Device);
    hub.receive(5, r#"{"message_type": 3}"#);
    hub.connect(6, Side::Device);
    hub.binary(6);
    assert_eq!(
        drain(&mut hub),
        [
            error(2, "Missing device id in registration request"),
            Output::Close(2),
            // A duplicate id: closed without an error frame.
            Output::Close(3),
            error(4, "Unknown message type: hello"),
            error(4, "Received Invalid JSON"),
            Output::Close(4),
            error(5, r#"Invalid message format: '{"message_type": 3}'"#),
            Output::Close(5),
            error(6, "Received a binary message"),
            Output::Close(6),
        ]
    );
}

#[test]
fn every_client_error_and_whether_it_closes() {
    let mut hub = with_device();
    hub.connect(2, Side::Client);
    say(
        &mut hub,
        2,
        json!({"message_type": "forward", "payload": {}}),
    );
    hub.connect(3, Side::Client);
    say(&mut hub, 3, json!({"message_type": "connect"}));
    hub.connect(4, Side::Client);
    say(
        &mut hub,
        4,
        json!({"message_type": "connect", "device_id": "nope"}),
    );
    assert_eq!(
        drain(&mut hub),
        [
            error(2, "Forward failed: No device associated to client"),
            Output::Close(2),
            error(3, "Invalid connection request: Missing device id"),
            Output::Close(3),
            send(4, config()),
            error(4, "Connection failed: Device not found: 'nope'"),
            Output::Close(4),
        ]
    );

    hub.connect(5, Side::Client);
    say(
        &mut hub,
        5,
        json!({"message_type": "connect", "device_id": "cvd-1"}),
    );
    drain(&mut hub);
    say(
        &mut hub,
        5,
        json!({"message_type": "connect", "device_id": "cvd-1"}),
    );
    assert_eq!(
        drain(&mut hub),
        [
            error(
                5,
                "Attempt to connect to multiple devices over same websocket"
            ),
            Output::Close(5),
            send(
                1,
                json!({"message_type": "client_disconnected", "client_id": 1})
            ),
        ]
    );

    hub.connect(6, Side::Client);
    say(
        &mut hub,
        6,
        json!({"message_type": "connect", "device_id": "cvd-1"}),
    );
    drain(&mut hub);
    say(&mut hub, 6, json!({"message_type": "forward"}));
    assert_eq!(
        drain(&mut hub),
        [
            error(6, "Forward failed: No payload present in message"),
            Output::Close(6),
            send(
                1,
                json!({"message_type": "client_disconnected", "client_id": 2})
            ),
        ]
    );

    // The device goes: its clients learn on their next forward.
    hub.connect(7, Side::Client);
    say(
        &mut hub,
        7,
        json!({"message_type": "connect", "device_id": "cvd-1"}),
    );
    drain(&mut hub);
    hub.disconnect(1);
    assert_eq!(drain(&mut hub), []);
    say(
        &mut hub,
        7,
        json!({"message_type": "forward", "payload": {}}),
    );
    assert_eq!(
        drain(&mut hub),
        [
            error(7, "Forward failed: Device disconnected"),
            Output::Close(7)
        ]
    );
}
