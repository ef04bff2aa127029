-- The push tokens of each account's devices (account-devicetoken), one row per (account,
-- device, app): what the gateway sends a push service when a call or message comes for an
-- account of the local domain with no live connection.
CREATE TABLE push_tokens (
    account TEXT NOT NULL,
    device TEXT NOT NULL,
    app TEXT NOT NULL,
    platform TEXT NOT NULL,
    token TEXT NOT NULL,
    silent BIGINT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (account, device, app)
);
