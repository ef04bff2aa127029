//! Closing handshakes on every WebSocket endpoint, spoken to with raw frames: a client's Close
//! is answered with a Close echoing its code (RFC 6455 section 5.5.1), and protocol errors
//! close with the code that names them (1002, 1007, 1009), never a bare TCP close.

use std::time::Duration;

use gateway::Config;
use gateway_tests::Gateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The endpoints on the HTTP listener, with the subprotocol each wants.
const ENDPOINTS: [(&str, Option<&str>); 4] = [
    ("/webrtcgateway/ws", Some("sylkRTC-2")),
    ("/signaling", None),
    ("/webrtcsink", None),
    ("/register_device", None),
];

/// A WebSocket opened by hand, so that any frame can be sent.
async fn open(gateway: &Gateway, path: &str, protocol: Option<&str>) -> TcpStream {
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    let protocol = protocol
        .map(|name| format!("Sec-WebSocket-Protocol: {name}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{protocol}\r\n",
        gateway.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{path}: {head}");
    stream
}

/// A masked client frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        length @ 0..=125 => out.push(0x80 | length as u8),
        length @ 126..=65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(length as u16).to_be_bytes());
        }
        length => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(length as u64).to_be_bytes());
        }
    }
    let mask = [0x12, 0x34, 0x56, 0x78];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Reads server frames until a Close: its code (`None` for an empty one); panics if the
/// connection ends without one.
async fn close_code(stream: &mut TcpStream) -> Option<u16> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Parse what we have: unmasked server frames.
        let mut at = 0;
        while data.len() >= at + 2 {
            let opcode = data[at] & 0x0f;
            let mut length = usize::from(data[at + 1] & 0x7f);
            let mut header = 2;
            if length == 126 {
                if data.len() < at + 4 {
                    break;
                }
                length = usize::from(u16::from_be_bytes([data[at + 2], data[at + 3]]));
                header = 4;
            }
            if data.len() < at + header + length {
                break;
            }
            let payload = &data[at + header..at + header + length];
            if opcode == 0x8 {
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
            at += header + length;
        }
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("a frame in time")
            .unwrap_or(0);
        assert!(read > 0, "the connection ended without a close frame");
        data.extend_from_slice(&chunk[..read]);
    }
}

#[tokio::test]
async fn every_endpoint_answers_a_close_and_names_protocol_errors() {
    let mut config = Config::default();
    config.websocket.max_message_size = 4096;
    let gateway = Gateway::start(config).await;
    for (path, protocol) in ENDPOINTS {
        // A Close with a code gets it back; an empty Close gets an empty one.
        let mut socket = open(&gateway, path, protocol).await;
        socket
            .write_all(&frame(0x8, &[0x03, 0xe8, b'b', b'y', b'e']))
            .await
            .unwrap();
        assert_eq!(close_code(&mut socket).await, Some(1000), "{path}");
        let mut socket = open(&gateway, path, protocol).await;
        socket.write_all(&frame(0x8, &[0x0f, 0xa1])).await.unwrap();
        assert_eq!(close_code(&mut socket).await, Some(4001), "{path}");
        let mut socket = open(&gateway, path, protocol).await;
        socket.write_all(&frame(0x8, &[])).await.unwrap();
        assert_eq!(close_code(&mut socket).await, None, "{path}");

        // Invalid UTF-8 in a text frame: 1007.
        let mut socket = open(&gateway, path, protocol).await;
        socket
            .write_all(&frame(0x1, &[0xc3, 0x28, 0xff]))
            .await
            .unwrap();
        assert_eq!(close_code(&mut socket).await, Some(1007), "{path}");
        // A reserved opcode: 1002.
        let mut socket = open(&gateway, path, protocol).await;
        socket.write_all(&frame(0x3, b"x")).await.unwrap();
        assert_eq!(close_code(&mut socket).await, Some(1002), "{path}");
        // A message over the size limit: 1009.
        let mut socket = open(&gateway, path, protocol).await;
        socket.write_all(&frame(0x1, &[b'a'; 5000])).await.unwrap();
        assert_eq!(close_code(&mut socket).await, Some(1009), "{path}");
    }
}
