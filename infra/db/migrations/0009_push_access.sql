-- Push under access control: a subscription belongs to the organisation of the key that created
-- it, and a delivery goes out only when that organisation may see the item's collection at the
-- moment it is sent (csdr_access's one rule, applied in SQL at fan-out and again at claim).

-- `owner` (text, always NULL so far) becomes the owning organisation. Subscriptions made before
-- access control keep NULL: they act as an anonymous caller (public collections only) and only
-- node administrators can see or change them. Deleting an organisation deletes its subscriptions.
ALTER TABLE csdr.subscriptions RENAME COLUMN owner TO owner_name;
ALTER TABLE csdr.subscriptions
    ADD COLUMN owner bigint REFERENCES csdr.organisations (id) ON DELETE CASCADE;
UPDATE csdr.subscriptions s SET owner = o.id
FROM csdr.organisations o WHERE o.name = s.owner_name;
ALTER TABLE csdr.subscriptions DROP COLUMN owner_name;  -- drops the old subscriptions_owner index
CREATE INDEX subscriptions_owner ON csdr.subscriptions (owner);

-- `withheld`: the owner may no longer see the item's collection (its policy changed after the
-- match); the item is not sent, and the delivery is final.
ALTER TABLE csdr.deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE csdr.deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('pending', 'delivered', 'dead', 'withheld'));

-- The access rule, in one place: which collections a principal may see ($1 administrator, $2 any
-- valid key, $3 the organisation). csdr_access calls it for every service; push's fan-out below.
CREATE FUNCTION csdr.visible_collections(boolean, boolean, bigint) RETURNS SETOF text
LANGUAGE sql STABLE AS $rule$
SELECT c.id FROM pgstac.collections c
LEFT JOIN csdr.collection_policies p ON p.collection = c.id
WHERE $1::boolean
   OR p.policy IS NULL OR p.policy = 'public'
   OR (p.policy = 'registered' AND $2::boolean)
   OR (p.policy = 'partners' AND EXISTS (
        SELECT 1 FROM csdr.collection_partners cp
        WHERE cp.collection = c.id AND cp.org_id = $3::bigint))
$rule$;

-- The principal an owning organisation is at this moment: registered (the organisation is the
-- owner, so one revoked key does not stop its deliveries), administrator while it holds a valid
-- key with the admin scope, and anonymous for subscriptions without an owner.
CREATE FUNCTION csdr.owner_may_see(_owner bigint, _collection text) RETURNS boolean
LANGUAGE sql STABLE AS $$
SELECT _collection IN (
    SELECT csdr.visible_collections(
        _owner IS NOT NULL AND EXISTS (
            SELECT 1 FROM csdr.api_keys k
            WHERE k.org_id = _owner AND 'admin' = ANY (k.scopes) AND k.revoked_at IS NULL
              AND (k.expires_at IS NULL OR k.expires_at > now())),
        _owner IS NOT NULL,
        _owner))
$$;

-- As in 0004, plus: only subscriptions whose owner may see the item's collection (judged once per
-- distinct owner among the candidates).
CREATE OR REPLACE FUNCTION csdr.matching_subscriptions(_item pgstac.items) RETURNS SETOF uuid
LANGUAGE plpgsql STABLE SET search_path = pgstac, public AS $$
DECLARE
    candidates record;
    matched boolean;
BEGIN
    FOR candidates IN
        WITH c AS (
            SELECT id, owner, filter_where FROM csdr.subscriptions
            WHERE (collections IS NULL OR _item.collection = ANY (collections))
              AND (geometry IS NULL OR st_intersects(geometry, _item.geometry))
        ), allowed AS (
            SELECT o.owner FROM (SELECT DISTINCT owner FROM c) o
            WHERE csdr.owner_may_see(o.owner, _item.collection)
        )
        SELECT filter_where, array_agg(id) AS ids FROM c
        WHERE EXISTS (SELECT 1 FROM allowed a WHERE a.owner IS NOT DISTINCT FROM c.owner)
        GROUP BY filter_where
    LOOP
        IF candidates.filter_where IS NULL THEN
            matched := true;
        ELSE
            EXECUTE format(
                'SELECT EXISTS (SELECT 1 FROM (SELECT ($1).*) AS items WHERE %s)',
                candidates.filter_where
            ) INTO matched USING _item;
        END IF;
        IF matched THEN
            RETURN QUERY SELECT unnest(candidates.ids);
        END IF;
    END LOOP;
END
$$;
