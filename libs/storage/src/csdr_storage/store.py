"""The asset store: where the COGs, thumbnails and metadata copies of items live, a local
directory (the default) or a prefix in an S3 bucket (`s3://bucket/prefix`, reached with the
standard AWS variables AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION).

Files are named by key, `<collection>/<item>/<file>`; an asset's href is the file's absolute
path or the object's `s3://` URL, which GDAL reads through `/vsis3/` once `gdal_options()` are
set. Ingest writes each version of an item under new names and never overwrites one, so an href
of the store always names the same bytes.
"""

from __future__ import annotations

import functools
import mimetypes
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

S3_SCHEME = "s3://"
# The most keys one DeleteObjects request takes (S3 API reference, DeleteObjects).
DELETE_BATCH = 1000


class AssetStore(Protocol):
    """What ingest, the catalog and the tiler need of a store."""

    url: str
    """The href of the store's root, ending in `/`: every href of the store starts with it."""

    def href(self, key: str) -> str:
        """The href of the file at `key`."""
        ...

    def key_of(self, href: str) -> str | None:
        """The key of `href` when it names a file of this store, else None."""
        ...

    def local_dir(self, folder: str) -> Path | None:
        """Where files of `folder` are written in place (None: staged elsewhere, then put)."""
        ...

    def put_file(self, path: Path, key: str) -> None:
        """Store the file at `path` as `key` (a file of `local_dir` is already in place)."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store `data` as `key`."""
        ...

    def get_bytes(self, key: str) -> bytes | None:
        """The bytes stored as `key`, or None when there are none."""
        ...

    def keys(self, folder: str) -> list[str]:
        """The keys of the files directly in `folder`."""
        ...

    def keys_under(self, folder: str) -> list[str]:
        """The keys of the files under `folder`, at any depth."""
        ...

    def delete(self, keys: Iterable[str]) -> None:
        """Remove the files at `keys` (missing ones are not an error)."""
        ...

    def delete_folder(self, folder: str) -> None:
        """Remove every file under `folder`, at any depth."""
        ...


def item_folder(collection: str, item_id: str) -> str:
    """The folder of an item's files: `<collection>/<item>`."""
    return f"{collection}/{item_id}"


def in_item_folder(key: str, collection: str, item_id: str) -> bool:
    """Whether `key` names a file directly in the item's folder: the only files ingest writes
    for it, and the only ones removed with it."""
    return key.rpartition("/")[0] == item_folder(collection, item_id)


def _safe(key: str) -> str:
    if not key or key.startswith("/") or ".." in key.split("/"):
        raise ValueError(f"not a key of the asset store: {key!r}")
    return key


class LocalStore:
    """The store as a directory of this machine."""

    def __init__(self, root: Path) -> None:
        """Files live under `root`."""
        self.root = Path(os.path.realpath(root))
        self.url = os.path.join(str(self.root), "")

    def href(self, key: str) -> str:
        """The file's absolute path."""
        return str(self.root / _safe(key))

    def key_of(self, href: str) -> str | None:
        """The path relative to the root, for a path under it."""
        if not href.startswith(self.url) or "/../" in href:
            return None
        return href[len(self.url) :] or None

    def local_dir(self, folder: str) -> Path | None:
        """The folder itself: files are written in place."""
        return self.root / _safe(folder)

    def put_file(self, path: Path, key: str) -> None:
        """Move the file to `key`, unless it is there already."""
        target = self.root / _safe(key)
        if path.resolve() != target.resolve():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write the file."""
        target = self.root / _safe(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def get_bytes(self, key: str) -> bytes | None:
        """Read the file."""
        try:
            return (self.root / _safe(key)).read_bytes()
        except OSError:
            return None

    def keys(self, folder: str) -> list[str]:
        """The files in the folder (temporaries starting with `.` included)."""
        directory = self.root / _safe(folder)
        if not directory.is_dir():
            return []
        return sorted(f"{folder}/{p.name}" for p in directory.iterdir() if p.is_file())

    def keys_under(self, folder: str) -> list[str]:
        """The files under the folder, at any depth."""
        directory = self.root / _safe(folder)
        found = directory.rglob("*") if directory.is_dir() else ()
        return sorted(str(p.relative_to(self.root)) for p in found if p.is_file())

    def delete(self, keys: Iterable[str]) -> None:
        """Unlink the files, then their folders once empty."""
        folders: set[Path] = set()
        for key in keys:
            path = self.root / _safe(key)
            path.unlink(missing_ok=True)
            folders.add(path.parent)
        for folder in folders:
            if folder != self.root and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    def delete_folder(self, folder: str) -> None:
        """Remove the directory and everything in it."""
        shutil.rmtree(self.root / _safe(folder), ignore_errors=True)


class S3Store:
    """The store as a prefix of an S3 bucket, through boto3."""

    def __init__(
        self, bucket: str, prefix: str, client: Any, env: Mapping[str, str] | None = None
    ) -> None:
        """Objects live in `bucket` under `prefix` (no leading or trailing `/`); `client` was
        made from the AWS variables `env` (default: the process's)."""
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.url = f"{S3_SCHEME}{bucket}/{self.prefix + '/' if self.prefix else ''}"
        self.env = env
        self._signers: dict[str, Any] = {}

    def _object(self, key: str) -> str:
        return f"{self.prefix}/{_safe(key)}" if self.prefix else _safe(key)

    def href(self, key: str) -> str:
        """The object's `s3://bucket/prefix/key` URL."""
        return self.url + _safe(key)

    def key_of(self, href: str) -> str | None:
        """The key of an `s3://` URL under the store's prefix."""
        if not href.startswith(self.url) or ".." in href.split("/"):
            return None
        return href[len(self.url) :] or None

    def local_dir(self, folder: str) -> Path | None:
        """None: files are written on local disk first, then uploaded."""
        return None

    def put_file(self, path: Path, key: str) -> None:
        """Upload the file (multipart when large, boto3's transfer manager)."""
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self.client.upload_file(
            str(path), self.bucket, self._object(key), ExtraArgs={"ContentType": media_type}
        )

    def put_bytes(self, key: str, data: bytes) -> None:
        """Upload `data` as one object."""
        self.client.put_object(Bucket=self.bucket, Key=self._object(key), Body=data)

    def get_bytes(self, key: str) -> bytes | None:
        """Download the object, or None when there is none."""
        try:
            found = self.client.get_object(Bucket=self.bucket, Key=self._object(key))
        except self.client.exceptions.NoSuchKey:
            return None
        return bytes(found["Body"].read())

    def keys(self, folder: str) -> list[str]:
        """The objects directly under `folder/`."""
        start = self._object(folder) + "/"
        found: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=start, Delimiter="/"
        )
        for page in pages:
            found += [f"{folder}/{o['Key'][len(start) :]}" for o in page.get("Contents", [])]
        return sorted(found)

    def delete(self, keys: Iterable[str]) -> None:
        """Delete the objects, a thousand per request."""
        names = [self._object(k) for k in keys]
        for i in range(0, len(names), DELETE_BATCH):
            batch = [{"Key": n} for n in names[i : i + DELETE_BATCH]]
            done = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
            )
            if done.get("Errors"):
                first = done["Errors"][0]
                raise OSError(f"S3 refused to delete {first['Key']}: {first.get('Message')}")

    def keys_under(self, folder: str) -> list[str]:
        """The objects under `folder/`, at any depth."""
        start = self._object(folder) + "/"
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=start
        )
        return sorted(
            f"{folder}/{o['Key'][len(start) :]}" for p in pages for o in p.get("Contents", [])
        )

    def delete_folder(self, folder: str) -> None:
        """Delete every object under `folder/`."""
        self.delete(self.keys_under(folder))

    def presigned_url(self, key: str, ttl_s: int, endpoint: str | None = None) -> str:
        """A URL anyone may GET the object with for `ttl_s` seconds (SigV4 query signing), on
        `endpoint` when clients reach the store there rather than at AWS_ENDPOINT_URL (the
        signature covers the host)."""
        client = self.client
        if endpoint:
            if endpoint not in self._signers:
                env = {**(self.env or os.environ), "AWS_ENDPOINT_URL_S3": endpoint}
                self._signers[endpoint] = s3_client(env)
            client = self._signers[endpoint]
        return str(
            client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._object(key)},
                ExpiresIn=ttl_s,
            )
        )


def endpoint_url(env: Mapping[str, str] | None = None) -> str | None:
    """The S3 endpoint the AWS variables name (None: AWS itself)."""
    env = os.environ if env is None else env
    return env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None


def s3_client(env: Mapping[str, str] | None = None) -> Any:
    """A boto3 S3 client from the AWS variables; path-style addressing on a custom endpoint
    (MinIO, Ceph, moto), as GDAL's AWS_VIRTUAL_HOSTING=FALSE in `gdal_options`."""
    import boto3
    from botocore.config import Config

    env = os.environ if env is None else env
    endpoint = endpoint_url(env)
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    config = Config(
        s3={"addressing_style": "path"} if endpoint else {},
        signature_version="s3v4",
        retries={"max_attempts": 3, "mode": "standard"},
    )
    # Keys given explicitly only when `env` names them: else boto3's own chain (variables,
    # profiles, instance or pod roles).
    session = boto3.session.Session(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=env.get("AWS_SESSION_TOKEN"),
    )
    return session.client("s3", endpoint_url=endpoint, region_name=region, config=config)


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix` as (bucket, prefix); ValueError naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"{url!r}: an asset store URL reads s3://bucket/prefix")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: an asset store URL has no query or fragment")
    return parts.netloc, parts.path.strip("/")


def open_bucket(url: str) -> S3Store:
    """The bucket prefix `url` names (`s3://bucket/prefix`) on the endpoint the AWS variables
    name, one per process and endpoint (its boto3 client is made once, and is thread-safe)."""
    return _bucket(url, endpoint_url())


@functools.cache
def _bucket(url: str, endpoint: str | None) -> S3Store:
    bucket, prefix = parse_s3_url(url)
    return S3Store(bucket, prefix, s3_client())


def open_store(url: str | None, directory: Path) -> LocalStore | S3Store:
    """The bucket prefix `url` names, else the local `directory`."""
    return open_bucket(url) if url else LocalStore(directory)


def remove_hrefs(hrefs: Iterable[str]) -> None:
    """Remove the files (absolute paths) and objects (`s3://bucket/key` URLs, on the endpoint
    the AWS variables name) that `hrefs` name; missing ones are not an error."""
    objects: dict[str, list[str]] = {}
    for href in hrefs:
        if href.startswith(S3_SCHEME):
            bucket, key = parse_s3_url(href)
            objects.setdefault(bucket, []).append(key)
        else:
            Path(href).unlink(missing_ok=True)
    for bucket, keys in objects.items():
        open_bucket(f"{S3_SCHEME}{bucket}").delete(keys)


def gdal_options(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """GDAL configuration for `/vsis3/` on the endpoint the AWS variables name: GDAL reads the
    credentials and AWS_REGION itself but not AWS_ENDPOINT_URL (its own names:
    https://gdal.org/en/stable/user/virtual_file_systems.html#vsis3-aws-s3-files)."""
    endpoint = endpoint_url(env)
    if endpoint is None:
        return {}
    parts = urlsplit(endpoint)
    return {
        "AWS_S3_ENDPOINT": parts.netloc + parts.path.rstrip("/"),
        "AWS_HTTPS": "YES" if parts.scheme == "https" else "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
    }
