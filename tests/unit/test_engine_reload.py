"""The engine's bundle hot reload (inline inference, a scripted source, real bundle copies): rows
routed before the swap are scored and published by the old bundles, under their version; rows
read after it by the new ones; every input gets one score. A bundle that reads other features
is refused and the old ones score on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from models.resources import bundle_dirname, bundles_dir
from models.scorers import DEFAULT_SCORERS
from service.config import load_settings
from service.core.engine import Engine
from service.core.inference import InlineInference
from service.core.offsets import OffsetTracker
from service.core.processing import AlertProcessor
from service.core.routing import Route
from service.io.sinks.files import CollectingSink
from service.ops.metrics import Metrics
from service.records import Input, Row
from tests.unit.test_engine import ScriptedSource, idle_options, inputs


def copy_bundles(out: Path, suffix: str, drop_feature: bool = False) -> None:
    for top, kind in DEFAULT_SCORERS.items():
        where = out / bundle_dirname("ztf", top, kind)
        shutil.copytree(bundles_dir() / bundle_dirname("ztf", top, kind), where)
        manifest = json.loads((where / "manifest.json").read_text())
        manifest["model_version"] += suffix
        if drop_feature and top == "Periodic":
            manifest["feature_names"][0] = "not_a_feature"
        (where / "manifest.json").write_text(json.dumps(manifest))


class SwappingSource(ScriptedSource):
    """Swaps the bundle symlink when the read ``at`` is made (before it returns)."""

    def __init__(self, reads: list[list[Input]], link: Path, target: Path, at: int) -> None:
        super().__init__(reads)
        self.link, self.target, self.at = link, target, at

    def read(self, max_inputs: int, timeout_s: float) -> list[Input] | None:
        if self.count + 1 == self.at:
            new = self.link.with_name("new")
            new.symlink_to(self.target.name)
            new.replace(self.link)
        return super().read(max_inputs, timeout_s)


def run_with_swap(tmp_path: Path, new: str) -> tuple[CollectingSink, Metrics, AlertProcessor]:
    link = tmp_path / "bundles"
    link.symlink_to("v1")
    settings = load_settings(
        None,
        {
            "model": {"inference": "inline", "bundles_dir": str(link), "reload_interval_s": 1e-9},
            "metrics_port": None,
        },
    )
    processor = AlertProcessor(settings)
    # 20 alerts, 20 more with the swap made while they are read (both open in the batcher,
    # whose deadline never comes), 20 after it
    source = SwappingSource(
        [inputs(0, 20), inputs(20, 20), inputs(40, 20)], link, tmp_path / new, 2
    )

    def restart(routes: dict[str, Route]) -> Any:
        return InlineInference[list[Row]]({top: r.scorer for top, r in routes.items()})

    inference = restart(processor.routes)
    metrics, tracker = Metrics(), OffsetTracker()
    sink = CollectingSink(tracker.written)
    Engine(
        processor,
        inference,
        source,
        sink,
        tracker,
        idle_options(flush_when_idle=False),
        metrics,
        restart_inference=restart,
    ).run()
    return sink, metrics, processor


def reloads(metrics: Metrics, outcome: str) -> float:
    return metrics.reloads.labels("bundles", outcome)._value.get()  # type: ignore[no-any-return]


def test_rows_routed_before_a_bundle_swap_are_scored_by_the_old_bundles(tmp_path: Path) -> None:
    copy_bundles(tmp_path / "v1", "+v1")
    copy_bundles(tmp_path / "v2", "+v2")
    sink, metrics, _ = run_with_swap(tmp_path, "v2")
    versions = {r["source_offset"]: r["model_version"].rsplit("+", 1)[1] for r in sink.records}
    assert len(sink.records) == len(versions) == 60  # one score per input
    assert {versions[i] for i in range(40)} == {"v1"}
    assert {versions[i] for i in range(40, 60)} == {"v2"}
    assert reloads(metrics, "reloaded") == 1


def test_a_bundle_with_other_features_is_refused_and_the_old_ones_score_on(
    tmp_path: Path,
) -> None:
    copy_bundles(tmp_path / "v1", "+v1")
    copy_bundles(tmp_path / "v2", "+v2", drop_feature=True)
    sink, metrics, processor = run_with_swap(tmp_path, "v2")
    assert len(sink.records) == 60
    assert {r["model_version"].rsplit("+", 1)[1] for r in sink.records} == {"v1"}
    assert reloads(metrics, "failed") == 1
    assert reloads(metrics, "reloaded") == 0
    assert all(r.path.parent.parent.name == "v1" for r in processor.routes.values())
