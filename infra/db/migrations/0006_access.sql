-- Access control (csdr_access): who the callers are and which collections each may see.
-- Keys are random and high-entropy, so a SHA-256 digest is enough to store them (as GitHub and
-- Stripe do); the first characters after `csdr_` are kept in clear as the prefix that finds them.
CREATE TABLE csdr.organisations (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    country     char(2) NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    kind        text NOT NULL CHECK (kind IN ('main', 'partner', 'agency')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE csdr.api_keys (
    prefix       text PRIMARY KEY,
    digest       bytea NOT NULL,
    org_id       bigint NOT NULL REFERENCES csdr.organisations (id) ON DELETE CASCADE,
    scopes       text[] NOT NULL CHECK (scopes <@ ARRAY['read', 'ingest', 'admin'] AND scopes <> '{}'),
    label        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);

-- A collection without a row here is public.
CREATE TABLE csdr.collection_policies (
    collection  text PRIMARY KEY,
    policy      text NOT NULL CHECK (policy IN ('public', 'registered', 'partners', 'private')),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE csdr.collection_partners (
    collection  text NOT NULL REFERENCES csdr.collection_policies (collection) ON DELETE CASCADE,
    org_id      bigint NOT NULL REFERENCES csdr.organisations (id) ON DELETE CASCADE,
    PRIMARY KEY (collection, org_id)
);

CREATE TABLE csdr.audit_log (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL,
    action  text NOT NULL,
    detail  jsonb NOT NULL DEFAULT '{}'::jsonb
);
