-- The local domain's phone registrations, shared by the gateways that serve the domain: one row
-- per (user, Contact), naming the gateway that took the registration (which holds its flow and
-- pings it). A gateway restarted with the same id takes its rows back; any gateway rings the
-- UDP ones directly, so a phone stays reachable while the gateway it registered with is away.
CREATE TABLE phone_bindings (
    username TEXT NOT NULL,
    contact TEXT NOT NULL,
    instance TEXT NOT NULL,
    transport TEXT NOT NULL,
    target TEXT NOT NULL,
    expires BIGINT NOT NULL,
    outbound BIGINT NOT NULL,
    PRIMARY KEY (username, contact)
);
CREATE INDEX phone_bindings_instance ON phone_bindings (instance);
CREATE INDEX phone_bindings_expires ON phone_bindings (expires);
