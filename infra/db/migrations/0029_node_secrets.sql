-- Secrets every process of a service must share and that must outlive restarts, made on first
-- use when the operator configured none (the orders service's delivery-link key).
CREATE TABLE csdr.node_secrets (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON csdr.node_secrets FROM PUBLIC;
