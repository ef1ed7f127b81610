-- Dead letters are counted at every metrics scrape (csdr_push.metrics): an index of them alone
-- keeps that count from reading every delivery ever made.
CREATE INDEX deliveries_dead ON csdr.deliveries (dead_at) WHERE status = 'dead';
