-- Whether the values a server from before encryption at rest left in plaintext have been
-- sealed. Once they have, a start no longer reads every descriptor to look for them.
ALTER TABLE vault ADD COLUMN plaintext_sealed INTEGER NOT NULL DEFAULT 0;
