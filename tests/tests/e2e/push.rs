//! Push tokens: `account-devicetoken` puts the device's token into the Contact of the
//! account's REGISTERs (kamailio keeps it in its location table, where a push service reads
//! it), as the Sylk apps' `pn-*` parameters or RFC 8599's; a new token registers the binding
//! again, and requests still reach it.

use std::time::Duration;

use serde_json::json;

use crate::calls::Setup;
use crate::conversations::message;
use crate::local::WAIT;
use crate::messaging::{TEXT, send_request};

fn token(token: &str) -> serde_json::Value {
    json!({"sylkrtc": "account-devicetoken", "account": "alice@127.0.0.1", "token": token,
        "platform": "android", "device": "pixel-7", "silent": true, "app": "com.example.sylk"})
}

/// The single binding of alice once its Contact has `needle` (the gateway runs meanwhile).
async fn binding_with(setup: &Setup, needle: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let bindings = setup.kamailio.bindings("alice");
        if bindings.len() == 1 && bindings[0].address.contains(needle) {
            return bindings[0].address.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no single binding with {needle}: {bindings:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_device_token_goes_into_the_registrations_contact() {
    let mut setup = Setup::new(|_| {}).await;
    setup.client.expect_ack(token("fcm:tok-1")).await;
    setup.register_alice().await;
    let contact = binding_with(&setup, "pn-tok=fcm:tok-1").await;
    for param in [
        "pn-app=com.example.sylk",
        "pn-type=android",
        "pn-device=pixel-7",
        "pn-silent=1",
    ] {
        assert!(contact.contains(param), "{contact}");
    }

    // A new token: the binding is made again with it, the old one removed.
    setup.client.expect_ack(token("fcm:tok-2")).await;
    let contact = binding_with(&setup, "pn-tok=fcm:tok-2").await;
    // Requests to the new Contact reach the account.
    let (code, text) = send_request(setup.gateway.sip.0, "MESSAGE", &contact, "push-1", TEXT).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(message(&mut setup.client).await.content, "hello");

    // Bad tokens are refused, saying which field.
    assert_eq!(
        setup.client.expect_error(token("two words")).await,
        "token must be 1 to 4096 visible ASCII characters"
    );
}

#[tokio::test]
async fn rfc_8599_registrars_get_its_parameters() {
    let mut setup = Setup::new(|config| {
        config.accounts.rfc8599_push_domains = vec!["127.0.0.1".into()];
    })
    .await;
    setup.client.expect_ack(token("tok-3")).await;
    setup.register_alice().await;
    let contact = binding_with(&setup, "pn-prid=tok-3").await;
    assert!(contact.contains("pn-provider=fcm"), "{contact}");
    assert!(contact.contains("pn-param=com.example.sylk"), "{contact}");
    assert!(!contact.contains("pn-tok"), "{contact}");
}
