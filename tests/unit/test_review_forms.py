"""The review page's verdict forms carry the server's token, and a verdict without it - a form
posted by another site open in the expert's browser - is refused and stores nothing (Flask's
test client; the page in a real browser: tests/integration/test_review_page.py)."""

from __future__ import annotations

import re
from pathlib import Path

from service.review.app import Review, create_app
from service.review.candidates import Candidate
from service.review.store import open_store


def test_a_verdict_needs_the_token_of_the_page_it_came_from(tmp_path: Path) -> None:
    candidate = Candidate(1, "ZTF21abc", "ztf", "Transient", "mcdsvdd", 2.5, 99.1, "SLSN", "v", "c")
    store = open_store(str(tmp_path / "verdicts.sqlite"))
    review = Review({"Transient": [candidate]}, {}, store, "ana", 12, "scores.parquet")
    other = Review({"Transient": [candidate]}, {}, store, "ana", 12, "scores.parquet")
    assert review.token != other.token  # a token per server
    client = create_app(review).test_client()
    page = client.get("/class/Transient").get_data(as_text=True)
    (token,) = re.findall(r'name="token" value="([^"]+)"', page)
    assert token == review.token
    form = {"oid": "ZTF21abc", "survey": "ztf", "cls": "Transient", "page": "1"}
    for forged in ({}, {"token": ""}, {"token": other.token}):
        answer = client.post("/verdict", data={**form, **forged, "verdict": "anomaly"})
        assert answer.status_code == 403
        assert "not from this review server" in answer.get_data(as_text=True)
    assert store.verdicts("ana") == []
    answer = client.post("/verdict", data={**form, "token": token, "verdict": "anomaly"})
    assert answer.status_code == 302
    assert [(v.oid, v.verdict) for v in store.verdicts("ana")] == [("ZTF21abc", "anomaly")]
    store.close()
