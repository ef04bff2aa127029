-- The Matrix rooms the bridge's ghost users are in (one ghost per room): a restarted gateway
-- still knows whom a call in one of them is for.
CREATE TABLE matrix_rooms (
    room TEXT PRIMARY KEY,
    ghost TEXT NOT NULL,
    at BIGINT NOT NULL
);
