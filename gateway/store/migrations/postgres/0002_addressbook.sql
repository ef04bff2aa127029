-- Each account's address book: its contacts, groups and policies (kind), each an item of the
-- protocol's JSON kept as the client gave it, one row per (account, kind, id). seq keeps the
-- order they were added.
CREATE TABLE addressbook (
    seq BIGSERIAL PRIMARY KEY,
    account TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    item TEXT NOT NULL,
    UNIQUE (account, kind, id)
);
