//! Messages and contacts in the web phone, in real browsers (chromium, headless): a user of the
//! local domain sends to another, who sees it at once (the sender sees it delivered and read);
//! the history comes back after a reload and on a second tab of the sender, and what that tab
//! sends shows on the first. Contacts added on the page are kept by the gateway, and show
//! whether they are online.

use gateway_tests::chromium::Chromium;
use gateway_tests::{Gateway, TempDir};
use serde_json::json;

use crate::local::shipped;
use crate::web_phone::{browser, screenshots, sign_in};

/// A page signed in as `user@local.test` (open registration), registered.
async fn signed_in(dir: &TempDir, gateway: &Gateway, user: &str) -> Chromium {
    let mut page = browser(dir);
    sign_in(&mut page, gateway, &format!("{user}@local.test"), "any").await;
    page.wait_text("#registration-state", "^registered$").await;
    page
}

async fn send(page: &mut Chromium, to: &str, text: &str) {
    page.command(json!({"do": "fill", "selector": "#message-to", "value": to}))
        .await;
    page.command(json!({"do": "fill", "selector": "#message-text", "value": text}))
        .await;
    page.command(json!({"do": "click", "selector": "#send-message"}))
        .await;
}

#[tokio::test]
async fn the_page_sends_and_receives_messages_and_keeps_their_history() {
    let (alice_dir, bob_dir, tab_dir) = (TempDir::new(), TempDir::new(), TempDir::new());
    let gateway = Gateway::start(shipped()).await;
    let mut alice = signed_in(&alice_dir, &gateway, "alice").await;
    let mut bob = signed_in(&bob_dir, &gateway, "bob").await;

    send(&mut alice, "bob", "hello bob").await;
    bob.wait_text("#messages li.incoming .text", "^hello bob$")
        .await;
    bob.wait_text("#messages li.incoming .who", "alice@local.test")
        .await;
    // bob's page showed it: alice sees it read.
    alice
        .wait_text("#messages li.outgoing .state", "^displayed$")
        .await;
    alice.screenshot(&screenshots().join("messages.png")).await;

    // bob away: alice's message is kept (accepted). After a reload bob's history comes from
    // the gateway, and what he had not read is read now.
    bob.command(json!({"do": "click", "selector": "#sign-out"}))
        .await;
    send(&mut alice, "bob", "while you were away").await;
    alice
        .wait_text("#messages li.outgoing:last-child .state", "^accepted$")
        .await;
    sign_in(&mut bob, &gateway, "bob@local.test", "any").await;
    bob.wait_text("#messages li.incoming .text", "^hello bob$")
        .await;
    bob.wait_text(
        "#messages li.incoming:last-child .text",
        "^while you were away$",
    )
    .await;
    alice
        .wait_text("#messages li.outgoing:last-child .state", "^displayed$")
        .await;

    // A second tab of alice: the same conversation, with its read mark; what it sends shows
    // on the first tab too.
    let mut tab = signed_in(&tab_dir, &gateway, "alice").await;
    tab.wait_text("#messages li.outgoing .text", "^hello bob$")
        .await;
    tab.wait_text("#messages li.outgoing .state", "^displayed$")
        .await;
    send(&mut tab, "bob@local.test", "from my other tab").await;
    alice
        .wait_text(
            "#messages li.outgoing:last-child .text",
            "^from my other tab$",
        )
        .await;
    bob.wait_text(
        "#messages li.incoming:last-child .text",
        "^from my other tab$",
    )
    .await;
    tab.wait_text("#messages li.outgoing:last-child .state", "^displayed$")
        .await;
    for page in [alice, bob, tab] {
        page.close().await;
    }
}

async fn add_contact(page: &mut Chromium, uri: &str, name: &str) {
    page.command(json!({"do": "fill", "selector": "#contact-uri", "value": uri}))
        .await;
    page.command(json!({"do": "fill", "selector": "#contact-name", "value": name}))
        .await;
    page.command(json!({"do": "click", "selector": "#add-contact-button"}))
        .await;
}

#[tokio::test]
async fn contacts_show_who_is_online() {
    let (alice_dir, bob_dir) = (TempDir::new(), TempDir::new());
    let gateway = Gateway::start(shipped()).await;
    let mut bob = signed_in(&bob_dir, &gateway, "bob").await;
    add_contact(&mut bob, "alice", "Alice").await;
    bob.wait_text("#contacts li .name", "^Alice <alice@local.test>$")
        .await;
    let mut alice = signed_in(&alice_dir, &gateway, "alice").await;
    add_contact(&mut alice, "bob@local.test", "Bob").await;
    alice
        .wait_text(
            "#contacts li[data-uri='bob@local.test'] .presence",
            "^online$",
        )
        .await;
    alice.screenshot(&screenshots().join("contacts.png")).await;
    bob.command(json!({"do": "click", "selector": "#sign-out"}))
        .await;
    alice
        .wait_text(
            "#contacts li[data-uri='bob@local.test'] .presence",
            "^offline$",
        )
        .await;
    // The address book is the gateway's: after a reload it is still there.
    sign_in(&mut alice, &gateway, "alice@local.test", "any").await;
    alice
        .wait_text("#contacts li .name", "^Bob <bob@local.test>$")
        .await;
    for page in [alice, bob] {
        page.close().await;
    }
}
