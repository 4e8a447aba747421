"""The review page: a Flask application (extra ``review``) rendering Jinja templates
(``templates/``): per routed class, the top candidates of a scores table, a page at a time, each
with its light curve (inline SVG drawn by the template), score, percentile, nearest known
subclass, links to the brokers' pages, and the expert's verdict buttons (plain HTML forms: no
JavaScript); a verdict is stored in the :class:`~service.review.store.VerdictStore` and the page
comes back showing it.

Two random secrets guard it. The access token (``?token=`` of the URL the command prints, as
Jupyter's): a browser that shows it gets a session cookie and is redirected to the same page
without it; any request with neither the cookie nor the token is refused (403), so reaching the
port is not enough to see the candidates or give verdicts. The form token, in every form: a verdict
without it is refused (403), so another site open in the expert's browser cannot post verdicts in
their name (cross-site request forgery), since it cannot read the page.

Imported only once the ``review`` extra is known to be there (``service.commands.review``)."""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Flask, abort, redirect, render_template, request, url_for
from werkzeug.serving import WSGIRequestHandler
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
    access: str = field(default_factory=lambda: secrets.token_urlsafe(32))  # the URL's ?token=
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))  # in every form


MIN_TOKEN = 16  # characters of a --token-file
ACCESS_HELP = (
    "this review server needs its access token: open the URL that alert-anomaly review printed "
    "when it started (it ends in ?token=...)"
)


def read_access_token(path: Path | None) -> str | None:
    """The access token of ``--token-file`` (None: the server draws one), or one line saying
    why it cannot be used."""
    if path is None:
        return None
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        detail = getattr(exc, "strerror", None) or str(exc)
        raise ConfigurationError(f"--token-file {path}: {detail}") from None
    if not re.fullmatch(rf"[A-Za-z0-9._~-]{{{MIN_TOKEN},}}", token):
        raise ConfigurationError(
            f"--token-file {path}: the token must be at least {MIN_TOKEN} of the characters "
            "A-Z a-z 0-9 . _ ~ - "
            "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return token


class RequestLog(WSGIRequestHandler):
    """Werkzeug's line per request without its terminal colours (the log is JSON or plain
    text; the access token in a query is masked by the log's redaction)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        line = self.requestline.encode("unicode_escape").decode("ascii")
        self.log("info", '"%s" %s %s', line, code, size)


def _same(given: str, secret: str) -> bool:
    """``given == secret`` in constant time (any text: compare_digest refuses non-ASCII str)."""
    return hmac.compare_digest(given.encode(), secret.encode())


def _session(access: str) -> tuple[str, str]:
    """The session cookie's name and value for the access token ``access``: the name differs
    between servers (cookies are not kept apart by port), the value is not the token itself."""
    name = "review-" + hashlib.sha256(access.encode()).hexdigest()[:12]
    value = hmac.new(access.encode(), b"alert-anomaly review session", "sha256").hexdigest()
    return name, value


def create_app(review: Review) -> Flask:
    """The Flask application serving ``review``."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    lock = threading.Lock()  # one database connection: one request at a time uses it
    classes = list(review.candidates)
    cookie, session = _session(review.access)

    @app.before_request
    def authenticate() -> Response | None:
        given = request.args.get("token")
        if given is None:
            if _same(request.cookies.get(cookie, ""), session):
                return None
            abort(403, ACCESS_HELP)
        if not _same(given, review.access):
            abort(403, "wrong access token: " + ACCESS_HELP)
        rest = request.args.to_dict(flat=False)
        del rest["token"]  # out of the address bar, the history and the Referer
        query = f"?{urlencode(rest, doseq=True)}" if rest else ""
        response = redirect(request.script_root + request.path + query)
        response.set_cookie(cookie, session, httponly=True, samesite="Lax")
        return response

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
        if not _same(form.get("token", ""), review.token):
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
