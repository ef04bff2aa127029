//! Out-of-dialog SIP requests a phone sends to a user (MESSAGE, SUBSCRIBE): the SIP stack hands
//! them to the gateway, which answers each once, with a 405 whose Warning says that messaging
//! and presence are not supported yet, and our Allow.

use gateway_tests::Gateway;

use crate::local::{DOMAIN, finals, local_client, shipped};

#[tokio::test]
async fn messages_and_subscriptions_are_refused_saying_why() {
    let gateway = Gateway::start(shipped()).await;
    // A browser of the user is there: the request is still not delivered anywhere yet.
    let _alice = local_client(&gateway, "alice").await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let mut call_ids = Vec::new();
    for method in ["MESSAGE", "SUBSCRIBE"] {
        let call_id = format!("{}-out-of-dialog", method.to_ascii_lowercase());
        let extra = match method {
            "MESSAGE" => "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
            _ => {
                "Event: presence\r\nExpires: 600\r\nContact: <sip:bob@127.0.0.1>\r\nContent-Length: 0\r\n\r\n"
            }
        };
        let request = format!(
            "{method} sip:alice@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{call_id}\r\n\
             From: <sip:bob@elsewhere.test>;tag=b\r\nTo: <sip:alice@{DOMAIN}>\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}"
        );
        socket
            .send_to(request.as_bytes(), gateway.sip.0)
            .await
            .unwrap();
        call_ids.push(call_id);
    }
    let answers = finals(&socket, &call_ids).await;
    for (call_id, method) in call_ids.iter().zip(["MESSAGE", "SUBSCRIBE"]) {
        let (code, text) = &answers[call_id];
        assert_eq!(*code, 405, "{text}");
        assert!(
            text.contains(&format!("{method} is not supported by this gateway yet")),
            "{text}"
        );
        assert!(text.contains("Allow: "), "{text}");
    }
}
