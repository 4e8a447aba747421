"""Object storage: ``s3://bucket/prefix`` URIs wherever the file-based commands take a path
(``input.paths`` of the files source, ``output.path`` of the Parquet sink), through
:mod:`pyarrow.fs`.

Credentials and region come from the environment only, as pyarrow's ``S3FileSystem`` reads them
itself (the AWS SDK's default chain: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and
``AWS_SESSION_TOKEN``, else ``AWS_PROFILE`` in ``~/.aws/credentials`` and ``~/.aws/config``, else
the EC2 instance's role; the region from ``AWS_DEFAULT_REGION``, else ``AWS_REGION``, else the
profile). pyarrow does not read an endpoint from the environment: ``AWS_ENDPOINT_URL_S3``, else
``AWS_ENDPOINT_URL`` (a non-AWS S3 such as MinIO or moto, e.g. ``http://localhost:9000``) is read
here. The secret values are registered for redaction; no error quotes them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from models.exceptions import ConfigurationError, DataError
from service.ops import redaction

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

    from models.table import AlertTable

Location = Path | str  # a local path, or a URI (str) such as s3://bucket/prefix
SCHEMES = ("s3",)
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
SECRET_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class StorageError(DataError):
    """Object storage refused or failed an operation (no bucket, access denied, unreachable)."""


def is_uri(location: object) -> bool:
    """Whether ``location`` is a URI (``scheme://...``) rather than a local path."""
    return isinstance(location, str) and "://" in location


def location(value: str | Path) -> Location:
    """A command-line or settings value as a location: a URI stays text (a ``Path`` would fold
    its ``//``), anything else is a local path."""
    if isinstance(value, Path):
        return value
    return value if is_uri(value) else Path(value)


def checked_location(value: Any) -> Any:
    """Settings validator: :func:`location`, with a URI's scheme and bucket checked."""
    if not isinstance(value, str | Path):
        return value  # pydantic names the wrong type
    found = location(value)
    if isinstance(found, str):
        scheme, _, rest = found.partition("://")
        if scheme.lower() not in SCHEMES:
            known = ", ".join(f"{s}://" for s in SCHEMES)
            raise ValueError(f"unknown URI scheme {scheme}:// (known: {known}, or a local path)")
        if "@" in rest.split("/", 1)[0]:  # user:secret@bucket: not quoted back
            raise ValueError("a URI with credentials: give them in the environment (AWS_*)")
        if not rest.split("/", 1)[0]:
            raise ValueError(f"{found} names no bucket")
    return found


def suffix(location: Location) -> str:
    """The file extension of a path or URI, lower case (``.parquet``)."""
    if isinstance(location, Path):
        return location.suffix.lower()
    return PurePosixPath(urlsplit(location).path).suffix.lower()


def join(uri: str, name: str) -> str:
    """``name`` inside the URI's prefix."""
    return f"{uri.rstrip('/')}/{name}"


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem of a URI and the path in it (``bucket/key``)."""
    scheme, _, rest = uri.partition("://")
    if scheme.lower() not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise ConfigurationError(f"unknown URI scheme {scheme}:// (known: {known})")
    aws = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
    return _s3(aws), rest.rstrip("/")


@functools.lru_cache(maxsize=4)
def _s3(aws: tuple[tuple[str, str], ...]) -> pafs.S3FileSystem:
    """The S3 filesystem of the environment (see the module docstring), made again when an
    ``AWS_*`` variable changes (``aws``: them all)."""
    from pyarrow import fs

    redaction.register(v for v in (os.environ.get(n) for n in SECRET_VARIABLES) if v)
    endpoint = next((os.environ[n] for n in ENDPOINT_VARIABLES if os.environ.get(n)), None)
    if endpoint is None:
        return fs.S3FileSystem(allow_delayed_open=True)
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            "AWS_ENDPOINT_URL(_S3) must be an http(s) URL such as http://localhost:9000"
        )
    return fs.S3FileSystem(
        endpoint_override=f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname,
        scheme=parts.scheme,
        allow_delayed_open=True,  # a small object is one PUT
    )


def storage_error(uri: str, exc: BaseException) -> StorageError:
    """One line saying what went wrong with ``uri`` (never a credential)."""
    text = str(exc)
    bucket = uri.partition("://")[2].split("/", 1)[0]
    if "NO_SUCH_BUCKET" in text or (f"Bucket '{bucket}' not found" in text):
        return StorageError(f"{uri}: bucket {bucket} does not exist")
    denied = ("ACCESS_DENIED", "INVALID_ACCESS_KEY_ID", "SIGNATURE_DOES_NOT_MATCH", "status 403")
    if any(code in text for code in denied) or "EXPIRED_TOKEN" in text:
        return StorageError(
            f"{uri}: access denied (credentials come from the environment: AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY, or AWS_PROFILE{_no_credentials()})"
        )
    if "NETWORK_CONNECTION" in text:
        return StorageError(
            f"{uri}: cannot reach the storage (AWS_ENDPOINT_URL, AWS_DEFAULT_REGION): "
            + redaction.redact(text.splitlines()[0] if text else type(exc).__name__)
        )
    detail = text.splitlines()[0] if text else type(exc).__name__
    return StorageError(f"{uri}: {redaction.redact(detail)}{_no_credentials()}")


def _no_credentials() -> str:
    """A hint when the environment names no credentials (an instance role may still hold some)."""
    if os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE"):
        return ""
    return "; AWS_ACCESS_KEY_ID is not set"


@contextmanager
def reporting(uri: str) -> Iterator[None]:
    """Storage failures inside the block as one-line :class:`StorageError`."""
    import pyarrow as pa

    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        if isinstance(exc, FileNotFoundError):
            raise StorageError(f"{uri} does not exist") from None
        raise storage_error(uri, exc) from None


def kind(uri: str) -> str:
    """``file``, ``directory`` or ``missing`` (a missing bucket is an error)."""
    from pyarrow import fs

    filesystem, path = resolve(uri)
    with reporting(uri):
        found = filesystem.get_file_info(path).type
        bucket = path.split("/", 1)[0]
        missing = fs.FileType.NotFound
        if found == missing and filesystem.get_file_info(bucket).type == missing:
            raise StorageError(f"{uri}: bucket {bucket} does not exist")
    if found == fs.FileType.Directory:
        return "directory"
    return "file" if found == fs.FileType.File else "missing"


def files(uri: str) -> list[str]:
    """The URIs of the files under a prefix, sorted; empty when there are none (a missing bucket
    is an error)."""
    from pyarrow import fs

    filesystem, path = resolve(uri)
    scheme = uri.partition("://")[0]
    selector = fs.FileSelector(path, recursive=True, allow_not_found=True)
    with reporting(uri):
        found = filesystem.get_file_info(selector)
        bucket = path.split("/", 1)[0]
        if not found and filesystem.get_file_info(bucket).type == fs.FileType.NotFound:
            raise StorageError(f"{uri}: bucket {bucket} does not exist")
    return sorted(f"{scheme}://{i.path}" for i in found if i.type == fs.FileType.File)


def read_bytes(uri: str) -> bytes:
    """The whole content of an object."""
    filesystem, path = resolve(uri)
    with reporting(uri), filesystem.open_input_stream(path) as stream:
        data: bytes = stream.read()
    return data


def read_text(uri: str) -> str | None:
    """The text of an object, or None when it does not exist."""
    from pyarrow import fs

    filesystem, path = resolve(uri)
    with reporting(uri):
        if filesystem.get_file_info(path).type != fs.FileType.File:
            return None
    return read_bytes(uri).decode()


def put(uri: str, data: bytes) -> None:
    """Write an object whole: one PUT, which readers see entirely or not at all."""
    filesystem, path = resolve(uri)
    with reporting(uri), filesystem.open_output_stream(path) as stream:
        stream.write(data)


def delete(uri: str) -> None:
    """Remove an object."""
    filesystem, path = resolve(uri)
    with reporting(uri):
        filesystem.delete_file(path)


def read_arrow(uri: str) -> pa.Table:
    """A Parquet file (or a CSV table with :func:`models.table.read_csv_table`'s types)."""
    import pyarrow.parquet as pq

    from models.table import read_csv_table

    filesystem, path = resolve(uri)
    with reporting(uri):
        if suffix(uri) == ".csv":
            with filesystem.open_input_stream(path) as stream:
                return read_csv_table(stream)
        return pq.read_table(path, filesystem=filesystem)


def write_parquet(table: pa.Table, uri: str) -> None:
    """A table as one Parquet object (visible once complete)."""
    import pyarrow.parquet as pq

    filesystem, path = resolve(uri)
    with reporting(uri):
        pq.write_table(table, path, filesystem=filesystem, compression="zstd")


def parquet_rows(uri: str) -> int:
    """The row count of a Parquet object, from its footer."""
    import pyarrow.parquet as pq

    filesystem, path = resolve(uri)
    with reporting(uri), filesystem.open_input_file(path) as handle:
        rows: int = pq.ParquetFile(handle).metadata.num_rows
    return rows


def read_alert_table(uri: str) -> AlertTable:
    """A feature table (Parquet/CSV in :mod:`models.table`'s layout) at a URI."""
    from models.table import table_from_arrow

    return table_from_arrow(read_arrow(uri), uri)
