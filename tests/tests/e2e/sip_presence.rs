//! Presence over SIP (RFC 3856): phones of the local domain SUBSCRIBE to its users and hear
//! NOTIFYs as they come and go, and PUBLISH their own state, which browsers of the domain see;
//! a browser whose account is registered through another domain's server watches its contacts
//! there, the gateway SUBSCRIBing on its behalf. baresip (with its `presence` module) is the
//! phone on both sides.

use std::time::Duration;

use gateway_tests::Gateway;
use gateway_tests::baresip::Baresip;
use serde_json::json;

use crate::calls::Setup;
use crate::local::{DOMAIN, local_client, shipped};
use crate::presence::presence;

const WAIT: Duration = Duration::from_secs(20);

/// Waits until `needle` is in the phone's log `count` times.
async fn logged(phone: &Baresip, needle: &str, count: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while phone.log.count(needle) < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{needle:?} {count} times in the phone's log:\n{}",
            phone.log.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A baresip phone registered at the gateway's local domain with the presence module.
fn presence_phone(gateway: &Gateway, user: &str, extra: &str, contacts: &[&str]) -> Baresip {
    let account = format!(
        "<sip:{user}@{DOMAIN};transport=udp>;outbound=\"sip:127.0.0.1:{port};transport=udp\";\
         auth_pass=whatever;regint=300{extra}\n",
        port = gateway.sip.0.port()
    );
    Baresip::start_presence(&account, contacts)
}

fn add(account: &str, kind: &str, data: serde_json::Value) -> serde_json::Value {
    json!({"sylkrtc": "account-update-addressbook", "account": account,
        "action": "add", "type": kind, "data": data})
}

#[tokio::test]
async fn phones_watch_and_publish_in_the_local_domain() {
    let gateway = Gateway::start(shipped()).await;
    let alice_uri = format!("alice@{DOMAIN}");
    // alice has bob as a contact: bob may watch her.
    let mut alice = local_client(&gateway, "alice").await;
    alice
        .expect_ack_amid_events(add(
            &alice_uri,
            "contact",
            json!({"id": "b", "uri": format!("bob@{DOMAIN}"), "name": "Bob"}),
        ))
        .await;
    let contact = format!("<sip:{alice_uri}>;presence=p2p");
    let bob = presence_phone(&gateway, "bob", "", &[&contact]);
    // bob's SUBSCRIBE is challenged, answered, accepted; the first NOTIFY says she is open.
    logged(&bob, "Subscription-State: active", 1).await;
    logged(&bob, "<basic>open</basic>", 1).await;
    alice.close().await;
    logged(&bob, "<basic>closed</basic>", 1).await;

    // dave is a stranger to alice: his subscription waits for her to decide, and learns
    // nothing.
    let dave = presence_phone(&gateway, "dave", "", &[&contact]);
    logged(&dave, "SIP/2.0 202 Accepted", 1).await;
    logged(&dave, "Subscription-State: pending", 1).await;
    assert_eq!(dave.log.count("<basic>"), 0, "{}", dave.log.text());

    // carol lets alice see her (from a browser, then gone), then her phone publishes: alice,
    // back on a browser, sees what it publishes, whatever its registration says.
    let carol_uri = format!("carol@{DOMAIN}");
    let mut carol = local_client(&gateway, "carol").await;
    carol
        .expect_ack_amid_events(add(
            &carol_uri,
            "policy",
            json!({"id": "p", "uri": alice_uri, "action": "allow"}),
        ))
        .await;
    carol.close().await;
    let mut alice = local_client(&gateway, "alice").await;
    alice
        .expect_ack_amid_events(add(
            &alice_uri,
            "contact",
            json!({"id": "c", "uri": carol_uri, "name": "Carol"}),
        ))
        .await;
    assert_eq!(
        presence(&mut alice).await,
        (carol_uri.clone(), "offline".to_owned())
    );
    let carol_phone = presence_phone(&gateway, "carol", ";pubint=600", &[]);
    logged(&carol_phone, "SIP-ETag", 1).await;
    assert_eq!(
        presence(&mut alice).await,
        (carol_uri.clone(), "online".to_owned())
    );
    carol_phone.command("presence_offline", "");
    logged(&carol_phone, "SIP-ETag", 2).await;
    assert_eq!(
        presence(&mut alice).await,
        (carol_uri.clone(), "offline".to_owned())
    );
    carol_phone.command("presence_online", "");
    assert_eq!(
        presence(&mut alice).await,
        (carol_uri.clone(), "online".to_owned())
    );
    // bob hears alice again too.
    logged(&bob, "<basic>open</basic>", 2).await;
    alice.close().await;
}

#[tokio::test]
async fn a_browser_watches_its_contacts_through_their_sip_server() {
    let mut setup = Setup::new(|_| {}).await;
    setup.register_alice().await;
    let bob = Baresip::start_presence(
        &format!(
            "<sip:bob@127.0.0.1;transport=udp>;auth_pass=bobpw;regint=300;\
             outbound=\"sip:127.0.0.1:{port};transport=udp\"\n",
            port = setup.kamailio.port
        ),
        &[],
    );
    setup
        .kamailio
        .wait_bindings("bob", 1, Duration::from_secs(10));
    bob.command("presence_online", "");
    setup
        .client
        .expect_ack_amid_events(add(
            "alice@127.0.0.1",
            "contact",
            json!({"id": "b", "uri": "bob@127.0.0.1", "name": "Bob"}),
        ))
        .await;
    // The gateway subscribes through kamailio (answering its challenge with alice's
    // credentials); bob's NOTIFYs come back through it.
    assert_eq!(
        presence(&mut setup.client).await,
        ("bob@127.0.0.1".to_owned(), "online".to_owned())
    );
    bob.command("presence_offline", "");
    assert_eq!(
        presence(&mut setup.client).await,
        ("bob@127.0.0.1".to_owned(), "offline".to_owned())
    );
    bob.command("presence_online", "");
    assert_eq!(
        presence(&mut setup.client).await,
        ("bob@127.0.0.1".to_owned(), "online".to_owned())
    );
    // The browser goes: the gateway unsubscribes.
    let subscribes = bob.log.count("SUBSCRIBE sip:");
    setup.client.close().await;
    logged(&bob, "SUBSCRIBE sip:", subscribes + 1).await;
    logged(&bob, "Expires: 0", 1).await;
}
