//! The message store on PostgreSQL (the server started by the harness): the same checks as
//! SQLite passes in the store's own tests, a schema migrated once by gateways that open it
//! together, and a server that goes away failing the store's operations with a clear error.

use gateway_tests::postgres::Postgres;
use store::{Backend, Error, Options, SqlStore, Store};

#[tokio::test]
async fn postgres_passes_the_checks_every_backend_must() {
    let url = Postgres::shared().database();
    let store = SqlStore::open(&Options::new(Backend::Postgres(url)))
        .await
        .expect("the store opens");
    assert_eq!(store.backend(), "postgres");
    store::testing::conformance(&store, "").await;
    store.close().await;
}

/// Several gateways starting at once on one database: one migrates, none fails, and the
/// schema is there once.
#[tokio::test]
async fn gateways_that_open_one_database_together_migrate_it_once() {
    let postgres = Postgres::shared();
    let url = postgres.database();
    let name = url.rsplit('/').next().expect("a database name").to_owned();
    let opens = (0..4).map(|_| {
        let options = Options::new(Backend::Postgres(url.clone()));
        tokio::spawn(async move { SqlStore::open(&options).await })
    });
    for open in opens.collect::<Vec<_>>() {
        open.await.expect("the task").expect("the store opens");
    }
    assert_eq!(
        postgres
            .psql(&name, "SELECT version FROM schema_version ORDER BY version")
            .trim(),
        "1\n2\n3\n4\n5"
    );
}

/// A database that disappears under an open store: each operation fails with an error that
/// says so, and the store works again once it is back.
#[tokio::test]
async fn a_database_that_goes_away_fails_operations_clearly() {
    let postgres = Postgres::shared();
    let url = postgres.database();
    let name = url.rsplit('/').next().expect("a database name").to_owned();
    let mut options = Options::new(Backend::Postgres(url));
    options.acquire_timeout = std::time::Duration::from_secs(2);
    let store = SqlStore::open(&options).await.expect("the store opens");
    let message = store::testing::message("alice@example.com", "m1", "bob@example.com", 1);
    store.add_message(&message).await.expect("stored");
    // Every connection to it is ended and new ones are refused.
    postgres.cut_off(&name);
    let failed = store
        .add_message(&store::testing::message(
            "alice@example.com",
            "m2",
            "bob@example.com",
            2,
        ))
        .await
        .expect_err("no database");
    assert!(
        matches!(failed, Error::Unavailable(_) | Error::Refused(_)),
        "{failed}"
    );
    assert!(failed.to_string().contains("message store"), "{failed}");
    postgres.psql(
        "postgres",
        &format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true"),
    );
    let mut again = None;
    for _ in 0..20 {
        match store.message("alice@example.com", "m1").await {
            Ok(found) => {
                again = found;
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    assert_eq!(again, Some(message));
    store.close().await;
}

/// The public key stored for an account, as `lookup-public-key` gives it.
async fn lookup(client: &mut gateway_tests::Client, uri: &str) -> Option<String> {
    client
        .expect_ack(serde_json::json!({"sylkrtc": "lookup-public-key", "uri": uri}))
        .await;
    match client.recv().await {
        protocol::ServerMessage::Event(protocol::Event::PublicKey {
            uri: got,
            public_key,
        }) => {
            assert_eq!(got, uri.trim_start_matches("sip:"));
            public_key
        }
        other => panic!("expected lookup-public-key-event, got {other:?}"),
    }
}

/// Puts a key in the store at `options` before the gateway opens it.
async fn stored_key(options: &Options, account: &str, key: &str) {
    let store = SqlStore::open(options).await.expect("the store opens");
    store.set_public_key(account, key, 1).await.expect("stored");
    store.close().await;
}

/// `lookup-public-key` answers from the store, on SQLite (the default, a file in the data
/// directory) and on PostgreSQL: the key stored for the account (whatever the case of its
/// domain), or null.
#[tokio::test]
async fn public_keys_are_looked_up_in_the_store_on_both_backends() {
    let data = gateway_tests::TempDir::new();
    let sqlite = gateway::StorageConfig {
        data_dir: data.path().join("store"),
        ..Default::default()
    };
    let postgres = gateway::StorageConfig {
        postgres_url: Postgres::shared().database(),
        ..Default::default()
    };
    for storage in [sqlite, postgres] {
        stored_key(
            &Options::new(match storage.postgres_url.as_str() {
                "" => Backend::Sqlite(storage.data_dir.join("gateway.sqlite")),
                url => Backend::Postgres(url.to_owned()),
            }),
            "bob@example.com",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\nbob\n-----END PGP PUBLIC KEY BLOCK-----",
        )
        .await;
        let gateway = gateway_tests::Gateway::start(gateway::Config {
            storage,
            ..Default::default()
        })
        .await;
        let mut client = gateway.client().await;
        let key = lookup(&mut client, "sip:bob@Example.COM").await;
        assert!(key.is_some_and(|key| key.contains("\nbob\n")));
        assert_eq!(lookup(&mut client, "carol@example.com").await, None);
    }
}

/// A PostgreSQL server that cannot be reached when the gateway starts: the gateway starts, the
/// requests that need the store get an error that says so, everything else works, and once
/// the server is there the store is used.
#[tokio::test]
async fn a_store_that_cannot_be_reached_fails_its_requests_alone() {
    let postgres = Postgres::shared();
    let url = postgres.database();
    let name = url.rsplit('/').next().expect("a database name").to_owned();
    postgres.psql(
        "postgres",
        &format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"),
    );
    let gateway = gateway_tests::Gateway::start(gateway::Config {
        storage: gateway::StorageConfig {
            postgres_url: url,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let mut client = gateway.client().await;
    let error = client
        .expect_error(serde_json::json!({"sylkrtc": "lookup-public-key", "uri": "bob@example.com"}))
        .await;
    assert!(
        error.starts_with("the message store is unavailable"),
        "{error}"
    );
    // The connection and its other requests are not disturbed.
    client
        .expect_ack(serde_json::json!({"sylkrtc": "ping"}))
        .await;
    client
        .expect_ack(
            serde_json::json!({"sylkrtc": "account-add", "account": "alice@example.com",
            "password": "884edfee38ed471b8a15006700139485"}),
        )
        .await;
    // The server comes back: the gateway reaches it on its own.
    postgres.psql(
        "postgres",
        &format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        match client
            .request(serde_json::json!({"sylkrtc": "lookup-public-key", "uri": "bob@example.com"}))
            .await
        {
            protocol::ServerMessage::Ack { .. } => break,
            other => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the store was not reached again: {other:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
    assert!(matches!(
        client.recv().await,
        protocol::ServerMessage::Event(protocol::Event::PublicKey {
            public_key: None,
            ..
        })
    ));
}
