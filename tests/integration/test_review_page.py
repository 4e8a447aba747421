"""`alert-anomaly review` in a real headless browser (Debian's chromium and chromium-driver,
driven by selenium): the page of the sample's scores loads with its light curves, pages
through, takes a verdict that lands in the store and shows; and its operator errors (port in
use, missing scores, a bad store URL) are one line with exit status 2. The light curves here
are made up (the sample ships none); the README's screenshots are of simulated ones."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from service.review.store import open_store
from tests.integration.conftest import CLI

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "models" / "data" / "ztf-sim-sample" / "objects.parquet"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sample scored by `score`, and g/r light curves (magnitudes) of every object."""
    work = tmp_path_factory.mktemp("review")
    scores = work / "scores.parquet"
    result = subprocess.run(
        [*CLI, "score", str(SAMPLE), str(scores), "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    oids = pq.read_table(scores, columns=["oid"]).column("oid").to_pylist()
    rng = np.random.default_rng(5)
    n = 16
    mjd = np.sort(rng.uniform(59000.0, 59120.0, (len(oids), n)), axis=1).ravel()
    fid = rng.integers(1, 3, len(oids) * n)
    mag = 18.5 + 0.6 * np.sin(mjd / 7.0) + 0.2 * (fid == 2) + rng.normal(0, 0.04, mjd.size)
    curves = work / "lightcurves.parquet"
    pq.write_table(
        pa.table({"oid": np.repeat(oids, n), "mjd": mjd, "fid": fid, "mag": mag,
                  "e_mag": np.full(mjd.size, 0.05)}),
        curves,
    )  # fmt: skip
    return scores, curves


class Server:
    """`alert-anomaly review` in a subprocess on a free port; from its first line the URL it
    prints (``entry``: with the access token, ``?token=...`` for a --token-file) and the server's
    address (``url``)."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [*CLI, "review", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        stdout = self.process.stdout
        threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
        try:
            first = lines.get(timeout=120)
        except queue.Empty:
            self.stop()
            pytest.fail("review printed no URL in 120 s")
        assert first.startswith("review: http://"), first
        self.entry = first.split()[1]
        self.url = self.entry.split("?token=")[0].rstrip("/")

    def stop(self) -> tuple[int, str]:
        """SIGTERM; the exit status and what it wrote to stderr (its request log and the rest;
        a few kilobytes here, so the pipe never fills)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        assert self.process.stderr is not None
        return code, self.process.stderr.read()


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run installs chromium chromium-driver")
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,900"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(10)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.slow
def test_review_page_in_a_browser(browser: Any, scored: tuple[Path, Path], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    scores, curves = scored
    db = tmp_path / "verdicts.sqlite"
    secret = tmp_path / "token"
    secret.write_text("a-team-token-kept-in-a-secret\n")
    server = Server("--scores", str(scores), "--lightcurves", str(curves), "--db", str(db),
                    "--expert", "tester", "--n", "10", "--page-size", "4",
                    "--token-file", str(secret))  # fmt: skip
    try:
        browser.get(server.url + "/")  # without the token: refused, and told what to open
        assert "open the URL that alert-anomaly review printed" in browser.page_source
        assert not browser.find_elements(By.CSS_SELECTOR, "section.candidate")
        # the URL printed, with the token of --token-file as the operator knows it (not printed)
        assert server.entry == server.url + "/?token=..."
        browser.get(server.url + "/?token=a-team-token-kept-in-a-secret")  # a cookie keeps it in
        assert "token" not in browser.current_url
        classes = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "nav.classes a")]
        assert classes == ["Periodic (10)", "Stochastic (10)", "Transient (10)"]
        assert browser.find_element(By.ID, "expert").text == "tester"
        cards = browser.find_elements(By.CSS_SELECTOR, "section.candidate")
        first_page = [c.get_attribute("data-oid") for c in cards]
        assert len(first_page) == 4
        assert browser.find_element(By.CSS_SELECTOR, ".pager .position").text == "page 1 of 3"
        card = cards[0]
        assert card.find_elements(By.CSS_SELECTOR, "svg.lightcurve .band-g circle")
        assert card.find_elements(By.CSS_SELECTOR, "svg.lightcurve .band-r circle")
        percentiles = [float(c.find_element(By.CSS_SELECTOR, ".percentile").text) for c in cards]
        assert percentiles == sorted(percentiles, reverse=True)
        links = {
            a.text: a.get_attribute("href") for a in card.find_elements(By.CSS_SELECTOR, "dd a")
        }
        assert links["ALeRCE"] == f"https://alerce.online/object/{first_page[0]}"
        assert links["Fink"] == f"https://ztf.fink-portal.org/{first_page[0]}"
        # a top candidate is explained (percentile >= model.explain_min_percentile): the card
        # lists the features that `score` wrote for it, in its order
        written = pq.read_table(scores, columns=["oid", "explanation"]).to_pylist()
        (explained,) = [r["explanation"] for r in written if r["oid"] == first_page[0]]
        assert len(explained) == 3
        items = card.find_elements(By.CSS_SELECTOR, "ol.explanation li")
        assert [i.find_element(By.CSS_SELECTOR, ".feature").text for i in items] == [
            e["feature"] for e in explained
        ]
        shown_values = [float(i.find_element(By.CSS_SELECTOR, ".contribution").text) for i in items]
        assert shown_values == pytest.approx([e["contribution"] for e in explained], rel=1e-2)

        browser.find_element(By.CSS_SELECTOR, ".pager a.next").click()
        shown(browser, ".pager .position", "page 2 of 3")
        second = browser.find_elements(By.CSS_SELECTOR, "section.candidate")
        second_page = [c.get_attribute("data-oid") for c in second]
        assert len(second_page) == 4
        assert not set(second_page) & set(first_page)

        target = second_page[1]
        card = browser.find_element(By.ID, f"c-{target}")
        assert "none yet" in card.find_element(By.CSS_SELECTOR, ".verdict-now").text
        card.find_element(By.NAME, "tag").send_keys("odd dip")
        card.find_element(By.CSS_SELECTOR, "button[value=anomaly]").click()
        # back on page 2, the card shows the stored verdict (a click returns before the form's
        # round trip: wait for the page it leads to)
        shown(browser, f"#c-{target} .verdict-now", "verdict: anomaly (odd dip)")
        assert browser.find_element(By.CSS_SELECTOR, ".pager .position").text == "page 2 of 3"
        with open_store(str(db)) as store:
            (stored,) = store.verdicts("tester")
        assert (stored.oid, stored.verdict, stored.tag) == (target, "anomaly", "odd dip")
        assert stored.model_version
        assert stored.scorer
        assert stored.score is not None

        card = browser.find_element(By.ID, f"c-{target}")
        card.find_element(By.NAME, "tag").clear()
        card.find_element(By.CSS_SELECTOR, "button[value=bogus]").click()
        shown(browser, f"#c-{target} .verdict-now", "verdict: bogus")
        browser.get(server.url + "/verdicts")
        rows = browser.find_elements(By.CSS_SELECTOR, "#verdicts td.verdict")
        assert [r.text for r in rows] == ["bogus"]
        with open_store(str(db)) as store:
            (changed,) = store.verdicts("tester")
        assert (changed.verdict, changed.tag, changed.created_at) == (
            "bogus",
            None,
            stored.created_at,
        )
    finally:
        code, log = server.stop()
        assert code == 0, log
        assert log.rstrip().endswith("review: stopped"), log[-2000:]
        assert "a-team-token-kept-in-a-secret" not in log  # the request log masks it
        assert "?token=********** " in log


def shown(browser: Any, selector: str, text: str) -> None:
    """Wait (up to a minute) until the element at `selector` shows `text`: a click that follows
    a link or submits a form returns before the next page has loaded."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def showing(driver: Any) -> bool:
        return bool(driver.find_element(By.CSS_SELECTOR, selector).text == text)

    ignored = (NoSuchElementException, StaleElementReferenceException)
    WebDriverWait(browser, 60, ignored_exceptions=ignored).until(showing)


def one_line_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, lines
    assert text in lines[0], lines


@pytest.mark.slow  # four CLI runs: ~30 s on the shared 2 cores
def test_operator_errors_are_one_line(tmp_path: Path) -> None:
    scores = tmp_path / "scores.parquet"
    pq.write_table(pa.table({"oid": ["ZTF1"], "score": [1.0], "percentile": [99.0]}), scores)
    db = str(tmp_path / "v.sqlite")

    def review(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, "review", *args], capture_output=True, text=True, timeout=120)

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        one_line_error(
            review("--scores", str(scores), "--db", db, "--port", port),
            f"cannot listen on 127.0.0.1:{port}",
        )
    one_line_error(review("--scores", str(tmp_path / "none.parquet"), "--db", db), "no scores at")
    one_line_error(review("--scores", str(scores), "--db", "mysql://h/x"), "unknown database URL")
    one_line_error(
        review("--scores", str(scores), "--db", db, "--lightcurves", str(tmp_path / "lc.parquet")),
        "no light curves at",
    )
    (tmp_path / "short").write_text("hunter2\n")
    short = "the token must be at least 16 of the characters A-Z a-z 0-9 . _ ~ -"
    for token_file, text in (("none", "No such file or directory"), ("short", short)):
        one_line_error(
            review("--scores", str(scores), "--db", db, "--token-file", str(tmp_path / token_file)),
            f"--token-file {tmp_path / token_file}: {text}",
        )
