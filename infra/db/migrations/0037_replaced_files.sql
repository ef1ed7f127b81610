-- Files of an item version a re-ingest replaced: deleted once no request can still be reading
-- them (csdr_ingest.replaced). A row is written in the publish's transaction, so a rolled-back
-- publish schedules nothing and a committed one never leaves its old files behind.
CREATE TABLE csdr.replaced_files (
    href text PRIMARY KEY,
    collection text NOT NULL,
    item_id text NOT NULL,
    due_at timestamptz NOT NULL
);
CREATE INDEX replaced_files_due ON csdr.replaced_files (due_at);
