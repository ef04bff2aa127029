-- Messages of every account, one row per (account, message id): the unique key makes every
-- write idempotent (UDP retransmissions, forked delivery and client resends repeat messages).
-- seq orders them as they were stored, which is what a sync "since this message" follows.
CREATE TABLE messages (
    seq BIGSERIAL PRIMARY KEY,
    account TEXT NOT NULL,
    message_id TEXT NOT NULL,
    contact TEXT NOT NULL,
    direction TEXT NOT NULL,
    content_type TEXT NOT NULL,
    content TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    at BIGINT NOT NULL,
    state TEXT NOT NULL,
    state_rank BIGINT NOT NULL,
    disposition TEXT NOT NULL,
    UNIQUE (account, message_id)
);
CREATE INDEX messages_conversation ON messages (account, contact, seq);
CREATE INDEX messages_at ON messages (at);

-- The PGP public key each account published (text/pgp-public-key messages).
CREATE TABLE public_keys (
    account TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    at BIGINT NOT NULL
);
