"""The review page's two secrets (Flask's test client; the page in a real browser:
tests/integration/test_review_page.py): nothing is served without the access token of the URL
the command prints (or the session cookie it gives), and a verdict form without the page's form
token - one posted by another site open in the expert's browser - is refused and stores
nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from service.review.app import Review, create_app
from service.review.candidates import Candidate
from service.review.store import VerdictStore, open_store

CANDIDATE = Candidate(1, "ZTF21abc", "ztf", "Transient", "mcdsvdd", 2.5, 99.1, "SLSN", "v", "c")
FORM = {"oid": "ZTF21abc", "survey": "ztf", "cls": "Transient", "page": "1"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[VerdictStore]:
    with open_store(str(tmp_path / "verdicts.sqlite")) as opened:
        yield opened


def server(store: VerdictStore) -> Review:
    return Review({"Transient": [CANDIDATE]}, {}, store, "ana", 12, "scores.parquet")


def test_nothing_is_served_without_the_access_token(store: VerdictStore) -> None:
    review, other = server(store), server(store)
    assert review.access != other.access  # a token per server
    client = create_app(review).test_client()
    elsewhere = create_app(other).test_client().get(f"/?token={other.access}")
    theirs = {"Cookie": elsewhere.headers["Set-Cookie"].split(";")[0]}  # the other's session
    # no token, a wrong one, non-ASCII (refused, not a server error), the form token, or the
    # other server's session cookie: 403 everywhere, and the page says what to open
    for query, headers in (("", {}), ("?token=x", {}), ("?token=%C3%A9", {}),
                           (f"?token={review.token}", {}), ("", theirs)):  # fmt: skip
        for path in ("/", "/class/Transient", "/verdicts"):
            answer = client.get(path + query, headers=headers)
            assert answer.status_code == 403, (path, query, headers)
            assert "open the URL that alert-anomaly review printed" in answer.get_data(as_text=True)
        data = {**FORM, "token": review.token, "verdict": "anomaly"}
        assert client.post("/verdict" + query, data=data, headers=headers).status_code == 403
    assert store.verdicts("ana") == []

    # the token: a session cookie (not the token itself, kept from scripts), and the same page
    # with the other arguments but without the token
    entered = client.get(f"/class/Transient?page=1&token={quote(review.access)}&x=2")
    assert entered.status_code == 302
    assert entered.headers["Location"] == "/class/Transient?page=1&x=2"
    cookie = entered.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert review.access not in cookie
    assert client.get("/class/Transient").status_code == 200
    assert client.get("/verdicts").status_code == 200


def test_a_verdict_needs_the_token_of_the_page_it_came_from(store: VerdictStore) -> None:
    review, other = server(store), server(store)
    assert review.token != other.token  # a token per server
    client = create_app(review).test_client()
    client.get(f"/?token={review.access}")
    page = client.get("/class/Transient").get_data(as_text=True)
    (token,) = re.findall(r'name="token" value="([^"]+)"', page)
    assert token == review.token
    assert review.access not in page
    for forged in ({}, {"token": ""}, {"token": other.token}, {"token": "é"}):
        answer = client.post("/verdict", data={**FORM, **forged, "verdict": "anomaly"})
        assert answer.status_code == 403
        assert "not from this review server" in answer.get_data(as_text=True)
    assert store.verdicts("ana") == []
    answer = client.post("/verdict", data={**FORM, "token": token, "verdict": "anomaly"})
    assert answer.status_code == 302
    assert [(v.oid, v.verdict) for v in store.verdicts("ana")] == [("ZTF21abc", "anomaly")]
