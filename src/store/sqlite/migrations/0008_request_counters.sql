-- Requests per client address and minute, for a limit counted in the store (as PostgreSQL
-- does for several servers); `window_start` is unix milliseconds.
CREATE TABLE request_counters (
    key           TEXT    NOT NULL,
    window_start  INTEGER NOT NULL,
    count         INTEGER NOT NULL,
    PRIMARY KEY (key, window_start)
);
