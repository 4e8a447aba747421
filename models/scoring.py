"""Batch scoring with a bundle: float32 matrix in the bundle's feature order -> raw scores,
calibrated percentiles and (MCDSVDD) the nearest known subclass.

Runs in eval mode under ``torch.inference_mode`` on the CPU or a CUDA device; on CUDA the batch
is staged in pinned memory and copied asynchronously. Scoring is deterministic and bitwise
independent of batch composition: BatchNorm uses its running statistics, and the network runs on
fixed-shape chunks of ``CHUNK_ROWS`` rows (zero-padded), because matrix kernels may pick
different blockings - and so round differently - for different batch sizes. The rows after the
last full chunk (all of a small batch) run in chunks of ``SMALL_CHUNK_ROWS`` instead, padded four
times less, but only where the device's kernels give bitwise the same scores for both shapes:
each scorer checks that once, on a probe of ``CHUNK_ROWS`` rows through its preprocessing and
network, when it is made (a kernel's path depends on the shapes, not on the values; both shapes
are whole multiples of the vector loops' widths, so elementwise operations have no remainder
either). This is what lets the live service, replay and offline scoring agree exactly whatever
their batching.

The Rubin tutorial's detectors (``iforest``, ``distclassipy``, :mod:`models.estimators`) run on
the CPU whatever the device: the preprocessing on the same padded rows, then the estimator
on float64 rows; both compute every row on its own, so their scores do not depend on the batch
either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from models.bundle import Bundle
from models.exceptions import DataError
from models.explain import (
    Explanation,
    Tape,
    contributions,
    isolation_credit,
    score_keeping,
    top_features,
    unsupported,
)

CHUNK_ROWS = 128  # within 6% of the fastest chunk for full batches, and pads half as much
SMALL_CHUNK_ROWS = 32  # the rest of a batch, where bitwise the same (see the docstring)


@dataclass(frozen=True)
class Scores:
    raw: NDArray[np.float32]  # higher = more anomalous
    percentile: NDArray[np.float32]  # 0-100 against the training inliers
    nearest: tuple[str | None, ...]  # nearest known subclass (MCDSVDD), else None
    nearest_index: NDArray[np.int64]  # its index among the bundle's centres (0 with one centre)
    # the top features of each row (score(..., explain=k) with k > 0 and a scorer that has one)
    explanation: Explanation | None = None


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DataError(f"device {name!r} requested but CUDA is not available")
    return device


class Scorer:
    """A bundle placed on a device, ready for batches."""

    def __init__(self, bundle: Bundle, device: torch.device | str = "auto") -> None:
        self.bundle = bundle
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.estimator = bundle.estimator
        if self.estimator is not None:
            self.device = torch.device("cpu")  # scikit-learn and DistClassiPy run on the CPU
        self.net = bundle.net.to(self.device).eval() if bundle.net is not None else None
        self.preprocessor = bundle.preprocessor.to(self.device).eval()
        calibration = bundle.manifest.calibration
        self._levels = np.asarray(calibration.levels, dtype=np.float64)
        self._quantiles = np.asarray(calibration.scores, dtype=np.float64)
        self._subclasses = tuple(bundle.manifest.centre_subclasses)
        self.small_chunks = self._small_chunks_agree()

    def _small_chunks_agree(self) -> bool:
        """Whether a probe scores bitwise the same in chunks of ``SMALL_CHUNK_ROWS`` as in one
        of ``CHUNK_ROWS`` on this device (estimators score row by row: always)."""
        if self.net is None:
            return True
        probe = torch.Generator().manual_seed(0)
        rows = torch.randn(CHUNK_ROWS, len(self.feature_names), generator=probe) * 3
        with torch.inference_mode():
            x = self.preprocessor(rows.to(self.device))
            raw, nearest = self.net.score(x)
            parts = [self.net.score(chunk) for chunk in x.split(SMALL_CHUNK_ROWS)]
            small_raw = torch.cat([r for r, _ in parts])
            small_nearest = torch.cat([n for _, n in parts])
        return bool(
            raw.cpu().numpy().tobytes() == small_raw.cpu().numpy().tobytes()
            and torch.equal(nearest, small_nearest)
        )

    @property
    def unexplained(self) -> str | None:
        """Why this scorer's scores carry no explanation (None: they do; models.explain)."""
        if self.estimator is None or self.estimator.kind == "iforest":
            return None
        return unsupported(self.estimator.kind)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.bundle.feature_names

    def _to_device(self, features: NDArray[np.float32]) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    def warm_up(self, explain: int) -> None:
        """Score a row of zeros once, explaining it when ``explain`` > 0, so that the first
        batch does not pay a process's one-time costs: ~0.3 s when explanations ran through
        torch's autograd (its start-up); ~1 ms since they run the layers backwards by hand
        (2.2 ms against 1.3 for the next call, Transient lite, 4 rows)."""
        self.score(np.zeros((1, len(self.feature_names)), np.float32), explain, 0.0)

    def percentile(self, raw: NDArray[np.float32]) -> NDArray[np.float32]:
        """Percentile of raw scores among the training inliers (0-100, clipped at the ends)."""
        out = np.interp(raw.astype(np.float64), self._quantiles, self._levels)
        return np.asarray(out, dtype=np.float32)

    def score(
        self, features: NDArray[np.float32], explain: int = 0, explain_from: float = 0.0
    ) -> Scores:
        """Score a (n, n_features) matrix; NaN marks undefined features. ``explain`` > 0: also
        the top ``explain`` features of the rows whose percentile is at least ``explain_from``
        (:mod:`models.explain`; the other rows' indices are -1; the scores are bitwise the same
        either way)."""
        if features.ndim != 2 or features.shape[1] != len(self.feature_names):
            raise DataError(
                f"{self.bundle.name} expects a matrix with {len(self.feature_names)} columns, "
                f"got shape {features.shape}"
            )
        if features.shape[0] == 0:
            empty = np.empty(0, dtype=np.float32)
            return Scores(empty, empty, (), np.empty(0, dtype=np.int64))
        n = features.shape[0]
        padded = np.zeros((self._padded_rows(n), features.shape[1]), np.float32)
        padded[:n] = features
        explanation = None
        with torch.inference_mode():
            x = self.preprocessor(self._to_device(padded))
            if self.estimator is not None:
                inputs = x.cpu().numpy()[:n].astype(np.float64)
                raw64, nearest_idx = self.estimator.score(inputs)
                raw = raw64.astype(np.float32)
                percentile = self.percentile(raw)
                if explain > 0 and self.unexplained is None:
                    rows = _chosen(percentile, explain_from)
                    explanation = self._credit_rows(x, rows, n, explain)
            elif explain <= 0:
                assert self.net is not None
                raws, nearests = zip(*(self.net.score(c) for c in self._chunks(x)), strict=True)
                raw = torch.cat(raws)[:n].float().cpu().numpy()
                nearest_idx = torch.cat(nearests)[:n].cpu().numpy()
                percentile = self.percentile(raw)
            else:
                raw, nearest_idx, percentile, explanation = self._explained(
                    x, n, explain, explain_from
                )
        if self._subclasses:
            nearest: tuple[str | None, ...] = tuple(self._subclasses[i] for i in nearest_idx)
        else:
            nearest = (None,) * raw.shape[0]
        nearest_index = nearest_idx.astype(np.int64, copy=False)
        return Scores(raw, percentile, nearest, nearest_index, explanation)

    def _padded_rows(self, n: int) -> int:
        """Rows of the chunk layout of ``n`` rows: full chunks of ``CHUNK_ROWS``, the rest in
        chunks of ``SMALL_CHUNK_ROWS`` where they agree (see the module docstring)."""
        full = n // CHUNK_ROWS * CHUNK_ROWS
        step = SMALL_CHUNK_ROWS if self.small_chunks else CHUNK_ROWS
        return full + -(-(n - full) // step) * step

    def _chunk_sizes(self, padded: int) -> list[int]:
        """The fixed chunk shapes of ``padded`` rows (a :meth:`_padded_rows`)."""
        full, rest = divmod(padded, CHUNK_ROWS)
        step = SMALL_CHUNK_ROWS if self.small_chunks else CHUNK_ROWS
        return [CHUNK_ROWS] * full + [step] * (rest // step)

    def _chunks(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The padded network inputs ``x`` (``_padded_rows`` of them) in their fixed shapes."""
        return list(torch.split(x, self._chunk_sizes(x.shape[0])))

    def _explained(
        self, x: torch.Tensor, n: int, k: int, explain_from: float
    ) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.float32], Explanation]:
        """Scores, nearest indices, percentiles and the top ``k`` features of the rows at or
        above ``explain_from`` (every row at 0) of the padded network inputs ``x``. Each chunk's
        scoring pass keeps its :class:`~models.explain.Tape`; the chosen rows' are joined and
        run backwards in the same fixed chunk shapes as a batch of their own (so a row's
        explanation does not depend on the rows beside it); the others get indices -1 and
        contributions 0. A chunk's percentiles are read as soon as it is scored, so that only
        the chosen rows' outputs outlive it (on CUDA: one synchronisation per chunk)."""
        assert self.net is not None
        net = self.net
        raws, nearests, percentiles, chosen = [], [], [], []
        start = 0
        for chunk in self._chunks(x):
            raw_t, nearest_t, tape = score_keeping(net, chunk)
            kept = max(0, min(chunk.shape[0], n - start))  # the chunk's rows that are not padding
            start += chunk.shape[0]
            raw = raw_t[:kept].float().cpu().numpy()
            percentile = self.percentile(raw)
            rows = _chosen(percentile, explain_from)
            if rows.size:
                chosen.append(tape.take(torch.from_numpy(rows).to(x.device)))
            raws.append(raw)
            nearests.append(nearest_t[:kept].cpu().numpy())
            percentiles.append(percentile)
            # the tape freed before the next chunk runs, whose tensors then reuse its blocks while
            # they are still in the cache (2-15% less CPU per row for the lite ensembles)
            del tape
        percentile = np.concatenate(percentiles)
        rows = _chosen(percentile, explain_from)
        width = min(k, x.shape[1])
        index = np.full((n, width), -1, dtype=np.int64)
        contribution = np.zeros((n, width), dtype=np.float32)
        if rows.size:
            joined = Tape.join(chosen, self._padded_rows(rows.size))
            sizes = self._chunk_sizes(self._padded_rows(rows.size))
            parts = [contributions(net, t) for t in joined.split(sizes)]
            top = top_features(torch.cat(parts)[: rows.size], k)
            index[rows], contribution[rows] = top.index, top.contribution
        nearest = np.concatenate(nearests).astype(np.int64, copy=False)
        return np.concatenate(raws), nearest, percentile, Explanation(index, contribution)

    def _credit_rows(self, x: torch.Tensor, rows: NDArray[np.intp], n: int, k: int) -> Explanation:
        """The iforest's top ``k`` features of the chosen ``rows`` of the preprocessed inputs
        ``x`` (the batch's ``n`` rows, padded); every other row's indices are -1 and
        contributions 0."""
        width = min(k, x.shape[1])
        index = np.full((n, width), -1, dtype=np.int64)
        contribution = np.zeros((n, width), dtype=np.float32)
        if rows.size:
            inputs = x[torch.from_numpy(rows)].cpu().numpy().astype(np.float64)
            model = self.estimator.model  # type: ignore[union-attr]  # iforest's
            top = top_features(torch.from_numpy(isolation_credit(model, inputs)), k)
            index[rows], contribution[rows] = top.index, top.contribution
        return Explanation(index, contribution)


def _chosen(percentile: NDArray[np.float32], explain_from: float) -> NDArray[np.intp]:
    """The rows to explain: at or above ``explain_from``, every row when it is 0 or less."""
    if explain_from <= 0.0:
        return np.arange(percentile.shape[0])
    return np.flatnonzero(percentile >= explain_from)
