//! account-add and account-remove, on one connection and across several.

use std::time::Duration;

use gateway::Config;
use gateway_tests::Gateway;
use protocol::Version;
use serde_json::{Value, json};

const HA1: &str = "884edfee38ed471b8a15006700139485";

fn add(account: &str) -> Value {
    json!({"sylkrtc": "account-add", "account": account, "password": HA1,
        "display_name": "Alice", "user_agent": "e2e", "incoming_header_prefixes": ["X-"]})
}

fn remove(account: &str) -> Value {
    json!({"sylkrtc": "account-remove", "account": account})
}

#[tokio::test]
async fn accounts_are_added_removed_and_not_duplicated() {
    let gateway = Gateway::start_default().await;
    for version in Version::PREFERENCE {
        let mut client = gateway.client_version(version).await;
        client.expect_ack(add("alice@example.com")).await;
        assert_eq!(
            client.expect_error(add("sip:alice@example.com")).await,
            "Account alice@example.com already added"
        );
        client.expect_ack(add("bob@example.com")).await;
        client
            .expect_ack(json!({"sylkrtc": "account-add", "account": "carol@example.com", "password": "plain",
                "ha1": false}))
            .await;
        client.expect_ack(remove("alice@example.com")).await;
        assert_eq!(
            client.expect_error(remove("alice@example.com")).await,
            "Unknown account specified: alice@example.com"
        );
        client.expect_ack(add("alice@example.com")).await;
        client.close().await;
    }
}

#[tokio::test]
async fn account_fields_are_validated() {
    let gateway = Gateway::start_default().await;
    for version in Version::PREFERENCE {
        let mut client = gateway.client_version(version).await;
        let error = client
            .expect_error(json!({"sylkrtc": "account-add", "account": "alice@example.com", "password": "plain",
                "ha1": true}))
            .await;
        assert_eq!(
            error,
            "invalid field `password`: `ha1: true` needs the HA1 as 32 hex digits"
        );
        let error = client
            .expect_error(json!({"sylkrtc": "account-add", "account": "alice", "password": HA1}))
            .await;
        assert_eq!(
            error,
            "invalid field `account`: expected a SIP address of the form user@domain: \"alice\""
        );
        let error = client
            .expect_error(json!({"sylkrtc": "account-add", "account": "alice@example.com"}))
            .await;
        assert_eq!(error, "missing field `password`");
        let error = client
            .expect_error(
                json!({"sylkrtc": "account-add", "account": "alice@example.com", "password": HA1,
                "incoming_header_prefixes": "X-"}),
            )
            .await;
        assert_eq!(
            error,
            "invalid field `incoming_header_prefixes`: expected an array"
        );
    }
}

#[tokio::test]
async fn domains_outside_sip_domains_are_refused() {
    let mut config = Config::default();
    config.accounts.sip_domains = vec!["example.com".to_owned(), "127.0.0.1".to_owned()];
    let gateway = Gateway::start(config).await;
    for version in Version::PREFERENCE {
        let mut client = gateway.client_version(version).await;
        client.expect_ack(add("alice@Example.com")).await;
        client.expect_ack(add("alice@127.0.0.1")).await;
        assert_eq!(
            client.expect_error(add("alice@example.org")).await,
            "SIP domain not allowed: example.org"
        );
    }
    assert_eq!(
        gateway
            .metric("sylkrtc_errors_total{kind=\"refused\"}")
            .await,
        2.0
    );
}

#[tokio::test]
async fn the_same_account_on_several_connections_and_release_on_close() {
    let gateway = Gateway::start_default().await;
    let mut first = gateway.client().await;
    let mut second = gateway.client_version(Version::V1).await;
    first.expect_ack(add("alice@example.com")).await;
    second.expect_ack(add("alice@example.com")).await;
    second.expect_ack(add("bob@example.com")).await;
    assert_eq!(gateway.metric("sylkrtc_accounts").await, 3.0);
    assert_eq!(gateway.metric("sylkrtc_connections").await, 2.0);

    // Closing a connection releases everything it owned, and nothing of the other.
    second.close().await;
    wait_for(&gateway, "sylkrtc_accounts", 1.0).await;
    first.expect_ack(remove("alice@example.com")).await;
    assert_eq!(gateway.metric("sylkrtc_accounts").await, 0.0);

    // A connection that just drops (no close handshake) is released too.
    first.expect_ack(add("alice@example.com")).await;
    drop(first);
    wait_for(&gateway, "sylkrtc_accounts", 0.0).await;
    wait_for(&gateway, "sylkrtc_connections", 0.0).await;
}

/// Polls a metric until it has `value` (connection teardown runs on the gateway's own task).
async fn wait_for(gateway: &Gateway, series: &str, value: f64) {
    for _ in 0..100 {
        if gateway.metric(series).await == value {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{series} never reached {value}: {}",
        gateway.metric(series).await
    );
}
