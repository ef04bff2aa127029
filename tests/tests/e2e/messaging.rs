//! Out-of-dialog SIP requests a phone sends to a user (MESSAGE, SUBSCRIBE), for a user of the
//! local domain or to the Contact a browser's account registered at its SIP service: the SIP
//! stack hands them to the gateway, which answers each once, with a 405 whose Warning says
//! that messaging and presence are not supported yet, and our Allow.

use gateway_tests::Gateway;

use crate::calls::Setup;
use crate::local::{DOMAIN, finals, local_client, shipped};

/// Sends `method` to `uri` at `gateway` from a fresh socket, with the headers and body in
/// `rest`, and checks the final response: 405, the Warning that says why, our Allow.
async fn refused_saying_why(gateway: std::net::SocketAddr, method: &str, uri: &str, rest: &str) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let call_id = format!("{}-{}", method.to_ascii_lowercase(), local.port());
    let request = format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{call_id}\r\n\
         From: <sip:bob@elsewhere.test>;tag=b\r\nTo: <{uri}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 {method}\r\nMax-Forwards: 70\r\n{rest}"
    );
    socket.send_to(request.as_bytes(), gateway).await.unwrap();
    let mut answers = finals(&socket, std::slice::from_ref(&call_id)).await;
    let (code, text) = answers.remove(&call_id).expect("an answer");
    assert_eq!(code, 405, "{text}");
    assert!(
        text.contains(&format!("{method} is not supported by this gateway yet")),
        "{text}"
    );
    assert!(text.contains("Allow: "), "{text}");
}

const TEXT: &str = "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";

/// A MESSAGE to the Contact of a browser account's registration (as its SIP service forwards
/// it) reaches the connection that holds the account, which answers it.
#[tokio::test]
async fn a_message_to_a_registered_account_is_refused_saying_why() {
    let mut setup = Setup::new(|_| {}).await;
    setup.register_alice().await;
    let contact = setup.kamailio.bindings("alice").remove(0).address;
    refused_saying_why(setup.gateway.sip.0, "MESSAGE", &contact, TEXT).await;
}

#[tokio::test]
async fn messages_and_subscriptions_for_the_local_domain_are_refused_saying_why() {
    let gateway = Gateway::start(shipped()).await;
    // A browser of the user is there: the request is still not delivered anywhere yet.
    let _alice = local_client(&gateway, "alice").await;
    let uri = format!("sip:alice@{DOMAIN}");
    refused_saying_why(gateway.sip.0, "MESSAGE", &uri, TEXT).await;
    let subscription = "Event: presence\r\nExpires: 600\r\nContact: <sip:bob@127.0.0.1>\r\nContent-Length: 0\r\n\r\n";
    refused_saying_why(gateway.sip.0, "SUBSCRIBE", &uri, subscription).await;
}
