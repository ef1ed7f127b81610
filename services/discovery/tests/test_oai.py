"""OAI-PMH as GEOSS's DAB harvests it, with Sickle: every record through resumption tokens, an
incremental harvest `from` the last one's time, deleted records for collections removed or made
private, hidden collections never named."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from lxml import etree
from owslib.iso import MD_Metadata
from psycopg.types.json import Jsonb
from sickle import Sickle
from sickle.oaiexceptions import IdDoesNotExist, NoRecordsMatch

from services.discovery.tests.conftest import COLLECTIONS, HIDDEN, conninfo

OAI = "{http://www.openarchives.org/OAI/2.0/}"
GMD = "{http://www.isotc211.org/2005/gmd}"


@pytest.fixture(scope="module")
def sickle(discovery_url: str) -> Sickle:
    return Sickle(f"{discovery_url}/oai", timeout=30)


@pytest.fixture(scope="module")
def db(discovery_db: dict[str, str]) -> Iterator[psycopg.Connection]:
    with psycopg.connect(conninfo(discovery_db), autocommit=True) as conn:
        conn.execute("SET search_path TO pgstac, public")
        yield conn


def ident(cid: str) -> str:
    return f"oai:csdr-node:{cid}"


def harvest(sickle: Sickle, **args: str) -> tuple[dict[str, object], str]:
    """Every record of a ListRecords harvest (by identifier) and the first response's date."""
    records = sickle.ListRecords(metadataPrefix="iso19139", ignore_deleted=False, **args)
    got: dict[str, object] = {}
    response_date = records.oai_response.xml.find(f"{OAI}responseDate").text
    for record in records:
        assert record.header.identifier not in got, "a record came twice in one harvest"
        got[record.header.identifier] = record
    return got, response_date


def test_identify(sickle: Sickle, discovery_url: str) -> None:
    identify = sickle.Identify()
    assert identify.deletedRecord == "persistent"
    assert identify.granularity == "YYYY-MM-DDThh:mm:ssZ"
    assert identify.baseURL == f"{discovery_url}/oai"
    assert identify.protocolVersion == "2.0"
    assert identify.adminEmail == "geoss@node.example"


def test_metadata_formats(sickle: Sickle) -> None:
    prefixes = {f.metadataPrefix: f.metadataNamespace for f in sickle.ListMetadataFormats()}
    assert prefixes == {
        "oai_dc": "http://www.openarchives.org/OAI/2.0/oai_dc/",
        "iso19139": "http://www.isotc211.org/2005/gmd",
    }


def test_full_harvest_through_resumption_tokens(sickle: Sickle) -> None:
    got, _ = harvest(sickle)
    assert set(got) == {ident(c["id"]) for c in COLLECTIONS}  # 23 records, 5 a page
    by_id = {ident(c["id"]): c for c in COLLECTIONS}
    for identifier, record in got.items():
        assert not record.deleted
        iso = MD_Metadata(record.xml.find(f".//{GMD}MD_Metadata"))
        assert iso.identification[0].title == by_id[identifier]["title"]
    dc = list(sickle.ListRecords(metadataPrefix="oai_dc"))
    assert {r.metadata["identifier"][0] for r in dc} == {c["id"] for c in COLLECTIONS}


def test_incremental_harvest_sees_changes_deletions_and_hidden_collections(
    sickle: Sickle, db: psycopg.Connection
) -> None:
    time.sleep(1.1)  # `from` includes its whole second: the loading's second has passed
    first, since = harvest(sickle)
    assert not any(h in ident(x) for x in HIDDEN for h in first)
    time.sleep(1.1)  # the protocol's granularity is one second
    changed, hidden, removed = COLLECTIONS[1], COLLECTIONS[2], COLLECTIONS[3]
    db.execute("SELECT pgstac.update_collection(%s)", (Jsonb({**changed, "title": "Renamed set"}),))
    db.execute(
        "INSERT INTO csdr.collection_policies (collection, policy) VALUES (%s, 'private')",
        (hidden["id"],),
    )
    db.execute("SELECT pgstac.delete_collection(%s)", (removed["id"],))
    db.execute(  # a policy change on a never-public collection names nothing
        "UPDATE csdr.collection_policies SET policy = 'private' WHERE collection = %s",
        (HIDDEN[0],),
    )

    time.sleep(1.1)  # so the next harvest's own `from` second holds no change of these
    second, since2 = harvest(sickle, **{"from": since})
    assert set(second) == {ident(changed["id"]), ident(hidden["id"]), ident(removed["id"])}
    assert not second[ident(changed["id"])].deleted
    iso = MD_Metadata(second[ident(changed["id"])].xml.find(f".//{GMD}MD_Metadata"))
    assert iso.identification[0].title == "Renamed set"
    assert second[ident(hidden["id"])].deleted
    assert second[ident(removed["id"])].deleted

    # still deleted in a full harvest (persistent), and GetRecord says so
    full, _ = harvest(sickle)
    assert len(full) == len(COLLECTIONS)
    assert {i for i, r in full.items() if r.deleted} == {ident(hidden["id"]), ident(removed["id"])}
    assert sickle.GetRecord(identifier=ident(removed["id"]), metadataPrefix="oai_dc").deleted

    time.sleep(1.1)
    db.execute("DELETE FROM csdr.collection_policies WHERE collection = %s", (hidden["id"],))
    third, _ = harvest(sickle, **{"from": since2})
    assert set(third) == {ident(hidden["id"])}
    assert not third[ident(hidden["id"])].deleted

    with pytest.raises(NoRecordsMatch):
        harvest(sickle, **{"from": "2999-01-01"})


def test_hidden_collections_are_never_named(sickle: Sickle) -> None:
    for cid in HIDDEN:
        with pytest.raises(IdDoesNotExist):
            sickle.GetRecord(identifier=ident(cid), metadataPrefix="iso19139")
    names = {
        h.identifier for h in sickle.ListIdentifiers(metadataPrefix="oai_dc", ignore_deleted=False)
    }
    assert not names & {ident(c) for c in HIDDEN}


def test_until_is_inclusive_and_windows_cut_the_list(sickle: Sickle) -> None:
    got, _ = harvest(sickle)
    stamps = sorted(r.header.datestamp for r in got.values())
    earliest = stamps[0]
    window, _ = harvest(sickle, **{"from": earliest, "until": earliest})
    assert {i for i, r in got.items() if r.header.datestamp == earliest} == set(window)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "badVerb"),
        ({"verb": "Harvest"}, "badVerb"),
        ({"verb": "ListRecords"}, "badArgument"),
        ({"verb": "ListRecords", "metadataPrefix": "marc"}, "cannotDisseminateFormat"),
        ({"verb": "ListRecords", "metadataPrefix": "oai_dc", "from": "yesterday"}, "badArgument"),
        (
            {
                "verb": "ListRecords",
                "metadataPrefix": "oai_dc",
                "from": "2024-01-01",
                "until": "2024-02-01T00:00:00Z",
            },
            "badArgument",
        ),
        ({"verb": "ListRecords", "resumptionToken": "garbage"}, "badResumptionToken"),
        ({"verb": "ListRecords", "metadataPrefix": "oai_dc", "set": "gf"}, "noSetHierarchy"),
        ({"verb": "ListSets"}, "noSetHierarchy"),
        ({"verb": "Identify", "colour": "red"}, "badArgument"),
        (
            {"verb": "GetRecord", "identifier": "oai:elsewhere:x", "metadataPrefix": "oai_dc"},
            "idDoesNotExist",
        ),
    ],
)
def test_protocol_errors(discovery_url: str, params: dict[str, str], code: str) -> None:
    r = httpx.get(f"{discovery_url}/oai", params=params)
    assert r.status_code == 200  # OAI-PMH reports errors in the body
    error = etree.fromstring(r.content).find(f"{OAI}error")
    assert error is not None and error.get("code") == code, r.text
