"""`csdr-ingest PATH...`: ingest GeoTIFFs and CRESDA scene packages with a progress bar.

`csdr-ingest watch DIR` ingests every package dropped into DIR, like the service's inbox.
A PATH is a GeoTIFF, a package archive (.tar.gz, .tgz, .tar, .zip), a package folder, or a
directory whose GeoTIFFs, archives and package folders are all ingested.

Exits 0 when everything was published, 1 when any input failed (each reason printed), 2 when the
database cannot be reached. Connects with the libpq PG* variables, like every service.
"""

import argparse
import signal
import sys
import time
from datetime import datetime
from functools import partial
from pathlib import Path

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout
from tqdm import tqdm

from csdr_ingest.errors import IngestError
from csdr_ingest.inbox import Watcher, settle_job
from csdr_ingest.jobs import Workers
from csdr_ingest.packages import is_archive
from csdr_ingest.pipeline import ingest_path, is_package
from csdr_ingest.settings import Settings

RASTER_SUFFIXES = {".tif", ".tiff"}


def expand(paths: list[Path]) -> list[Path]:
    """Files and packages as given; other directories replaced by the GeoTIFFs, archives and
    package folders they contain, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir() and not is_package(path):
            found += sorted(
                p
                for p in path.rglob("*")
                if (p.is_file() and (p.suffix.lower() in RASTER_SUFFIXES or is_archive(p)))
                or (p.is_dir() and is_package(p))
            )
        else:
            found.append(path)
    return found


def _interrupt(signum: int, frame: object) -> None:
    """Stop `watch` on SIGTERM as on Ctrl-C."""
    raise KeyboardInterrupt


def watch(argv: list[str]) -> int:
    """`csdr-ingest watch DIR`: ingest every package dropped into DIR until interrupted."""
    parser = argparse.ArgumentParser(prog="csdr-ingest watch", description=watch.__doc__)
    parser.add_argument("directory", type=Path, metavar="DIR")
    args = parser.parse_args(argv)
    settings = Settings().model_copy(update={"inbox": args.directory.resolve()})
    try:
        pool = ConnectionPool(
            min_size=1, max_size=settings.workers + 2, open=True, kwargs={"autocommit": True}
        )
        pool.wait(timeout=5)
    except (psycopg.OperationalError, PoolTimeout) as exc:
        print(f"csdr-ingest: cannot reach the database: {exc}", file=sys.stderr)
        return 2
    workers = Workers(pool, settings, partial(settle_job, settings))
    watcher = Watcher(pool, settings, workers.notify)
    signal.signal(signal.SIGTERM, _interrupt)
    workers.start()
    watcher.start()
    print(f"csdr-ingest: watching {settings.inbox} (Ctrl-C to stop)", file=sys.stderr)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        watcher.stop()
        workers.stop()
        pool.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["watch"]:
        return watch(argv[1:])
    parser = argparse.ArgumentParser(prog="csdr-ingest", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    parser.add_argument(
        "--collection", help="target collection (default: the node's default collection)"
    )
    parser.add_argument(
        "--datetime",
        type=datetime.fromisoformat,
        help="acquisition time (ISO 8601) for files that carry none",
    )
    parser.add_argument(
        "--accept-sun-disagreement",
        action="store_true",
        help="publish packages whose stated sun elevation contradicts their acquisition time"
        " by more than 10 degrees (their items say csdr:time_contradicts_sun)",
    )
    args = parser.parse_args(argv)
    settings = Settings()
    inputs = expand(args.paths)
    if not inputs:
        print("csdr-ingest: no GeoTIFF or package found in the given paths", file=sys.stderr)
        return 1
    try:
        conn = psycopg.connect(autocommit=True)
    except psycopg.OperationalError as exc:
        print(f"csdr-ingest: cannot reach the database: {exc}", file=sys.stderr)
        return 2
    failures: list[str] = []
    with conn, tqdm(inputs, unit="file", disable=None) as bar:
        for path in bar:
            bar.set_postfix_str(path.name)
            try:
                items = ingest_path(
                    path.resolve(),
                    conn,
                    settings,
                    args.collection,
                    args.datetime,
                    args.accept_sun_disagreement,
                )
                for item in items:
                    tqdm.write(f"published {item['collection']}/{item['id']}")
            except IngestError as exc:
                failures.append(f"{path}: [{exc.code}] {exc}")
    for line in failures:
        print(f"FAILED {line}", file=sys.stderr)
    print(f"{len(inputs) - len(failures)} published, {len(failures)} failed", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
