"""SIGKILL of the orders service while it serves orders, then a restart on its port. Client
threads of two organisations place orders of online and offline scenes (an Idempotency-Key each,
within a yearly quota), cancel some and read them, and send a cut request again with the same key
once the service is back. Each of the four kills lands at a chosen point, held there by a lock
this test takes in the database: an order's acceptance held mid-statement (its rows in, its
ledger row waiting: the database ends it whole or not at all), a cancel committed but not yet
answered, the watcher settling a production that ended, and the
watcher delivering produced scenes. Afterwards every order exists once with all its items; the
quota counters, entitlements and ledger add up to exactly the scenes the orders delivered
(nothing charged twice or without an order, no refund lost); every production and order ended,
no ingest lease is held, each order event was queued once; and every answer was a 2xx, a
documented 4xx, or a refused connection while the process was down, never a 5xx.

Ingest produces the offline scenes, as in test_orders.py; the catalog is not started (orders
reads pgSTAC itself). The order events stay in push's outbox (no push worker runs): the outbox
holds what the organisations would be sent."""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest

from conftest import TEMPLATE_DB, free_port
from csdr_access.admin import add_org, issue_key
from csdr_access.quotas import set_approval, set_quota
from csdr_ingest.synthetic import Scene, write_scene
from infra.local.pgcluster import Cluster
from tests.e2e.load import wait_for
from tests.e2e.processes import service_process
from tests.fixtures import CRESDA_PMS, CRESDA_WFV
from tests.support.lookalike import write_lookalike

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),  # thumbnails
]

COLLECTION = "e2e-orders-kill"
ONLINE = [
    Scene(f"OKILL_{n}", "EPSG:32650", 662_000 + n * 2_000, 4_190_000, datetime(2024, 6, n + 1),
          seed=60 + n, size=256)
    for n in range(3)
]  # fmt: skip
ORGS = {"Alpha": "TH", "Beta": "BD", "Gamma": "LA", "Delta": "MN", "Epsilon": "NP"}
CLIENTS = [("Alpha", 0), ("Alpha", 1), ("Beta", 0)]
"""(organisation, thread number): Alpha's two threads race for the same counter."""
BETA_QUOTA = 4
"""Beta's yearly scenes: fewer than the five it may order, so some orders are refused (403)."""
APP = "csdr-orders"
"""The orders service's application_name in pg_stat_activity."""
RETRY_S = 60.0
"""How long a client sends a cut request again before it gives up."""
MAX_ORDERS = 60
"""Orders one client thread places at most."""

T = TypeVar("T")
Ref = tuple[str, str]
"""(collection, item id)"""


@pytest.fixture
def db(pg_cluster: Cluster) -> Iterator[tuple[dict[str, str], str]]:
    """A fresh database of the session's cluster: its PG* variables and conninfo."""
    name = f"okill_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_database(name, template=TEMPLATE_DB)
    yield pg_cluster.env(name), pg_cluster.conninfo(name)
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Stopped(Exception):
    """The test ended (failed) while a client waited for an answer."""


@dataclass
class Answer:
    """One request and how it ended: its status, -1 refused or cut, 0 timed out."""

    op: str
    started: float
    ended: float
    status: int
    code: str | None = None


@dataclass
class Logical:
    """One order a client means to place (one Idempotency-Key), and what became of it."""

    org: str
    key: str
    scenes: list[Ref]
    status: int = 0
    """The last answer to placing it: 201, 200 (a replay) or 403 (over the quota)."""
    order_id: str | None = None
    cut: bool = False
    """An attempt to place it was refused or cut before this answer."""
    cancel: int | None = None
    """The last answer to canceling it (200, or 409 for a finished order), when asked to."""
    cancel_cut: bool = False
    """An attempt to cancel it was refused or cut before that answer."""


@dataclass
class Clients:
    """Client threads of the organisations, every answer and every order recorded."""

    url: str
    keys: dict[str, str]
    online: list[Ref]
    offline: list[Ref]
    answers: list[Answer] = field(default_factory=list)
    orders: list[Logical] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    offline_open: threading.Event = field(default_factory=threading.Event)
    """Set once the test's own offline orders are placed: clients order offline scenes too."""
    failures: list[BaseException] = field(default_factory=list)
    """What ended a client thread before it was told to stop."""

    def send(
        self, client: httpx.Client, op: str, method: str, path: str, **kw: Any
    ) -> tuple[httpx.Response, bool]:
        """Send until answered: a refused or cut request again after a pause (the same
        Idempotency-Key), a 429 after its Retry-After. (the answer, whether one was cut)"""
        cut, deadline = False, time.monotonic() + RETRY_S
        while True:
            started = time.monotonic()
            try:
                r = client.request(method, self.url + path, **kw)
            except httpx.TransportError as exc:
                status = 0 if isinstance(exc, httpx.TimeoutException) else -1
                self.answers.append(Answer(op, started, time.monotonic(), status))
                if self.stop.is_set():
                    raise Stopped(f"{op} {path}: the test ended without an answer") from exc
                assert time.monotonic() < deadline, f"{op} {path}: no answer in {RETRY_S}s"
                cut = True
                time.sleep(0.2)
                continue
            json = r.headers.get("content-type", "").startswith("application/json")
            code = r.json().get("code") if r.status_code >= 400 and json else None
            self.answers.append(Answer(op, started, time.monotonic(), r.status_code, code))
            if r.status_code == 429:
                time.sleep(min(float(r.headers.get("Retry-After", 1)), 1.0))
                continue
            return r, cut

    def place(self, client: httpx.Client, logical: Logical) -> Logical:
        """Place the order until it is answered (accepted, replayed or refused)."""
        self.orders.append(logical)
        body = {"items": [{"collection": c, "id": i} for c, i in logical.scenes]}
        headers = {"Idempotency-Key": logical.key}
        r, logical.cut = self.send(client, "place", "POST", "/orders", json=body, headers=headers)
        logical.status = r.status_code
        if r.status_code in (200, 201):
            logical.order_id = r.json()["id"]
        return logical

    def cancel(self, client: httpx.Client, logical: Logical) -> Logical:
        """Cancel the order until it is answered (canceled, or finished already)."""
        path = f"/orders/{logical.order_id}/cancel"
        r, logical.cancel_cut = self.send(client, "cancel", "POST", path)
        logical.cancel = r.status_code
        return logical

    def client(self, org: str) -> httpx.Client:
        """An HTTP client with the organisation's key."""
        return httpx.Client(headers={"X-API-Key": self.keys[org]}, timeout=30)

    def run(self, org: str, n: int) -> None:
        """Place (up to MAX_ORDERS), sometimes cancel, and read orders until told to stop."""
        rng = random.Random(f"{org}-{n}")
        with self.client(org) as client:
            try:
                self._orders_and_reads(client, rng, org, n)
            except Stopped:
                return
            except Exception as exc:
                self.failures.append(exc)
                raise

    def _orders_and_reads(self, client: httpx.Client, rng: random.Random, org: str, n: int) -> None:
        k = 0
        while not self.stop.is_set():
            if k < MAX_ORDERS:
                pool = self.online + (self.offline * 2 if self.offline_open.is_set() else [])
                scenes = list(dict.fromkeys(rng.sample(pool, rng.randint(1, 2))))
                logical = self.place(client, Logical(org, f"{org}-{n}-{k}", scenes))
                k += 1
                if logical.order_id is not None:
                    offline = any(s in self.offline for s in scenes)
                    if rng.random() < (0.5 if offline else 0.1):
                        self.cancel(client, logical)
                    self.send(client, "get", "GET", f"/orders/{logical.order_id}")
            self.send(client, "list", "GET", "/orders?limit=20")
            self.send(client, "quota", "GET", "/quota")
            time.sleep(0.05)


class Orders:
    """The orders service as a uvicorn process on a fixed port, killable and restartable."""

    def __init__(self, stack: ExitStack, env: dict[str, str], log_dir: Path) -> None:
        self.stack, self.env, self.log_dir = stack, env, log_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env["CSDR_ORDERS_PUBLIC_URL"] = self.url
        self.proc: subprocess.Popen[bytes] | None = None
        self.down: list[tuple[float, float]] = []

    def start(self) -> None:
        self.proc = self.stack.enter_context(
            service_process("csdr_orders.app:create_app", self.port, self.env, self.log_dir)
        )[1]

    def kill(self) -> float:
        """SIGKILL the process; return when."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        at = time.monotonic()
        self.proc.wait(10)
        assert self.proc.returncode == -signal.SIGKILL
        return at

    def restart(self, killed_at: float) -> None:
        """Start the service again on its port; note the window it was down."""
        self.start()
        self.down.append((killed_at, time.monotonic()))


class Hold:
    """Locks this test holds in an open transaction: the service waits at them."""

    def __init__(self, stack: ExitStack, conninfo: str, query: str, *params: object) -> None:
        self.conn = psycopg.connect(conninfo)
        stack.callback(self.release)
        cursor = self.conn.execute(query, params)
        self.rows = cursor.fetchall() if cursor.description else []
        self.pid = self.conn.info.backend_pid

    def release(self) -> None:
        """Roll back: the locks go."""
        self.conn.close()


def test_orders_killed_while_placing_settling_and_delivering_lose_and_double_nothing(
    db: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    pg_env, conninfo = db
    assets, work = tmp_path / "assets", tmp_path / "work"
    env = {
        **pg_env,
        "CSDR_INGEST_ASSETS_DIR": str(assets),
        "CSDR_INGEST_WORK_DIR": str(work),
        "CSDR_INGEST_POLL_INTERVAL_S": "0.2",
        "CSDR_INGEST_WORKERS": "2",
        "CSDR_ORDERS_ASSET_ROOTS": str(assets),
        "CSDR_ORDERS_POLL_INTERVAL_S": "0.2",
        # The final reads of every order go at full speed: no 429 from the per-key limit.
        "CSDR_ORDERS_RATE_LIMIT_PER_S": "1000",
        "CSDR_ORDERS_RATE_LIMIT_BURST": "1000",
        "CSDR_ACCESS_MAX_KEY_FAILURES": "10000",
    }

    def sql(query: str, *params: object) -> list[tuple]:
        with psycopg.connect(conninfo) as conn:
            return conn.execute(query, params).fetchall()

    keys, org_ids = {}, {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        add_org(conn, "Node", "CN", "main", "test")
        ingest_headers = {"X-API-Key": issue_key(conn, "Node", ["ingest"], "test")[0]}
        for org, country in ORGS.items():
            add_org(conn, org, country, "partner", "test")
            keys[org] = issue_key(conn, org, ["read"], "test")[0]
            [[org_ids[org]]] = conn.execute(
                "SELECT id FROM csdr.organisations WHERE name = %s", (org,)
            ).fetchall()
            # A webhook per organisation, so that order events are queued in push's outbox;
            # a collection no item is in keeps item events out of it.
            conn.execute(
                "INSERT INTO csdr.subscriptions (owner, collections, webhook_url, webhook_secret)"
                " VALUES (%s, '{no-such-collection}', 'http://127.0.0.1:9/hook', 'whsec_test')",
                (org_ids[org],),
            )
        set_quota(conn, "Beta", BETA_QUOTA, "all", "test")
        # Epsilon's orders wait for an administrator, untouched by the watcher.
        set_approval(conn, "Epsilon", "manual", "test")

    sources = tmp_path / "sources"
    sources.mkdir()
    online_files = [write_scene(s, sources) for s in ONLINE]
    packages = [
        write_lookalike(f, tmp_path / "archive", max_size=200) for f in (CRESDA_WFV, CRESDA_PMS)
    ]

    # Processes stop last: the client threads end first (against a live service).
    with ExitStack() as processes, ExitStack() as stack:
        orders = Orders(processes, env, tmp_path)
        ingest_port = free_port()
        ingest = f"http://127.0.0.1:{ingest_port}"
        with ThreadPoolExecutor(2) as pool:
            started = [
                pool.submit(orders.start),
                pool.submit(
                    lambda: processes.enter_context(
                        service_process("csdr_ingest.app:create_app", ingest_port, env, tmp_path)
                    )
                ),
            ]
            for f in started:
                f.result()

        jobs = []
        for path in online_files:
            body = {"source": str(path), "collection": COLLECTION}
            jobs.append(httpx.post(f"{ingest}/jobs", json=body, headers=ingest_headers))
        for path in packages:
            body = {"source": str(path), "offline": True}
            jobs.append(httpx.post(f"{ingest}/jobs", json=body, headers=ingest_headers))
        assert [j.status_code for j in jobs] == [202] * len(jobs), [j.text for j in jobs]
        job_ids = [j.json()["id"] for j in jobs]

        def ended(job_ids: list[str]) -> bool:
            rows = sql("SELECT status FROM csdr.ingest_jobs WHERE id = ANY(%s::uuid[])", job_ids)
            assert "failed" not in {r[0] for r in rows}, rows
            return len(rows) == len(job_ids) and {r[0] for r in rows} == {"succeeded"}

        wait_for(lambda: ended(job_ids), 120, "the scenes to be ingested")
        online = [(COLLECTION, s.name) for s in ONLINE]
        offline = [
            (c, i)
            for c, i in sql(
                "SELECT collection, item_id FROM csdr.offline_packages ORDER BY registered_at"
            )
        ]
        assert len(offline) == 2, offline
        clients = Clients(orders.url, keys, online, offline)

        readers = {org: clients.client(org) for org in ORGS}
        for client in readers.values():
            stack.callback(client.close)
        gamma, delta, epsilon = readers["Gamma"], readers["Delta"], readers["Epsilon"]
        warm = clients.place(gamma, Logical("Gamma", "gamma-warm", [online[0]]))
        assert warm.status == 201

        threads = [threading.Thread(target=clients.run, args=c) for c in CLIENTS]
        for t in threads:
            t.start()
        stack.callback(lambda: [t.join() for t in threads])
        stack.callback(clients.stop.set)
        zombies: set[int] = set()

        def blocked_by(hold: Hold) -> tuple[int, str] | None:
            """The orders backend of the live process that waits for `hold`'s lock."""
            rows = sql(
                "SELECT pid, query FROM pg_stat_activity WHERE application_name = %s"
                " AND %s = ANY(pg_blocking_pids(pid)) AND pid <> ALL(%s::int[])",
                APP,
                hold.pid,
                sorted(zombies),
            )
            return rows[0] if rows else None

        def kill_at(hold: Hold) -> tuple[float, str]:
            """Kill the process while it waits for `hold`, then let go of the lock and wait for
            the dead process's backends to end; (when it was killed, what it waited in)."""
            [pid, query] = wait_for(lambda: blocked_by(hold), 120, "the orders service to wait")
            killed_at = orders.kill()
            zombies.update(
                p
                for [p] in sql("SELECT pid FROM pg_stat_activity WHERE application_name = %s", APP)
            )
            assert pid in zombies
            hold.release()
            wait_for(
                lambda: (
                    not sql(
                        "SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s::int[])", sorted(zombies)
                    )
                ),
                30,
                "the killed process's backends to end",
            )
            return killed_at, query

        # -- Kill 1: an order half written. Gamma's monthly usage rows are locked: its order is
        # written up to the ledger rows, whose trigger waits. The acceptance is one statement
        # (csdr.accept_order) in a transaction of its own, which the database ends without the
        # client: whole (committed once the lock is let go; the retry is answered as a replay)
        # or not at all (rolled back, had the server seen the client gone first), never half. --
        hold = Hold(
            stack,
            conninfo,
            "SELECT 1 FROM csdr.usage_monthly WHERE org_id = %s FOR UPDATE",
            org_ids["Gamma"],
        )
        assert hold.rows
        probe = Logical("Gamma", "gamma-probe", [online[1]])
        placing = threading.Thread(target=clients.place, args=(gamma, probe))
        placing.start()
        stack.callback(placing.join)
        killed_at, query = kill_at(hold)
        assert "csdr.accept_order" in query, query
        [(written,)] = sql(
            "SELECT count(*) - 1 FROM csdr.orders WHERE org_id = %s", org_ids["Gamma"]
        )
        assert written in (0, 1)
        gamma_rows = sql(
            "SELECT (SELECT count(*) FROM csdr.entitlements WHERE org_id = %s),"
            " (SELECT count(*) FROM csdr.order_items i JOIN csdr.orders o ON o.id = i.order_id"
            "  WHERE o.org_id = %s),"
            " (SELECT count(*) FROM csdr.usage_ledger WHERE org_id = %s AND kind = 'reserved')",
            org_ids["Gamma"],
            org_ids["Gamma"],
            org_ids["Gamma"],
        )
        assert gamma_rows == [(1 + written, 1 + written, 1 + written)]  # whole or nothing
        orders.restart(killed_at)
        placing.join()
        assert (probe.status, probe.cut) == ((200 if written else 201), True), probe

        # -- Kill 2: a cancel committed, its answer not sent. The quota limits are locked: the
        # cancel (which does not read them) commits, the order it answers with waits. --
        held_order = clients.place(epsilon, Logical("Epsilon", "epsilon-1", [online[2]]))
        assert held_order.status == 201
        hold = Hold(stack, conninfo, "LOCK TABLE csdr.quota_limits IN ACCESS EXCLUSIVE MODE")
        canceling = threading.Thread(target=clients.cancel, args=(epsilon, held_order))
        canceling.start()
        stack.callback(canceling.join)
        wait_for(
            lambda: (
                sql("SELECT status FROM csdr.orders WHERE id = %s", held_order.order_id)
                == [("canceled",)]
            ),
            60,
            "the cancel to commit",
        )
        killed_at, _ = kill_at(hold)
        assert sql(
            "SELECT kind FROM csdr.usage_ledger WHERE org_id = %s ORDER BY id", org_ids["Epsilon"]
        ) == [("reserved",), ("refunded",)]
        orders.restart(killed_at)
        canceling.join()
        # Sent again, the cancel answers the canceled order (and refunds nothing twice).
        assert (held_order.cancel, held_order.cancel_cut) == (200, True), held_order

        # -- Delta's orders of the two offline scenes, each held at a later step: the first
        # where the watcher settles its production, the second where it delivers. --
        p1 = clients.place(delta, Logical("Delta", "delta-1", [offline[0]]))
        p2 = clients.place(delta, Logical("Delta", "delta-2", [offline[1]]))
        assert (p1.status, p2.status) == (201, 201)
        settle = Hold(
            stack,
            conninfo,
            "SELECT i.status FROM csdr.orders o JOIN csdr.order_items i ON i.order_id = o.id"
            " WHERE o.id = %s FOR NO KEY UPDATE OF o",
            p1.order_id,
        )
        deliver = Hold(
            stack,
            conninfo,
            "SELECT e.state, i.status FROM csdr.entitlements e JOIN csdr.order_items i"
            " ON i.order_id = e.order_id AND i.item_id = e.item_id"
            " WHERE e.order_id = %s FOR UPDATE OF e",
            p2.order_id,
        )
        assert settle.rows == [("pending",)], "the production ended before the lock: too fast"
        assert deliver.rows == [("reserved", "pending")], deliver.rows
        clients.offline_open.set()

        # -- Kills 3 and 4, in the order the productions end. --
        holds = {"settle": settle, "deliver": deliver}
        while holds:
            name = wait_for(
                lambda: next((w for w, h in holds.items() if blocked_by(h)), None),
                180,
                "the watcher to reach a held step",
            )
            killed_at, query = kill_at(holds.pop(name))
            if name == "settle":
                assert "FOR UPDATE" in query, query
                # The production's claim and the items it moved rolled back with the process.
                assert sql(
                    "SELECT p.status, j.status FROM csdr.productions p"
                    " JOIN csdr.ingest_jobs j ON j.id = p.job_id"
                    " WHERE p.collection = %s AND p.item_id = %s",
                    *offline[0],
                ) == [("queued", "succeeded")]
                assert sql(
                    "SELECT status FROM csdr.order_items WHERE order_id = %s", p1.order_id
                ) == [("pending",)]
            else:
                assert "UPDATE csdr.entitlements" in query, query
                # Produced and moved to `shipping` (committed), not delivered yet.
                assert sql(
                    "SELECT i.status, e.state FROM csdr.order_items i JOIN csdr.entitlements e"
                    " ON e.order_id = i.order_id AND e.item_id = i.item_id"
                    " WHERE i.order_id = %s",
                    p2.order_id,
                ) == [("shipping", "reserved")]
            orders.restart(killed_at)
        last_restart = time.monotonic()

        def settled(logical: Logical) -> bool:
            r = clients.send(delta, "get", "GET", f"/orders/{logical.order_id}")[0]
            return r.status_code == 200 and r.json()["status"] == "succeeded"

        wait_for(lambda: settled(p1) and settled(p2), 60, "the held orders to be delivered")
        time.sleep(1.0)
        clients.stop.set()
        for t in threads:
            t.join()
        assert not clients.failures, clients.failures
        wait_for(
            lambda: (
                not sql(
                    "SELECT 1 FROM csdr.order_items"
                    " WHERE status IN ('ordered', 'pending', 'shipping')"
                )
            ),
            60,
            "every order to end",
        )

        check_answers(list(clients.answers), orders.down, last_restart)

        # -- Orders: each logical order exists once, with exactly its scenes; a replay only
        # answers a request whose first attempt was cut; a refused one left nothing. --
        logical = list(clients.orders)
        assert len({o.key for o in logical}) == len(logical)
        rows = sql(
            "SELECT o.id::text, g.name, o.idempotency_key, o.status,"
            " array_agg(i.collection || '/' || i.item_id ORDER BY i.collection, i.item_id)"
            " FROM csdr.orders o JOIN csdr.organisations g ON g.id = o.org_id"
            " LEFT JOIN csdr.order_items i ON i.order_id = o.id GROUP BY o.id, g.name"
        )
        by_key = {(r[1], r[2]): r for r in rows}
        assert len(by_key) == len(rows)
        accepted = [o for o in logical if o.status in (200, 201)]
        assert sorted(by_key) == sorted((o.org, o.key) for o in accepted)
        for o in accepted:
            row = by_key[o.org, o.key]
            assert row[0] == o.order_id
            assert row[4] == sorted(f"{c}/{i}" for c, i in o.scenes), (o, row)
        assert all(o.cut for o in logical if o.status == 200), "a replay of an uncut request"
        assert all(o.status == 403 for o in logical if o.status not in (200, 201)), logical
        statuses = Counter(o.status for o in logical)
        assert statuses[201] > 10, statuses

        # -- Every order and item ended; the API shows what the database holds. --
        final = {}
        for o in accepted:
            r = readers[o.org].get(f"{orders.url}/orders/{o.order_id}")
            assert r.status_code == 200, r.text
            final[o.order_id] = r.json()
            assert r.json()["status"] == by_key[o.org, o.key][3]
            assert r.json()["status"] in ("succeeded", "partial", "canceled"), r.json()
        for o in accepted:
            # Nothing failed: an order not canceled delivered everything. (A cancel sent again
            # may find the order it canceled `partial`: a 409 then.)
            ends = {200: {"canceled", "partial"}, None: {"succeeded"}}.get(
                o.cancel, {"succeeded", "canceled", "partial"} if o.cancel_cut else {"succeeded"}
            )
            assert final[o.order_id]["status"] in ends, (o, final[o.order_id])
        canceled_items = sum(
            i["status"] == "canceled"
            for o in accepted
            if o.org in dict(CLIENTS)
            for i in final[o.order_id]["items"]
        )
        assert canceled_items > 0, "no client canceled an order before its scene was delivered"

        # -- Quotas: each organisation holds exactly the scenes its orders delivered, charged
        # once: counters, entitlements, charged items and the ledger agree. --
        held: dict[str, set[Ref]] = {org: set() for org in ORGS}
        for o in accepted:
            for item in final[o.order_id]["items"]:
                if item["status"] == "succeeded":
                    held[o.org].add((item["collection"], item["id"]))
        assert held["Delta"] == set(offline) and held["Gamma"] == set(online[:2])
        assert final[held_order.order_id]["status"] == "canceled" and not held["Epsilon"]
        for org, scenes in held.items():
            check_charges(sql, org_ids[org], scenes)
            [quota] = readers[org].get(f"{orders.url}/quota").json()["quotas"]
            assert (quota["used"], quota["reserved"]) == (len(scenes), 0), (org, quota)
        assert len(held["Beta"]) <= BETA_QUOTA

        # -- Each step told once: one `accepted` and one `completed` event per order, one
        # `item.succeeded` per delivered item; each delivered item has one `succeeded` row. --
        check_events(sql, final)
        for order in final.values():
            delivered = Counter(
                h["id"] for h in order["history"] if h.get("id") and h["status"] == "succeeded"
            )
            assert all(n == 1 for n in delivered.values()), order["history"]

        # -- Productions and ingest: each ended once, succeeded; no lease held; no file left
        # in the scratch directory. --
        assert sorted(sql("SELECT collection, item_id, status FROM csdr.productions")) == sorted(
            (c, i, "succeeded") for c, i in offline
        )
        jobs_now = sql("SELECT status, lease_until FROM csdr.ingest_jobs")
        assert jobs_now and all(j == ("succeeded", None) for j in jobs_now), jobs_now
        assert not [p for p in work.rglob("*") if p.is_file()]
        assert httpx.get(f"{orders.url}/readyz").status_code == 200


def check_answers(
    answers: list[Answer], down: list[tuple[float, float]], last_restart: float
) -> None:
    """Never a 5xx or a timeout: a 2xx or a documented 4xx, a refused or cut request only while
    the process was down, and each down window cut requests of the load."""
    allowed = {
        "place": {(200, None), (201, None), (403, "QuotaExceeded")},
        "cancel": {(200, None), (409, "Conflict")},
    }
    for a in answers:
        if a.status not in (-1, 429):
            assert (a.status, a.code) in allowed.get(a.op, {(200, None)}), a

    def while_down(a: Answer) -> bool:
        return any(a.started <= end and a.ended >= start for start, end in down)

    refused = [a for a in answers if a.status == -1]
    assert all(while_down(a) for a in refused), [a for a in refused if not while_down(a)]
    for start, end in down:
        assert any(start <= a.ended and a.started <= end for a in refused), "not under load"
    after = [a for a in answers if a.started > last_restart]
    assert after and all(a.status != -1 for a in after)


def check_charges(sql: Callable[..., list[tuple]], org_id: int, scenes: set[Ref]) -> None:
    """The organisation is charged exactly once for each scene it holds and for nothing else:
    its counters, its entitlements, its orders' charged items and the ledger agree."""
    assert sql(
        "SELECT coalesce(sum(committed), 0), coalesce(sum(reserved), 0)"
        " FROM csdr.quota_usage WHERE org_id = %s",
        org_id,
    ) == [(len(scenes), 0)]
    entitled = sql(
        "SELECT e.collection, e.item_id, e.state, i.status, i.charged"
        " FROM csdr.entitlements e JOIN csdr.order_items i ON i.order_id = e.order_id"
        " AND i.collection = e.collection AND i.item_id = e.item_id WHERE e.org_id = %s",
        org_id,
    )
    assert sorted(entitled) == sorted((c, i, "committed", "succeeded", True) for c, i in scenes)
    charged = sql(
        "SELECT i.collection, i.item_id, i.status FROM csdr.order_items i"
        " JOIN csdr.orders o ON o.id = i.order_id WHERE o.org_id = %s AND i.charged"
        " AND i.status <> 'canceled'",
        org_id,
    )
    assert sorted(charged) == sorted((c, i, "succeeded") for c, i in scenes)
    # Per scene: charges net of refunds, and deliveries.
    ledger = sql(
        "SELECT collection, item_id,"
        " coalesce(sum(delta) FILTER (WHERE kind IN ('reserved', 'refunded')), 0),"
        " coalesce(sum(delta) FILTER (WHERE kind = 'released'), 0)"
        " FROM csdr.usage_ledger WHERE org_id = %s GROUP BY 1, 2",
        org_id,
    )
    net = {(c, i): (n, r) for c, i, n, r in ledger if (n, r) != (0, 0)}
    assert net == dict.fromkeys(scenes, (1, 1)), net


def check_events(sql: Callable[..., list[tuple]], final: dict[str, dict[str, Any]]) -> None:
    """Push's outbox holds one `accepted` and one `completed` event per order and one
    `item.succeeded` per delivered item: nothing told twice, nothing left untold."""
    events = Counter(
        (t, o, i)
        for t, o, i in sql(
            "SELECT type, payload->>'order', coalesce(payload->>'item', '')"
            " FROM csdr.deliveries WHERE type LIKE 'org.csdr.order.%%'"
        )
    )
    expected: Counter[tuple[str, str, str]] = Counter()
    for order_id, order in final.items():
        expected["org.csdr.order.accepted", order_id, ""] += 1
        expected["org.csdr.order.completed", order_id, ""] += 1
        for item in order["items"]:
            if item["status"] == "succeeded":
                expected["org.csdr.order.item.succeeded", order_id, item["id"]] += 1
    assert events == expected, (events - expected, expected - events)
