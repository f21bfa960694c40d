-- Every face added or removed, in order, so a server that sees another's change applies just
-- that change to its index instead of reloading every face. Old rows are purged; a server
-- that fell further behind reloads everything.
CREATE TABLE face_changes (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    face_id  TEXT    NOT NULL,
    engine   TEXT    NOT NULL,
    added    INTEGER NOT NULL,
    at       INTEGER NOT NULL
);
CREATE TRIGGER face_added AFTER INSERT ON faces BEGIN
    INSERT INTO face_changes (face_id, engine, added, at)
        VALUES (NEW.face_id, NEW.engine, 1, CAST(unixepoch('subsec') * 1000 AS INTEGER));
END;
CREATE TRIGGER face_removed AFTER DELETE ON faces BEGIN
    INSERT INTO face_changes (face_id, engine, added, at)
        VALUES (OLD.face_id, OLD.engine, 0, CAST(unixepoch('subsec') * 1000 AS INTEGER));
END;
