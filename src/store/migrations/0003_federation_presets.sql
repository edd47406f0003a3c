-- Provider presets (oidc::providers): the preset's fields, the immutable IDs still to be
-- pinned by the first exchange, and when an exchange pinned them. All nullable: entries
-- without a preset, and releases that do not know these columns, leave them NULL.

ALTER TABLE federation_entries ADD COLUMN provider TEXT;      -- JSON object: provider + fields
ALTER TABLE federation_entries ADD COLUMN pending_pins TEXT;  -- JSON array of claim names
ALTER TABLE federation_entries ADD COLUMN pinned_at BIGINT;
