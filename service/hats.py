"""HATS catalogs (hierarchically partitioned Parquet, the Rubin community's layout) in
``alert-anomaly batch``, through ``lsdb`` and ``hats`` (the 'hats' extra).

A HATS input (a directory or ``s3://`` prefix holding ``hats.properties``, ``properties`` or
``collection.properties``) is opened with ``lsdb``; each HEALPix partition is read on a worker by
``lsdb``'s own read task and scored by the pipeline of ``score`` (:func:`service.batch
.score_source`: the same processor, parts and marker as a Parquet partition). A row's lineage is
``file:<the partition's Parquet file>`` and its row index in it. The output gets, besides
``scores/``, ``dead-letters/`` and ``_done/``, ``hats/``: the scores with the input's ``ra``,
``dec`` and spatial index (``_healpix_29``), written by ``lsdb`` as a HATS catalog of the same
partitions, which ``lsdb.open_catalog`` opens and crossmatches.

:func:`build_catalog` makes a HATS catalog of an alert table (:mod:`models.table`), with a sky
position per object when the table has none (:func:`sky_positions`, from its ``oid``).

On S3 ``lsdb`` goes through fsspec; without ``s3fs`` installed, :func:`use_pyarrow_s3` gives
fsspec an ``s3`` filesystem over pyarrow's (:mod:`service.io.storage`: the same credentials
and endpoint from the environment).

Over 300 lines on purpose: a HATS catalog in ``batch`` - detecting, reading, scoring and writing
it, its sky positions and its S3 access - is one unit, apart from the plain Parquet partitions.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from models.exceptions import DataError
from models.extras import HATS, available, require
from models.table import table_from_arrow
from service.config import Settings
from service.io import storage
from service.io.sources.files import FILE_PREFIX, TableSource
from service.io.storage import Location

PROPERTIES = ("hats.properties", "properties", "collection.properties")
SCORES_CATALOG = "hats"  # the output's HATS catalog of the scores
HATS_COLUMNS = ("_healpix_29", "Norder", "Dir", "Npix")  # columns HATS adds to a table
FEATURE = "alert-anomaly batch on a HATS catalog"


def _lsdb(feature: str = FEATURE) -> Any:
    return require("lsdb", HATS, feature)


def sky_positions(oids: Iterable[str]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A deterministic (ra, dec) in degrees per object id, uniform on the sphere: two uniform
    numbers from the id's SHA-256, ``ra = 360 u``, ``dec = asin(2 v - 1)``."""
    ra, dec = [], []
    for oid in oids:
        digest = hashlib.sha256(str(oid).encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2.0**64
        v = int.from_bytes(digest[8:16], "big") / 2.0**64
        ra.append(360.0 * u)
        dec.append(math.degrees(math.asin(2.0 * v - 1.0)))
    return np.asarray(ra), np.asarray(dec)


def is_catalog(root: Location) -> bool:
    """Whether ``root`` is a HATS catalog or collection (holds one of :data:`PROPERTIES`)."""
    if isinstance(root, Path):
        return root.is_dir() and any((root / name).is_file() for name in PROPERTIES)
    if storage.kind(root) != "directory":
        return False
    return any(storage.kind(storage.join(root, name)) == "file" for name in PROPERTIES)


def use_pyarrow_s3() -> None:
    """Give fsspec (and so ``lsdb``/``hats``) an ``s3`` filesystem over pyarrow's when ``s3fs``
    is not installed (in this process; a worker plugin does it on workers)."""
    if available("s3fs"):
        return
    import fsspec
    from fsspec.implementations.arrow import ArrowFSWrapper

    class PyarrowS3(ArrowFSWrapper):  # type: ignore[misc]
        protocol = ("s3", "s3a")

        def __init__(self, **options: Any) -> None:
            filesystem, _ = storage.resolve("s3://bucket")
            super().__init__(filesystem, **options)

        @classmethod
        def _strip_protocol(cls, path: Any) -> Any:
            if isinstance(path, str):
                for scheme in ("s3://", "s3a://"):
                    path = path.removeprefix(scheme)
                return path.rstrip("/")
            return path

        @classmethod
        def _parent(cls, path: str) -> str:
            path = cls._strip_protocol(path)
            return path.rsplit("/", 1)[0] if "/" in path else ""

        def cat_file(
            self, path: str, start: int | None = None, end: int | None = None, **kw: Any
        ) -> bytes:
            """Bytes ``start``..``end`` read from a seekable file (fsspec's opens a stream)."""
            with self.fs.open_input_file(self._strip_protocol(path)) as fh:
                size = fh.size()
                first = 0 if start is None else (start if start >= 0 else max(0, size + start))
                last = size if end is None else min(size, end if end >= 0 else size + end)
                return bytes(fh.read_at(last - first, first)) if last > first else b""

    fsspec.register_implementation("s3", PyarrowS3, clobber=True)
    fsspec.register_implementation("s3a", PyarrowS3, clobber=True)


def _uri(root: Location) -> str:
    if isinstance(root, str):
        use_pyarrow_s3()
    return str(root)


def build_catalog(
    table: Location,
    out: Location,
    partition_rows: int = 1000,
    name: str = "objects",
    positions: Mapping[str, tuple[float, float]] | None = None,
) -> int:
    """Write the alert table ``table`` (Parquet, :mod:`models.table`'s layout) as a HATS catalog
    ``out`` with ``lsdb`` (partitions of at most ``partition_rows`` rows), adding ``ra``/``dec``
    when it has none (``positions`` by oid, else :func:`sky_positions`); return its number of
    partitions. Sizes a laptop holds: the table is read whole (for more, use hats-import)."""
    import pyarrow.parquet as pq

    lsdb = _lsdb("building a HATS catalog")
    import pandas as pd

    arrow = storage.read_arrow(table) if isinstance(table, str) else pq.read_table(table)
    if "ra" not in arrow.column_names or "dec" not in arrow.column_names:
        oids = arrow.column("oid").to_pylist()
        if positions is not None:
            ra = np.asarray([positions[o][0] for o in oids], dtype=np.float64)
            dec = np.asarray([positions[o][1] for o in oids], dtype=np.float64)
        else:
            ra, dec = sky_positions(oids)
        arrow = arrow.append_column("ra", pa.array(ra)).append_column("dec", pa.array(dec))
    frame = arrow.to_pandas(types_mapper=pd.ArrowDtype)
    catalog = lsdb.from_dataframe(
        frame,
        ra_column="ra",
        dec_column="dec",
        catalog_name=name,
        partition_rows=partition_rows,
        margin_threshold=None,  # no margin cache: scoring needs none
    )
    catalog.write_catalog(_uri(out), as_collection=False, overwrite=True, progress_bar=False)
    return int(catalog.npartitions)


def open_catalog(root: Location, columns: list[str] | None = None) -> Any:
    """The HATS catalog at ``root`` opened with ``lsdb`` (lazily); DataError when it cannot."""
    lsdb = _lsdb()
    try:
        return lsdb.open_catalog(_uri(root), columns=columns)
    except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        detail = " ".join(str(exc).split())[:300]
        raise DataError(f"{root} is not a HATS catalog lsdb reads: {detail}") from None


def pixel_name(pixel: Any) -> str:
    """A partition's name in the output: ``Norder=<order>.Npix=<pixel>``."""
    return f"Norder={pixel.order}.Npix={pixel.pixel}"


def pixel_file(catalog: Any, pixel: Any) -> str:
    """The Parquet file of a partition (the lineage of its rows)."""
    from hats.io import paths

    path = paths.pixel_catalog_file(catalog.hc_structure.catalog_base_dir, pixel)
    text = str(path)
    return text if "://" in text else str(Path(text))


def score_frame(
    frame: Any,
    name: str,
    stream: str,
    settings: Settings,
    out: Location,
    logs: tuple[Any, str] | None = None,
) -> Any:
    """Score one partition read by ``lsdb`` (a DataFrame; runs on a worker) as
    :func:`service.batch.score_partition` scores a Parquet partition, its sky columns aside."""
    from service.batch import score_source

    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    sky = ("ra", "dec", *HATS_COLUMNS)
    arrow = arrow.drop_columns([c for c in sky if c in arrow.column_names])
    table = table_from_arrow(arrow, stream)
    return score_source(
        name, lambda id_field: TableSource(stream, table, id_field), settings, out, logs
    )


def submitter(
    catalog: Any, settings: Settings, out: Location, logs: tuple[Any, str]
) -> Callable[[Any, Any], Any]:
    """How ``batch`` hands a partition (a HEALPix pixel) to the cluster: ``lsdb``'s read task
    of the pixel, then :func:`score_frame` of its frame, a future of the result."""
    from dask.delayed import delayed

    def submit(client: Any, pixel: Any) -> Any:
        frame = catalog.get_partition(pixel.order, pixel.pixel).to_delayed()[0]
        task = delayed(score_frame, pure=False)(
            frame, pixel_name(pixel), FILE_PREFIX + pixel_file(catalog, pixel), settings, out, logs
        )
        return client.compute(task)

    return submit


def _sky_scores(frame: Any, pixel: Any, out: Location, ra: str, dec: str) -> Any:
    """The scores of one partition with its rows' ``ra``, ``dec`` and spatial index (``frame``:
    the input partition's ``ra`` and ``dec``; a score's source offset is its row there)."""
    import pandas as pd

    from service.batch import SCORES, _join

    where = _join(out, SCORES, f"{pixel_name(pixel)}.parquet")
    if isinstance(where, str):
        missing = storage.kind(where) == "missing"
        scores = None if missing else storage.read_arrow(where)
    else:
        import pyarrow.parquet as pq

        scores = pq.read_table(where) if where.is_file() else None
    if scores is None:
        return _meta()
    rows = scores.column("source_offset").to_numpy()
    result = scores.to_pandas(types_mapper=pd.ArrowDtype)
    result["ra"] = frame[ra].to_numpy()[rows]
    result["dec"] = frame[dec].to_numpy()[rows]
    result.index = pd.Index(frame.index.to_numpy()[rows], name=frame.index.name)
    return result


def _meta() -> Any:
    import pandas as pd

    from service.io.codecs.scores import score_columns

    schema = score_columns().append(pa.field("ra", pa.float64()))
    schema = schema.append(pa.field("dec", pa.float64()))
    frame = schema.empty_table().to_pandas(types_mapper=pd.ArrowDtype)
    frame.index = pd.Index([], dtype="int64", name="_healpix_29")
    return frame


def write_scores_catalog(root: Location, out: Location) -> str:
    """Write the scores in ``out`` as a HATS catalog ``out/hats`` of the partitions of the input
    catalog ``root`` (on the current Dask scheduler); return its location."""
    catalog = open_catalog(root)
    info = catalog.hc_structure.catalog_info
    ra, dec = info.ra_column, info.dec_column
    sky = open_catalog(root, columns=[ra, dec])
    scored = sky.map_partitions(_sky_scores, out, ra, dec, meta=_meta(), include_pixel=True)
    target = storage.join(out, SCORES_CATALOG) if isinstance(out, str) else out / SCORES_CATALOG
    scored.write_catalog(
        _uri(target), catalog_name="scores", as_collection=False, overwrite=True, progress_bar=False
    )
    return str(target)


def _worker_plugin() -> Any:
    """A Dask worker plugin doing :func:`use_pyarrow_s3` in every worker, later ones too."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class S3OnWorkers(WorkerPlugin):
        name = "alert-anomaly-pyarrow-s3"

        def setup(self, worker: Any) -> None:
            from service.hats import use_pyarrow_s3

            use_pyarrow_s3()

    return S3OnWorkers()


def run(args: Any, settings: Settings, run_parts: Callable[..., list[Any]]) -> int:
    """``alert-anomaly batch`` of the HATS catalog ``args.input``: its partitions not done scored
    on the cluster (``run_parts(todo, submit, finish)``: the command's loop), then ``out/hats``
    written."""
    import time
    from types import SimpleNamespace

    from service import batch
    from service.commands.cluster import log_settings, report

    catalog = open_catalog(args.input)
    pixels = catalog.get_healpix_pixels()
    parts = [SimpleNamespace(name=pixel_name(p), pixel=p) for p in pixels]
    model = settings.model.model_dump(mode="json", exclude={"device", "cpu_threads", "inference"})
    batch.claim(args.out, {"input": str(args.input), "hats": True, "model": model})
    finished = batch.done(args.out)
    todo = [p for p in parts if p.name not in finished]
    rows = catalog.hc_structure.catalog_info.total_rows
    print(
        f"HATS catalog {args.input}: {len(parts)} partitions ({rows} rows), "
        f"{len(parts) - len(todo)} done, {len(todo)} to score",
        flush=True,
    )
    score = submitter(catalog, settings, args.out, log_settings(args))
    written: list[str] = []

    def finish(client: Any) -> None:
        print("  writing the scores' HATS catalog...", flush=True)
        with client.as_current():
            written.append(write_scores_catalog(args.input, args.out))

    def start(client: Any, part: Any) -> Any:
        if not started:
            if storage.is_uri(args.input) or storage.is_uri(args.out):
                client.register_plugin(_worker_plugin())
            started.append(True)
        return score(client, part.pixel)

    started: list[bool] = []
    begun = time.monotonic()
    results = run_parts(todo, start, finish) if todo else []
    if not todo:  # nothing to score: the catalog is (re)written on no cluster
        written.append(write_scores_catalog(args.input, args.out))
    report(results, begun, args.out, f" (HATS catalog {written[0]})")
    return 0
