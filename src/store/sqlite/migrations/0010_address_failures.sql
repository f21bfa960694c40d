-- Failed 1:N logins per client address and the wait they earned, for servers that share the
-- store (on one machine every server could keep its own; the table is there on both stores).
CREATE TABLE address_failures (
    address          TEXT    PRIMARY KEY,
    failures         INTEGER NOT NULL,
    last_failure_at  INTEGER NOT NULL,
    wait_until       INTEGER NOT NULL
);
