"""The review page: a Flask application (extra ``review``) rendering Jinja templates
(``templates/``): per routed class, the top candidates of a scores table, a page at a time, each
with its light curve (inline SVG drawn by the template), score, percentile, nearest known
subclass, links to the brokers' pages, and the expert's verdict buttons (plain HTML forms: no
JavaScript); a verdict is stored in the :class:`~service.review.store.VerdictStore` and the page
comes back showing it. Each form carries the server's random token and a verdict without it is
refused (403): another site open in the expert's browser cannot post verdicts in their name
(cross-site request forgery), since it cannot read the token.

Imported only once the ``review`` extra is known to be there (``service.commands.review``)."""

from __future__ import annotations

import hmac
import math
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, abort, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from models.exceptions import ConfigurationError
from service import __version__
from service.review.candidates import Candidate, Points, layout
from service.review.store import VERDICTS, Verdict, VerdictStore


@dataclass(frozen=True)
class Review:
    """What one review server shows and where it stores the verdicts."""

    candidates: dict[str, list[Candidate]]  # per routed class, best first
    curves: dict[str, Points]
    store: VerdictStore
    expert: str
    page_size: int
    source: str  # the scores' description, shown in the header
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))  # in every form


def create_app(review: Review) -> Flask:
    """The Flask application serving ``review``."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    lock = threading.Lock()  # one database connection: one request at a time uses it
    classes = list(review.candidates)

    def pages(cls: str) -> int:
        return max(1, math.ceil(len(review.candidates[cls]) / review.page_size))

    @app.get("/")
    def index() -> Response:
        if not classes:
            abort(404)
        return redirect(url_for("listing", cls=classes[0]))

    @app.get("/class/<cls>")
    def listing(cls: str) -> str:
        if cls not in review.candidates:
            abort(404)
        page = request.args.get("page", default=1, type=int) or 1
        page = min(max(page, 1), pages(cls))
        start = (page - 1) * review.page_size
        shown = review.candidates[cls][start : start + review.page_size]
        with lock:
            mine = {(v.survey, v.oid): v for v in review.store.verdicts(review.expert)}
        rows = [
            {
                "c": c,
                "plot": layout(review.curves[c.oid], c.survey) if c.oid in review.curves else None,
                "verdict": mine.get((c.survey, c.oid)),
            }
            for c in shown
        ]
        return render_template(
            "listing.html",
            review=review,
            classes=[(k, len(review.candidates[k])) for k in classes],
            cls=cls,
            page=page,
            pages=pages(cls),
            rows=rows,
            verdicts=VERDICTS,
            has_curves=bool(review.curves),
            version=__version__,
        )

    @app.post("/verdict")
    def give_verdict() -> Response:
        form = request.form
        if not hmac.compare_digest(form.get("token", ""), review.token):
            abort(403, "this form is not from this review server: reload the page")
        cls, oid, survey = form.get("cls", ""), form.get("oid", ""), form.get("survey", "")
        candidate = next(
            (c for c in review.candidates.get(cls, []) if c.oid == oid and c.survey == survey),
            None,
        )
        if candidate is None:
            abort(400, f"no candidate {survey}/{oid} in class {cls}")
        tag = " ".join(form.get("tag", "").split())[:200] or None
        try:
            verdict = Verdict(
                expert=review.expert,
                survey=survey,
                oid=oid,
                verdict=form.get("verdict", ""),
                tag=tag,
                scorer=candidate.scorer or None,
                top_class=candidate.top_class,
                score=candidate.score,
                percentile=candidate.percentile,
                model_version=candidate.model_version,
                model_checksum=candidate.model_checksum,
            )
        except ConfigurationError as exc:
            abort(400, str(exc))
        with lock:
            review.store.record(verdict)
        page = form.get("page", default=1, type=int) or 1
        return redirect(url_for("listing", cls=cls, page=page, _anchor=f"c-{oid}"))

    @app.get("/verdicts")
    def given() -> str:
        with lock:
            mine = review.store.verdicts(review.expert)
        return render_template(
            "verdicts.html", review=review, verdicts=mine[::-1], version=__version__
        )

    @app.errorhandler(400)
    def bad_request(error: Any) -> tuple[str, int]:
        return render_template("error.html", error=error, version=__version__), 400

    @app.errorhandler(403)
    def forbidden(error: Any) -> tuple[str, int]:
        return render_template("error.html", error=error, version=__version__), 403

    return app
