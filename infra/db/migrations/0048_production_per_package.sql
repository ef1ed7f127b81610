-- One production job per archived package, whichever of its scenes are ordered: a package holds
-- several products (a PMS package its PAN and MSS images), and its production job ingests them
-- all. A scene ordered while its package's job is queued or running is produced by that job
-- (its production row points at it), instead of queueing a second job for the same package,
-- which the unique index ingest_jobs_active_production_source (migration 0020) refused with an
-- error (two scenes of one package in one order answered 500). The job ingests into the
-- collection the package's scenes were registered in when they share one (a collection named at
-- registration); scenes registered in several collections each took their own (named by their
-- satellite and sensor), and the job lets each product find its own again.

-- The production of an offline scene, queued unless one is (in the caller's transaction; a failed
-- one is queued again): the job that produces it, or NULL when it was queued or produced already
-- or the node holds no package of the scene.
CREATE OR REPLACE FUNCTION csdr.request_production(_collection text, _item text)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    package text;
    target text;
    job uuid;
BEGIN
    SELECT p.source INTO package FROM csdr.offline_packages p
    WHERE p.collection = _collection AND p.item_id = _item;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- The package's productions are decided one transaction at a time: two orders naming
    -- different scenes of one package would otherwise each hold one scene's production row and
    -- wait for the other's job of the package (a deadlock).
    PERFORM pg_advisory_xact_lock(hashtextextended('csdr.production ' || package, 0));
    INSERT INTO csdr.productions AS d (collection, item_id, job_id, status)
    VALUES (_collection, _item, gen_random_uuid(), 'queued')
    ON CONFLICT (collection, item_id) DO UPDATE
        SET job_id = excluded.job_id, status = 'queued', error = NULL, created_at = now(),
            finished_at = NULL
        WHERE d.status = 'failed'
    RETURNING d.job_id INTO job;
    IF job IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT CASE WHEN count(DISTINCT p.collection) = 1 THEN min(p.collection) END INTO target
    FROM csdr.offline_packages p WHERE p.source = package;
    -- The package's job: a new one, or the one queued or running (another scene of the package
    -- asked first; a job that ends between the two statements is looked for again).
    LOOP
        INSERT INTO csdr.ingest_jobs (id, source, collection, options)
        VALUES (job, package, target, jsonb_build_object('production', _item))
        ON CONFLICT (source) WHERE status IN ('queued', 'running') AND options ? 'production'
        DO NOTHING;
        EXIT WHEN FOUND;
        SELECT j.id INTO job FROM csdr.ingest_jobs j
        WHERE j.source = package AND j.status IN ('queued', 'running')
            AND j.options ? 'production';
        IF FOUND THEN
            UPDATE csdr.productions SET job_id = job
            WHERE collection = _collection AND item_id = _item;
            EXIT;
        END IF;
        job := gen_random_uuid();
        UPDATE csdr.productions SET job_id = job
        WHERE collection = _collection AND item_id = _item;
    END LOOP;
    RETURN job;
END
$$;
