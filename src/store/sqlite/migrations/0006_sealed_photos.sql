-- Encryption at rest: the data key, sealed under the master key (which is never stored here).
CREATE TABLE vault (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    data_key  BLOB    NOT NULL
);

-- Reference photos live with their face, sealed and without metadata, so a registration or a
-- deletion commits or fails as one, and every server on the store sees the same photos.
CREATE TABLE reference_photos (
    face_id  TEXT PRIMARY KEY REFERENCES faces(face_id) ON DELETE CASCADE,
    format   TEXT NOT NULL,
    photo    BLOB NOT NULL
);
