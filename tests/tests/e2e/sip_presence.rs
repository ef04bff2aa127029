//! Presence over SIP (RFC 3856): phones of the local domain SUBSCRIBE to its users and hear
//! NOTIFYs as they come and go, and PUBLISH their own state, which browsers of the domain see;
//! a browser whose account is registered through another domain's server watches its contacts
//! there, the gateway SUBSCRIBing on its behalf, through the account's presence list (RFC
//! 4662) where its server keeps one. baresip (with its `presence` module) is the phone on both
//! sides; kamailio, with its presence and rls modules, is the other domain's presence and
//! resource list server.

use std::time::Duration;

use gateway::ListAddress;
use gateway_tests::baresip::Baresip;
use gateway_tests::peers::{Kamailio, KamailioOptions, data_dir, free_port, require};
use gateway_tests::{Client, Gateway};
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

/// Waits until the phone's latest PUBLISH says `basic` and its server has taken it (an
/// answer with a `SIP-ETag` came after it). A count of answers is not enough: the phone may
/// publish its initial state before a command changes it, and the watcher would then race the
/// second PUBLISH. Only for phones that watch nobody (a NOTIFY's body would count too).
async fn published(phone: &Baresip, basic: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let log = phone.log.text();
        if let Some(at) = log.rfind("<basic>") {
            let latest = &log[at..];
            if latest.starts_with(&format!("<basic>{basic}</basic>")) && latest.contains("SIP-ETag")
            {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no PUBLISH of {basic:?} taken by the server:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next presence event of `client`, failing with `phone`'s log (what it published and
/// was answered) when none comes (just before the client's own wait for a frame would fail
/// without it).
async fn presence_or_log(client: &mut Client, phone: &Baresip) -> (String, String) {
    let wait = gateway_tests::PATIENCE - Duration::from_millis(100);
    match tokio::time::timeout(wait, presence(client)).await {
        Ok(event) => event,
        Err(_) => panic!("no presence event; the phone's log:\n{}", phone.log.text()),
    }
}

/// carol lets alice see her (from a browser, then gone); alice, on a browser, adds her as a
/// contact and sees her offline. alice's client.
async fn alice_watches_carol(gateway: &Gateway) -> Client {
    let alice_uri = format!("alice@{DOMAIN}");
    let carol_uri = format!("carol@{DOMAIN}");
    let mut carol = local_client(gateway, "carol").await;
    carol
        .expect_ack_amid_events(add(
            &carol_uri,
            "policy",
            json!({"id": "p", "uri": alice_uri, "action": "allow"}),
        ))
        .await;
    carol.close().await;
    let mut alice = local_client(gateway, "alice").await;
    alice
        .expect_ack_amid_events(add(
            &alice_uri,
            "contact",
            json!({"id": "c", "uri": carol_uri, "name": "Carol"}),
        ))
        .await;
    assert_eq!(
        presence(&mut alice).await,
        (carol_uri, "offline".to_owned())
    );
    alice
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
    let mut alice = alice_watches_carol(&gateway).await;
    let carol_phone = presence_phone(&gateway, "carol", ";pubint=600", &[]);
    published(&carol_phone, "open").await;
    assert_eq!(
        presence_or_log(&mut alice, &carol_phone).await,
        (carol_uri.clone(), "online".to_owned())
    );
    carol_phone.command("presence_offline", "");
    published(&carol_phone, "closed").await;
    assert_eq!(
        presence_or_log(&mut alice, &carol_phone).await,
        (carol_uri.clone(), "offline".to_owned())
    );
    carol_phone.command("presence_online", "");
    assert_eq!(
        presence_or_log(&mut alice, &carol_phone).await,
        (carol_uri.clone(), "online".to_owned())
    );
    // bob hears alice again too.
    logged(&bob, "<basic>open</basic>", 2).await;
    alice.close().await;
}

/// A phone whose first two PUBLISHes raced (two publications of its one tuple, as baresip's
/// under load) and that then publishes closed through the entity tag it kept: the state it
/// published last stands, and its watcher sees it go offline. sipp plays the phone.
#[tokio::test]
async fn a_tuples_latest_publication_stands() {
    let gateway = Gateway::start(shipped()).await;
    let carol_uri = format!("carol@{DOMAIN}");
    let mut alice = alice_watches_carol(&gateway).await;
    let carol_is = |state: &str| (carol_uri.clone(), state.to_owned());
    let sipp = tokio::process::Command::new(require("sipp", "sip-tester"))
        .arg(gateway.sip.0.to_string())
        .arg("-sf")
        .arg(data_dir().join("sipp/uac_publish_twice.xml"))
        .args(["-s", "carol", "-key", "domain", DOMAIN])
        .args(["-au", "carol", "-ap", "whatever", "-i", "127.0.0.1"])
        .args(["-p", &free_port().to_string(), "-m", "1", "-nostdin"])
        .args(["-timeout", "20", "-timeout_error"])
        .output();
    // The events wait on alice's connection while the phone publishes.
    let output = sipp.await.expect("run sipp");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let online = presence(&mut alice).await;
    let offline = presence(&mut alice).await;
    assert_eq!(online, carol_is("online"));
    assert_eq!(offline, carol_is("offline"));
    alice.close().await;
}

#[tokio::test]
async fn a_browser_watches_its_contacts_through_their_sip_server() {
    let mut setup = Setup::new(|_| {}).await;
    setup.register_alice().await;
    let bob = bob_phone(&setup.kamailio, "").await;
    add_contacts(&mut setup.client, "alice@127.0.0.1", &["bob@127.0.0.1"]).await;
    // The gateway subscribes through kamailio (answering its challenge with alice's
    // credentials); bob's NOTIFYs come back through it.
    follows_bob(&mut setup.client, &bob, "bob@127.0.0.1").await;
    // The browser goes: the gateway unsubscribes.
    let subscribes = bob.log.count("SUBSCRIBE sip:");
    setup.client.close().await;
    logged(&bob, "SUBSCRIBE sip:", subscribes + 1).await;
    logged(&bob, "Expires: 0", 1).await;
}

/// bob's phone (baresip with its presence module, these account parameters) at kamailio, and
/// online. A phone that publishes (`pubint`) is not registered: baresip publishes when it
/// starts and again when its registration succeeds, and when the second PUBLISH goes before
/// the first is answered the two make two publications, the first of its initial state
/// (`unknown`), which the presence server goes on composing with what the phone publishes
/// later. Unregistered, it publishes once, and the command that puts it online changes that
/// publication. A phone that does not publish is registered (kamailio hands it SUBSCRIBEs).
async fn bob_phone(kamailio: &Kamailio, extra: &str) -> Baresip {
    let publishes = extra.contains("pubint=");
    let regint = if publishes { 0 } else { 300 };
    let bob = Baresip::start_presence(
        &format!(
            "<sip:bob@127.0.0.1;transport=udp>;auth_pass=bobpw;regint={regint};{extra}\
             outbound=\"sip:127.0.0.1:{port};transport=udp\"\n",
            port = kamailio.port
        ),
        &[],
    );
    if publishes {
        published(&bob, "unknown").await;
    } else {
        kamailio.wait_bindings("bob", 1, Duration::from_secs(10));
    }
    bob.command("presence_online", "");
    bob
}

/// A gateway whose accounts of 127.0.0.1 have their presence list at
/// `{user}-buddies@127.0.0.1` on kamailio, the presence and list server; bob's phone
/// publishes his state there; alice, whose list names `listed` (none: she has no list), is
/// registered through kamailio.
async fn listed_setup(listed: &[&str]) -> (Setup, Baresip) {
    let options = KamailioOptions {
        presence: true,
        ..KamailioOptions::default()
    };
    let mut setup = Setup::with_registrar(options, |config| {
        let address = ListAddress::try_from("{user}-buddies@127.0.0.1".to_owned()).unwrap();
        config
            .accounts
            .presence_lists
            .insert("127.0.0.1".into(), address);
    })
    .await;
    let bob = bob_phone(&setup.kamailio, "pubint=600;").await;
    published(&bob, "open").await;
    if !listed.is_empty() {
        setup
            .kamailio
            .add_presence_list("alice", "alice-buddies", listed);
    }
    setup.register_alice().await;
    (setup, bob)
}

/// Waits for `contact`'s next presence state, skipping other contacts'.
async fn state_of(client: &mut Client, contact: &str) -> String {
    loop {
        let (whose, state) = presence(client).await;
        if whose == contact {
            return state;
        }
    }
}

/// Waits for `contact`'s first known state (the list's first NOTIFY may come before its
/// server heard from the contact's).
async fn known_state_of(client: &mut Client, contact: &str) -> String {
    loop {
        let state = state_of(client, contact).await;
        if state != "unknown" {
            return state;
        }
    }
}

/// kamailio's log lines of the gateway's SUBSCRIBEs to `target` (not its list server's
/// back-end subscriptions).
fn subscribes_to((kamailio, gateway): (&Kamailio, &Gateway), target: &str) -> Vec<String> {
    let needle = format!("-> sip:{target} from 127.0.0.1:{} ", gateway.sip.0.port());
    kamailio
        .log
        .text()
        .lines()
        .filter(|line| line.contains(&needle))
        .map(str::to_owned)
        .collect()
}

/// Waits until kamailio logged a SUBSCRIBE of the gateway to `target` whose line contains
/// `needle`.
async fn subscribed((kamailio, gateway): (&Kamailio, &Gateway), target: &str, needle: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !subscribes_to((kamailio, gateway), target)
        .iter()
        .any(|line| line.contains(needle))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no SUBSCRIBE to {target} with {needle:?}:\n{}",
            kamailio.log.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Adds `contacts` to `account`'s address book.
async fn add_contacts(client: &mut Client, account: &str, contacts: &[&str]) {
    for (id, uri) in contacts.iter().enumerate() {
        client
            .expect_ack_amid_events(add(
                account,
                "contact",
                json!({"id": id.to_string(), "uri": uri, "name": uri}),
            ))
            .await;
    }
}

/// alice's browser sees bob (as `bob_uri`) online, then offline and online again as his
/// phone says.
async fn follows_bob(client: &mut Client, bob: &Baresip, bob_uri: &str) {
    assert_eq!(known_state_of(client, bob_uri).await, "online");
    bob.command("presence_offline", "");
    assert_eq!(state_of(client, bob_uri).await, "offline");
    bob.command("presence_online", "");
    assert_eq!(state_of(client, bob_uri).await, "online");
}

#[tokio::test]
async fn a_browser_watches_through_its_presence_list_where_its_server_keeps_one() {
    let (mut setup, bob) = listed_setup(&["sip:bob@127.0.0.1"]).await;
    add_contacts(
        &mut setup.client,
        "alice@127.0.0.1",
        &["bob@127.0.0.1", "carol@127.0.0.1"],
    )
    .await;
    // bob is on alice's list: his state comes in the list's NOTIFYs, as he publishes it.
    follows_bob(&mut setup.client, &bob, "bob@127.0.0.1").await;
    // One subscription to the list; carol, not on it, is watched on her own; bob never is.
    let parts = (&setup.kamailio, &setup.gateway);
    subscribed(parts, "alice-buddies@127.0.0.1", "expires 600").await;
    subscribed(parts, "carol@127.0.0.1", "expires 600").await;
    let to_bob = subscribes_to(parts, "bob@127.0.0.1");
    assert!(to_bob.is_empty(), "bob was watched alone: {to_bob:?}");
    // The browser goes: the list is unsubscribed (in its dialog, to the list server's Contact).
    let list_server = format!("rls@127.0.0.1:{}", setup.kamailio.port);
    setup.client.close().await;
    subscribed((&setup.kamailio, &setup.gateway), &list_server, "expires 0").await;
}

#[tokio::test]
async fn without_a_list_there_the_contacts_are_watched_one_by_one() {
    let (mut setup, bob) = listed_setup(&[]).await;
    // alice has no list: the server takes the address for a presentity, whose NOTIFY is no
    // list's; the gateway ends that subscription and watches bob himself.
    add_contacts(&mut setup.client, "alice@127.0.0.1", &["bob@127.0.0.1"]).await;
    follows_bob(&mut setup.client, &bob, "bob@127.0.0.1").await;
    let parts = (&setup.kamailio, &setup.gateway);
    // The list's subscription was ended in its dialog (to the presence server's Contact).
    let presence_server = format!("presence@127.0.0.1:{}", setup.kamailio.port);
    subscribed(parts, &presence_server, "expires 0").await;
    subscribed(parts, "bob@127.0.0.1", "expires 600").await;
}

#[tokio::test]
async fn a_local_user_watches_contacts_of_other_domains_at_their_servers() {
    let options = KamailioOptions {
        presence: true,
        ..KamailioOptions::default()
    };
    let kamailio = Kamailio::start(options);
    let gateway = Gateway::start(crate::local::closed(&["alice"])).await;
    let bob = bob_phone(&kamailio, "pubint=600;").await;
    published(&bob, "open").await;
    let alice_uri = format!("alice@{DOMAIN}");
    let mut alice = crate::local::closed_client(&gateway, "alice").await;
    crate::conversations::register(&mut alice, &alice_uri).await;
    // bob is of another domain (kamailio, at its port): the gateway SUBSCRIBEs there from
    // alice's address, and his server's NOTIFYs say what his phone publishes.
    let bob_uri = format!("bob@127.0.0.1:{}", kamailio.port);
    add_contacts(&mut alice, &alice_uri, &[&bob_uri]).await;
    follows_bob(&mut alice, &bob, &bob_uri).await;
    let from_alice = format!(
        "SUBSCRIBE sip:{alice_uri} -> sip:{bob_uri} from 127.0.0.1:{} ",
        gateway.sip.0.port()
    );
    assert!(
        kamailio.log.count(&from_alice) >= 1,
        "{}",
        kamailio.log.text()
    );
    // alice goes: the gateway unsubscribes.
    alice.close().await;
    subscribed(
        (&kamailio, &gateway),
        &format!("presence@127.0.0.1:{}", kamailio.port),
        "expires 0",
    )
    .await;
}

#[tokio::test]
async fn an_open_domain_does_not_watch_other_domains() {
    // Open registration (the shipped configuration): anybody may be alice here, so the
    // gateway must not SUBSCRIBE elsewhere in her name.
    let gateway = Gateway::start(shipped()).await;
    let elsewhere = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let bob_uri = format!("bob@{}", elsewhere.local_addr().unwrap());
    let alice_uri = format!("alice@{DOMAIN}");
    let mut alice = local_client(&gateway, "alice").await;
    add_contacts(&mut alice, &alice_uri, &[&bob_uri]).await;
    let mut buffer = [0u8; 2048];
    let heard =
        tokio::time::timeout(Duration::from_secs(5), elsewhere.recv_from(&mut buffer)).await;
    assert!(
        heard.is_err(),
        "the open domain sent {:?}",
        heard.map(|received| String::from_utf8_lossy(&buffer[..received.unwrap().0]).into_owned())
    );
    alice.close().await;
}
