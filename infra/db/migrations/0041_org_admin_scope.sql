-- Scope `org-admin`: an organisation's own administrator, who issues and revokes its
-- organisation's keys (of the scopes `read` and `org-admin`) through the catalog's
-- /account/keys (csdr_access.admin). Node administrators (`admin`) keep every right.
ALTER TABLE csdr.api_keys DROP CONSTRAINT api_keys_scopes_check;
ALTER TABLE csdr.api_keys ADD CONSTRAINT api_keys_scopes_check
    CHECK (scopes <@ ARRAY['read', 'ingest', 'admin', 'mirror', 'org-admin'] AND scopes <> '{}');
