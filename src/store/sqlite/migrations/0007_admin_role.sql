-- The admin role is a property of the user, granted by `facelock users add --admin`, by
-- `facelock users role`, or by an admin over HTTP; every server reads it from here.
ALTER TABLE users ADD COLUMN is_admin INTEGER NOT NULL DEFAULT 0;
