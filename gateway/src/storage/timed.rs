//! The store as the gateway uses it: every operation timed into the metrics
//! (`sylkrtc_store_seconds`), whatever the backend.

use std::sync::Arc;
use std::time::Instant;

use store::{
    Added, Entry, Message, PhoneBinding, PushToken, Put, Retention, Since, State, Store,
    StoreFuture,
};

use crate::metrics::Metrics;
use crate::metrics::store::StoreOp;

/// A store whose operations are timed.
#[derive(Debug)]
pub(super) struct Timed {
    pub(super) inner: Arc<dyn Store>,
    pub(super) metrics: Arc<Metrics>,
}

impl Timed {
    fn time<'a, T: Send + 'a>(
        &'a self,
        op: StoreOp,
        future: StoreFuture<'a, T>,
    ) -> StoreFuture<'a, T> {
        Box::pin(async move {
            let started = Instant::now();
            let result = future.await;
            self.metrics
                .store
                .observe(op, started.elapsed(), result.is_err());
            result
        })
    }
}

impl Store for Timed {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn add_message<'a>(&'a self, message: &'a Message) -> StoreFuture<'a, Added> {
        self.time(StoreOp::AddMessage, self.inner.add_message(message))
    }

    fn update_state<'a>(
        &'a self,
        account: &'a str,
        message_id: &'a str,
        state: State,
    ) -> StoreFuture<'a, bool> {
        self.time(
            StoreOp::UpdateState,
            self.inner.update_state(account, message_id, state),
        )
    }

    fn message<'a>(
        &'a self,
        account: &'a str,
        message_id: &'a str,
    ) -> StoreFuture<'a, Option<Message>> {
        self.time(
            StoreOp::ReadMessages,
            self.inner.message(account, message_id),
        )
    }

    fn messages<'a>(
        &'a self,
        account: &'a str,
        since: Since<'a>,
        limit: u32,
    ) -> StoreFuture<'a, Vec<Message>> {
        self.time(
            StoreOp::ReadMessages,
            self.inner.messages(account, since, limit),
        )
    }

    fn mark_read<'a>(
        &'a self,
        account: &'a str,
        contact: &'a str,
        journal: &'a Message,
    ) -> StoreFuture<'a, u64> {
        self.time(
            StoreOp::Conversation,
            self.inner.mark_read(account, contact, journal),
        )
    }

    fn remove_message<'a>(
        &'a self,
        account: &'a str,
        message_id: &'a str,
        journal: &'a Message,
    ) -> StoreFuture<'a, bool> {
        self.time(
            StoreOp::Conversation,
            self.inner.remove_message(account, message_id, journal),
        )
    }

    fn remove_conversation<'a>(
        &'a self,
        account: &'a str,
        contact: &'a str,
        journal: &'a Message,
    ) -> StoreFuture<'a, u64> {
        self.time(
            StoreOp::Conversation,
            self.inner.remove_conversation(account, contact, journal),
        )
    }

    fn addressbook<'a>(&'a self, account: &'a str) -> StoreFuture<'a, Vec<Entry>> {
        self.time(StoreOp::Addressbook, self.inner.addressbook(account))
    }

    fn put_entry<'a>(
        &'a self,
        account: &'a str,
        entry: &'a Entry,
        max: u32,
    ) -> StoreFuture<'a, Put> {
        self.time(
            StoreOp::Addressbook,
            self.inner.put_entry(account, entry, max),
        )
    }

    fn remove_entry<'a>(
        &'a self,
        account: &'a str,
        kind: &'a str,
        id: &'a str,
    ) -> StoreFuture<'a, bool> {
        self.time(
            StoreOp::Addressbook,
            self.inner.remove_entry(account, kind, id),
        )
    }

    fn public_key<'a>(&'a self, account: &'a str) -> StoreFuture<'a, Option<String>> {
        self.time(StoreOp::Keys, self.inner.public_key(account))
    }

    fn set_public_key<'a>(
        &'a self,
        account: &'a str,
        public_key: &'a str,
        at: i64,
    ) -> StoreFuture<'a, ()> {
        self.time(
            StoreOp::Keys,
            self.inner.set_public_key(account, public_key, at),
        )
    }

    fn set_push_token<'a>(
        &'a self,
        account: &'a str,
        token: &'a PushToken,
        at: i64,
    ) -> StoreFuture<'a, ()> {
        self.time(StoreOp::Keys, self.inner.set_push_token(account, token, at))
    }

    fn remove_push_token<'a>(
        &'a self,
        account: &'a str,
        device: &'a str,
        app: &'a str,
    ) -> StoreFuture<'a, bool> {
        self.time(
            StoreOp::Keys,
            self.inner.remove_push_token(account, device, app),
        )
    }

    fn push_tokens<'a>(&'a self, account: &'a str) -> StoreFuture<'a, Vec<PushToken>> {
        self.time(StoreOp::Keys, self.inner.push_tokens(account))
    }

    fn prune(&self, retention: Retention, now: i64) -> StoreFuture<'_, u64> {
        self.time(StoreOp::Prune, self.inner.prune(retention, now))
    }

    fn set_matrix_room<'a>(
        &'a self,
        room: &'a str,
        ghost: &'a str,
        at: i64,
    ) -> StoreFuture<'a, ()> {
        self.time(StoreOp::Matrix, self.inner.set_matrix_room(room, ghost, at))
    }

    fn remove_matrix_room<'a>(&'a self, room: &'a str) -> StoreFuture<'a, bool> {
        self.time(StoreOp::Matrix, self.inner.remove_matrix_room(room))
    }

    fn matrix_rooms(&self) -> StoreFuture<'_, Vec<(String, String)>> {
        self.time(StoreOp::Matrix, self.inner.matrix_rooms())
    }

    fn put_phones<'a>(&'a self, bindings: &'a [PhoneBinding]) -> StoreFuture<'a, ()> {
        self.time(StoreOp::Phones, self.inner.put_phones(bindings))
    }

    fn remove_phone<'a>(
        &'a self,
        user: &'a str,
        contact: &'a str,
        instance: &'a str,
    ) -> StoreFuture<'a, bool> {
        self.time(
            StoreOp::Phones,
            self.inner.remove_phone(user, contact, instance),
        )
    }

    fn phones<'a>(&'a self, user: &'a str, now: i64) -> StoreFuture<'a, Vec<PhoneBinding>> {
        self.time(StoreOp::Phones, self.inner.phones(user, now))
    }

    fn instance_phones<'a>(
        &'a self,
        instance: &'a str,
        now: i64,
        limit: u32,
    ) -> StoreFuture<'a, Vec<PhoneBinding>> {
        self.time(
            StoreOp::Phones,
            self.inner.instance_phones(instance, now, limit),
        )
    }

    fn remove_expired_phones(&self, now: i64) -> StoreFuture<'_, u64> {
        self.time(StoreOp::Phones, self.inner.remove_expired_phones(now))
    }
}
