"""The whole node on this machine: `python -m infra.local.node up|down|status` (via make).

`up` is idempotent: it starts only what is not running and ingests only demo scenes not yet in
the catalog, so a second `up` changes nothing. It registers the node's own organisation (`main`)
and keeps an admin key for it in `<data dir>/admin.key` (mode 600), issued once through
csdr_access.admin; POST /jobs needs a key with the ingest scope. `down` stops what `up` started;
data stays in the data directory (CSDR_DATA_DIR, default .data/) for the next `up`. The database
cluster lives in the data directory too, unless the postgres user cannot reach it (see
`Node.pg_home`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from csdr_ingest.synthetic import DEMO_COLLECTION, demo_collection, write_demo_scenes
from infra.db.migrate import migrate
from infra.local.pgcluster import Cluster, ClusterError, server_can_reach

ROOT = Path(__file__).resolve().parents[2]
SUPERVISOR = Path(__file__).resolve().parent / "supervisor.py"
SERVICES = {  # name -> (uvicorn factory, port variable, default port)
    "portal": ("csdr_portal.app:create_app", "CSDR_PORTAL_PORT", 8080),
    "catalog": ("csdr_catalog.app:create_app", "CSDR_CATALOG_PORT", 8081),
    "tiler": ("csdr_tiler.app:create_app", "CSDR_TILER_PORT", 8082),
    "ingest": ("csdr_ingest.app:create_app", "CSDR_INGEST_PORT", 8083),
    "push": ("csdr_push.app:create_app", "CSDR_PUSH_PORT", 8084),
    "orders": ("csdr_orders.app:create_app", "CSDR_ORDERS_PORT", 8085),
    "discovery": ("csdr_discovery.app:create_app", "CSDR_DISCOVERY_PORT", 8086),
    "federation": ("csdr_federation.app:create_app", "CSDR_FEDERATION_PORT", 8087),
}
MAIN_ORG = "main"
READY_TIMEOUT_S = 90
# Every service process: glibc gives each thread that allocates its own heap ("arena", up to 8 a
# core), and memory freed in one is not returned while it is fragmented: under a soak of tiles
# and searches the tiler grew steadily as long as it ran (docs/performance.md, "Soak"). Two
# arenas keep it flat. Blocks of 256 KiB and more get pages of their own (mmap), given back when
# freed: by default glibc raises that threshold to the size of each large block freed (up to
# 32 MB), and then carves response bodies and pixel arrays out of the heaps between small
# long-lived objects, which pin the pages around them. The catalog's and the tiler's live heap
# stayed flat under the soak while the free space in their heaps grew by 20 and 100 MB. At 64 KiB
# a tile's band arrays (64-128 KiB) were mapped and unmapped for every tile: 0.80x tiles/s
# (tests/bench/bench_allocator.py); the catalog, whose large blocks are search responses of
# 64-256 KiB, sets 64 KiB itself (csdr_service.allocator). The images set the same
# (infra/docker/Dockerfile).
PROCESS_ENV = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "262144"}
CRASHES_AT_START = 3  # a service that dies this often before it is ready is not restarted
# Where a cluster lives when the postgres user cannot reach the data directory.
RELOCATED_CLUSTERS = Path("/var/lib/csdr-node")


class NodeError(RuntimeError):
    """Something an operator must fix; the message says what."""


@dataclass
class Node:
    """Where this node's state lives and which ports it uses."""

    data_dir: Path
    pg_port: int
    ports: dict[str, int]

    @classmethod
    def from_env(cls) -> Node:
        """Read CSDR_DATA_DIR, CSDR_PG_PORT and the service port variables."""
        data_dir = Path(os.environ.get("CSDR_DATA_DIR") or ROOT / ".data").resolve()
        ports = {
            name: int(os.environ.get(var) or default)
            for name, (_, var, default) in SERVICES.items()
        }
        return cls(data_dir, int(os.environ.get("CSDR_PG_PORT") or 5439), ports)

    @property
    def pg_location_file(self) -> Path:
        """Names the cluster's home when it is not the data directory."""
        return self.data_dir / "pg.location"

    @property
    def pg_home(self) -> Path:
        """Where the cluster's files live: the data directory, or, when the postgres user cannot
        reach it (root, with a clone under a mode-700 home), RELOCATED_CLUSTERS/<hash of the data
        directory's path>. `up` records the latter in pg.location, so `down` and `status` find it
        again whatever happens to the permissions in between."""
        if self.pg_location_file.exists():
            return Path(self.pg_location_file.read_text().strip())
        if (self.data_dir / "pg" / "PG_VERSION").exists() or server_can_reach(self.data_dir):
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:16]
        return RELOCATED_CLUSTERS / digest

    @property
    def cluster(self) -> Cluster:
        """The node's private PostgreSQL cluster."""
        home = self.pg_home
        return Cluster(
            data_dir=home / "pg",
            port=self.pg_port,
            log_file=home / "logs" / "postgres.log",
            socket_dir=home / "run" / "pg",
        )

    def url(self, service: str) -> str:
        """Base URL of a service."""
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def admin_key_file(self) -> Path:
        """Where this node's own admin key is kept (mode 600; never printed)."""
        return self.data_dir / "admin.key"

    def pid_file(self, service: str) -> Path:
        """Where the pid of a running service's supervisor is kept."""
        return self.data_dir / "run" / f"{service}.pid"

    def state_file(self, service: str) -> Path:
        """Where a service's supervisor reports its child and restarts."""
        return self.data_dir / "run" / f"{service}.state.json"

    def service_env(self) -> dict[str, str]:
        """Environment of every service: the PG* block plus where ingest keeps assets."""
        return {
            **PROCESS_ENV,
            **self.cluster.env(),
            "CSDR_INGEST_ASSETS_DIR": str(self.data_dir / "assets"),
            # Packages dropped here are ingested; archive/ and quarantine/ sit beside it.
            "CSDR_INGEST_INBOX": str(self.data_dir / "inbox"),
            # The catalog links items to their tiles (and serves the asset store as downloads).
            "CSDR_CATALOG_TILER_URL": self.url("tiler"),
            # Push links events to this node's API and tiles, and refuses webhooks at its ports.
            "CSDR_PUSH_CATALOG_URL": self.url("catalog"),
            "CSDR_PUSH_TILER_URL": self.url("tiler"),
            "CSDR_PUSH_NODE_PORTS": ",".join(str(p) for p in self.ports.values()),
            # Discovery's records link the collections' STAC documents and map layers.
            "CSDR_DISCOVERY_PUBLIC_URL": self.url("discovery"),
            "CSDR_DISCOVERY_CATALOG_URL": self.url("catalog"),
            "CSDR_DISCOVERY_TILER_URL": self.url("tiler"),
            # The feed links mirrored items to this node's API and publishes its asset downloads.
            "CSDR_FEDERATION_CATALOG_URL": self.url("catalog"),
            # A peer's push service wakes the worker here (csdr-admin peer add --push).
            "CSDR_FEDERATION_PUBLIC_URL": self.url("federation"),
            # Orders sign delivery links to its own URL and serve them from the asset store;
            # the signing key lives in a file with the data, so links survive a restart.
            "CSDR_ORDERS_PUBLIC_URL": self.url("orders"),
            "CSDR_ORDERS_CATALOG_URL": self.url("catalog"),
            "CSDR_ORDERS_ASSET_ROOTS": str(self.data_dir / "assets"),
            # The portal's browser application calls these APIs directly.
            "CSDR_PORTAL_CATALOG_URL": self.url("catalog"),
            "CSDR_PORTAL_TILER_URL": self.url("tiler"),
            "CSDR_PORTAL_PUSH_URL": self.url("push"),
            "CSDR_PORTAL_ORDERS_URL": self.url("orders"),
        }


def running_pid(node: Node, service: str) -> int | None:
    """The pid of our running service's supervisor, or None (a stale pid file is removed)."""
    path = node.pid_file(service)
    try:
        pid = int(path.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (FileNotFoundError, ValueError, ProcessLookupError):
        path.unlink(missing_ok=True)
        return None
    if str(SUPERVISOR) not in cmdline or SERVICES[service][0] not in cmdline:
        path.unlink(missing_ok=True)
        return None
    return pid


def port_in_use(port: int) -> bool:
    """True when something already listens on 127.0.0.1:port."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def supervision(node: Node, service: str) -> dict[str, object]:
    """What the service's supervisor reports: child pid, restarts, last exit (empty if none)."""
    try:
        return dict(json.loads(node.state_file(service).read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def start_service(node: Node, service: str) -> None:
    """Start one service in the background, under its supervisor, unless it runs already."""
    if running_pid(node, service):
        return
    port = node.ports[service]
    if port_in_use(port):
        raise NodeError(
            f"port {port} for the {service} is used by another program; "
            f"set {SERVICES[service][1]} to a free port"
        )
    log = node.data_dir / "logs" / f"{service}.log"
    with open(log, "a") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(SUPERVISOR),
                str(node.state_file(service)),
                "--",
                sys.executable,
                "-m",
                "uvicorn",
                SERVICES[service][0],
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",  # it would write `?api_key=` values (QGIS keys) to disk
            ],
            env={**os.environ, **node.service_env()},
            cwd=node.data_dir,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives `make up` returning; one group to stop
        )
    node.pid_file(service).write_text(str(proc.pid))


def wait_ready(node: Node, service: str) -> None:
    """Wait until the service's /readyz answers 200, or fail with its log's tail."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if running_pid(node, service) is None:
            break
        if int(str(supervision(node, service).get("restarts") or 0)) >= CRASHES_AT_START:
            stop_service(node, service)
            break
        try:
            if httpx.get(node.url(service) + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    tail = (node.data_dir / "logs" / f"{service}.log").read_text()[-2500:]
    raise NodeError(f"the {service} did not become ready; end of its log:\n{tail}")


def stop_service(node: Node, service: str) -> bool:
    """Stop one service (SIGTERM, then SIGKILL after 20 s); True if it was running."""
    pid = running_pid(node, service)
    if pid is None:
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.1)
    if Path(f"/proc/{pid}").exists():
        os.killpg(pid, signal.SIGKILL)
    node.pid_file(service).unlink(missing_ok=True)
    return True


def admin_key(node: Node) -> str:
    """The node's admin key: the one in admin.key while it is valid, else a new one for the
    `main` organisation (registered first when missing), written to admin.key with mode 600."""
    import psycopg

    from csdr_access import AccessControl, InvalidKey
    from csdr_access.admin import add_org, issue_key

    path = node.admin_key_file
    with psycopg.connect(node.cluster.conninfo(), autocommit=True) as conn:
        if path.exists():
            key = path.read_text().strip()
            try:
                if AccessControl(ttl_s=0).principal(conn, key).is_admin:
                    return key
            except InvalidKey:
                pass  # revoked, expired, or from a database since wiped: issue another
        exists = conn.execute("SELECT 1 FROM csdr.organisations WHERE name = %s", (MAIN_ORG,))
        if exists.fetchone() is None:
            add_org(conn, MAIN_ORG, "CN", "main", "make-up")
        key, prefix = issue_key(conn, MAIN_ORG, ["admin"], "make-up", label="make up")
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    print(f"issued the node's admin key {prefix} (organisation {MAIN_ORG}); it is in {path}")
    return key


def publish_demo_collection(conninfo: str) -> None:
    """Create the demo collection, or bring the title, description, keywords, license and
    providers of an existing one up to date (its extent, which ingest keeps, stays)."""
    import psycopg
    from psycopg.types.json import Jsonb

    from csdr_ingest.pgstac import lock_collection

    wanted = demo_collection()
    described = {k: wanted[k] for k in ("title", "description", "keywords", "license", "providers")}
    with psycopg.connect(conninfo) as conn, conn.transaction():
        conn.execute("SET LOCAL search_path TO pgstac, public")
        lock_collection(conn, DEMO_COLLECTION)
        updated = conn.execute(
            "UPDATE pgstac.collections SET content = content || %s WHERE id = %s",
            (Jsonb(described), DEMO_COLLECTION),
        )
        if updated.rowcount == 0:
            conn.execute("SELECT pgstac.create_collection(%s)", (Jsonb(wanted),))


def ingest_demo(node: Node, key: str) -> list[str]:
    """Generate the demo scenes and ingest, through POST /jobs, those not yet in the catalog."""
    item_ids = []
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {key}"}) as http:
        pending = {}
        for path in write_demo_scenes(node.data_dir / "demo"):
            item_ids.append(path.stem)
            item_url = f"{node.url('catalog')}/collections/{DEMO_COLLECTION}/items/{path.stem}"
            if http.get(item_url).status_code == 200:
                continue
            r = http.post(
                f"{node.url('ingest')}/jobs",
                json={"source": str(path), "collection": DEMO_COLLECTION},
            )
            r.raise_for_status()
            pending[r.json()["id"]] = path.name
        deadline = time.monotonic() + 300
        while pending and time.monotonic() < deadline:
            for job_id in list(pending):
                job = http.get(f"{node.url('ingest')}/jobs/{job_id}").json()
                if job["status"] == "failed":
                    raise NodeError(f"demo scene {pending[job_id]} failed: {job['error']}")
                if job["status"] == "succeeded":
                    print(f"  ingested {pending.pop(job_id)}")
            time.sleep(0.3)
        if pending:
            raise NodeError(f"demo ingest did not finish: {sorted(pending.values())}")
    return item_ids


def qgis_xyz_url(node: Node, item_id: str) -> str:
    """A true-colour XYZ template for one demo item, ready to paste into QGIS (the preset is in
    the path: no `|` or `#` for QGIS to mangle)."""
    return (
        f"{node.url('tiler')}/collections/{DEMO_COLLECTION}/items/{item_id}"
        "/presets/true-color/tiles/WebMercatorQuad/{z}/{x}/{y}.png"
    )


def up(node: Node) -> None:
    """Bring the whole node up, ingest the demo, print the URLs."""
    for sub in ("logs", "run", "assets", "inbox", "quarantine"):
        (node.data_dir / sub).mkdir(parents=True, exist_ok=True)
    cluster = node.cluster
    home = node.pg_home
    if home != node.data_dir:
        # Root-owned and closed to listing; the postgres user only passes through.
        for directory in (home.parent, home):
            directory.mkdir(mode=0o711, exist_ok=True)
            directory.chmod(0o711)
        node.pg_location_file.write_text(f"{home}\n")
    cluster.start()
    cluster.create_database(cluster.database)
    migrate(cluster.conninfo())
    env_file = node.data_dir / "node.env"
    env_file.write_text("".join(f"export {k}={v}\n" for k, v in node.service_env().items()))
    env_file.chmod(0o600)
    for service in SERVICES:
        start_service(node, service)
    for service in SERVICES:
        wait_ready(node, service)
    key = admin_key(node)
    publish_demo_collection(cluster.conninfo())
    items = ingest_demo(node, key)
    tiler, catalog = node.url("tiler"), node.url("catalog")
    first = f"{tiler}/collections/{DEMO_COLLECTION}/items/{items[0]}"
    print(f"""
CSDR node is up (data in {node.data_dir})
  Portal     {node.url("portal")}/   (search, view, copy to QGIS, subscribe, in the browser)
  STAC API   {catalog}/   (API docs: {catalog}/api.html)
  Tiler      {tiler}/api.html
  Ingest     {node.url("ingest")}/docs   (queue a file: POST /jobs {{"source": "/abs/path.tif"}})
  Push       {node.url("push")}/docs   (subscribe: POST /subscriptions; webhooks and Atom)
  Orders     {node.url("orders")}/docs   (POST /orders, GET /quota, /stats/usage; csdr-admin quota)
  CSW        {node.url("discovery")}/csw?service=CSW&request=GetCapabilities   (GEOSS, QGIS)
  OAI-PMH    {node.url("discovery")}/oai?verb=Identify   (GEOSS harvesting)
  Federation {node.url("federation")}/docs   (change feed for partner nodes; csdr-admin peer)
  Database   postgresql://{cluster.user}@127.0.0.1:{cluster.port}/{cluster.database}
             (its PG* variables: source {env_file}){relocated_note(node)}
  Demo items {catalog}/collections/{DEMO_COLLECTION}/items
  Admin key  in {node.admin_key_file} (keep it secret; manage keys with csdr-admin)

QGIS -> Layer -> Add Layer -> Add XYZ Layer..., paste as URL:
  {qgis_xyz_url(node, items[0])}
QGIS -> Add WMS/WMTS Layer..., new connection with this URL (layers true-color, false-color, ndvi):
  {first}/presets/WMTSCapabilities.xml
  or the whole collection as one mosaic, latest scene on top:
  {tiler}/collections/{DEMO_COLLECTION}/presets/WMTSCapabilities.xml
TileJSON: {first}/presets/true-color/WebMercatorQuad/tilejson.json
Stop with: make down""")


def relocated_note(node: Node) -> str:
    """A line for the summary when the cluster lives outside the data directory, else ''."""
    if node.pg_home == node.data_dir:
        return ""
    return (
        f"\n             (cluster files in {node.pg_home}: the postgres user cannot reach"
        f" {node.data_dir})"
    )


def down(node: Node) -> None:
    """Stop the services and the database; keep the data."""
    for service in SERVICES:
        if stop_service(node, service):
            print(f"stopped {service}")
    if node.cluster.initialised() and node.cluster.running():
        node.cluster.stop()
        print("stopped database")


def status(node: Node) -> int:
    """Print what runs; exit 0 only when everything does."""
    ok = node.cluster.running()
    print(f"database  {'running' if ok else 'stopped'}  port {node.pg_port}  {node.pg_home / 'pg'}")
    for service in SERVICES:
        pid = running_pid(node, service)
        ok = ok and pid is not None
        print(f"{service:9} {describe(node, service, pid)}  {node.url(service)}")
    return 0 if ok else 1


def describe(node: Node, service: str, supervisor_pid: int | None) -> str:
    """`running pid N (supervised; restarted 2 times, last killed by SIGSEGV at T)`."""
    if supervisor_pid is None:
        return "stopped"
    state = supervision(node, service)
    child = state.get("pid")
    text = f"running pid {child}" if child else "restarting"
    restarts = int(str(state.get("restarts") or 0))
    if restarts:
        text += (
            f" (supervised; restarted {restarts} time{'s' if restarts > 1 else ''}, "
            f"last {state.get('last_exit')} at {state.get('last_exit_at')})"
        )
    else:
        text += " (supervised)"
    return text


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("command", choices=["up", "down", "status"])
    command = parser.parse_args().command
    node = Node.from_env()
    try:
        if command == "up":
            up(node)
        elif command == "down":
            down(node)
        else:
            return status(node)
    except (NodeError, ClusterError) as exc:
        print(f"make {command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
