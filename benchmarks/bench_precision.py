"""Reduced-precision inference, weighed against the bounds a scoring mode must keep.

A mode may be offered as a setting only if, on the evaluation's test sets of the committed
sample, every shipped bundle's scores keep a Spearman rank correlation >= 0.999 with float32 and
every subclass's AUROC moves by at most 0.002. For each bundle and mode this prints both, and the
speed-up of the networks on 4096-row batches (one thread), then whether the mode qualifies.

Modes: ``bfloat16`` (every Linear layer in bfloat16, BatchNorm and scores in float32),
``bfloat16-inner`` (the first encoder and last decoder layers kept in float32) and ``int8``
(PyTorch dynamic quantisation of the Linear layers).

    python benchmarks/bench_precision.py [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import cores, machine
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score
from torch import nn

from models.bundle import Bundle, load_bundle
from models.evaluation.config import EvaluationConfig, file_digest
from models.evaluation.protocol import _split
from models.networks import AnomalyNet
from models.resources import bundles_dir, sample_dir
from models.scoring import Scorer
from models.table import read_table
from models.taxonomy import SUBCLASSES

MIN_SPEARMAN = 0.999
MAX_AUROC_SHIFT = 0.002
SPEED_ROWS = 4096


class _InDtype(nn.Module):
    """A layer run in the dtype of its weights, its output returned as float32."""

    def __init__(self, layer: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.layer = layer.to(dtype)
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layer(x.to(self.dtype))
        return out.float()


def _bfloat16(net: AnomalyNet, keep_outer: bool) -> AnomalyNet:
    out = copy.deepcopy(net)
    stacks = [out.encoder.net] + ([out.decoder.net] if out.decoder is not None else [])
    for s, stack in enumerate(stacks):
        linear = [i for i, m in enumerate(stack) if isinstance(m, nn.Linear)]
        for j, i in enumerate(linear):
            outer = (s == 0 and j == 0) or (s == 1 and j == len(linear) - 1)
            if not (keep_outer and outer):
                stack[i] = _InDtype(stack[i], torch.bfloat16)
    return out


def _int8(net: AnomalyNet) -> AnomalyNet:
    with warnings.catch_warnings():  # deprecated in favour of torchao, still the stock way
        warnings.simplefilter("ignore", DeprecationWarning)
        quantized: AnomalyNet = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(net), {nn.Linear}, dtype=torch.qint8
        )
    return quantized


MODES: dict[str, Callable[[AnomalyNet], AnomalyNet]] = {
    "bfloat16": lambda net: _bfloat16(net, keep_outer=False),
    "bfloat16-inner": lambda net: _bfloat16(net, keep_outer=True),
    "int8": _int8,
}


def _seconds(scorer: Scorer, x: np.ndarray, repeats: int = 5) -> float:
    scorer.score(x)  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        scorer.score(x)
    return (time.perf_counter() - started) / repeats


def weigh(bundle: Bundle, x: np.ndarray, subclasses: np.ndarray) -> dict[str, dict[str, float]]:
    """Spearman, largest AUROC shift and speed-up of every mode for one bundle."""
    exact_scorer = Scorer(bundle, "cpu")
    exact = exact_scorer.score(x).raw
    speed_x = x[np.random.default_rng(0).integers(0, len(x), SPEED_ROWS)]
    exact_s = _seconds(exact_scorer, speed_x)
    results = {}
    for mode, convert in MODES.items():
        scorer = Scorer(bundle, "cpu")
        scorer.net = convert(bundle.net).eval()
        fast = scorer.score(x).raw
        shifts = [
            abs(roc_auc_score(subclasses == c, exact) - roc_auc_score(subclasses == c, fast))
            for c in SUBCLASSES[bundle.manifest.top_class]
            if 0 < (subclasses == c).sum() < len(subclasses)
        ]
        results[mode] = {
            "spearman": float(spearmanr(exact, fast).statistic),
            "max_auroc_shift": float(max(shifts)),
            "speedup": exact_s / _seconds(scorer, speed_x),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    print(machine(), f"({cores()} cores); avx512_bf16: {'avx512_bf16' in flags}")
    data = sample_dir() / "objects.parquet"
    _, test = _split(EvaluationConfig(str(data), file_digest(data)), read_table(data))
    table: dict[str, Any] = {}
    print(f"{'bundle':22s} {'mode':15s} {'Spearman':>9s} {'max dAUROC':>10s} {'speed-up':>9s}")
    for path in sorted((bundles_dir() / "ztf").iterdir()):
        bundle = load_bundle(path)
        if not isinstance(bundle.net, AnomalyNet):  # the modes convert one network's layers
            continue
        rows = test.take(test.top_class == bundle.manifest.top_class)
        x = rows.columns(bundle.feature_names).astype(np.float32)
        table[path.name] = weigh(bundle, x, rows.subclass)
        for mode, r in table[path.name].items():
            print(
                f"{path.name:22s} {mode:15s} {r['spearman']:9.5f} {r['max_auroc_shift']:10.4f} "
                f"{r['speedup']:8.2f}x",
                flush=True,
            )
    print("\nmode            qualifies  (Spearman >= 0.999 and every AUROC within 0.002)")
    verdicts = {}
    for mode in MODES:
        ok = all(
            r[mode]["spearman"] >= MIN_SPEARMAN and r[mode]["max_auroc_shift"] <= MAX_AUROC_SHIFT
            for r in table.values()
        )
        verdicts[mode] = ok
        print(f"{mode:15s} {'yes' if ok else 'no'}")
    if args.json:
        args.json.write_text(json.dumps({"bundles": table, "qualifies": verdicts}, indent=1))


if __name__ == "__main__":
    main()
