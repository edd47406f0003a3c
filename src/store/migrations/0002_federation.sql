-- Federation entries (SPEC 6) and replay records (SPEC 7.3 step 7).

CREATE TABLE federation_entries (
    robot_id   BIGINT NOT NULL REFERENCES robots (id) ON DELETE CASCADE,
    position   BIGINT NOT NULL,
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    audiences  TEXT NOT NULL,  -- JSON array of strings
    conditions TEXT NOT NULL,  -- JSON object, claim name -> pattern
    PRIMARY KEY (robot_id, position)
);

-- An (issuer, jti) pair is accepted once while the token can still be valid.
CREATE TABLE replay_records (
    issuer     TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);

CREATE INDEX replay_records_expiry ON replay_records (expires_at);
