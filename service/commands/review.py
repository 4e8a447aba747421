"""``alert-anomaly review``: the review page of a scores table, whose verdicts go to a verdict
store; ``alert-anomaly verdicts``: the stored verdicts exported to a file or published to a
Kafka topic."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import ipaddress
import signal
import socket
import sys
from pathlib import Path
from types import FrameType

from service.commands.args import add_setting_flags, examples, positive_int, settings_of

DEFAULT_DB = "verdicts.sqlite"
DB_HELP = (
    "verdict store: a file or sqlite:///PATH (SQLite, the default: "
    f"{DEFAULT_DB}), or postgresql://USER@HOST:PORT/DB"
)


def _default_expert() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "expert"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "review",
        epilog=examples(
            "alert-anomaly review --scores scores.parquet --lightcurves lc.parquet",
            "alert-anomaly review --scores night/ --db postgresql://me@dbhost:5432/verdicts "
            "--expert me --host 0.0.0.0 --port 8050 --token-file review.token",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="review the top candidates on a web page and store verdicts",
        description=(
            "Serve a web page listing, per routed class, the top candidates of a scores table "
            "(the Parquet or CSV of `score` or `replay --out`) by percentile: their light "
            "curves (--lightcurves), score, percentile, nearest known subclass, links to "
            "ALeRCE and Fink, and buttons for the expert's verdict (anomaly / not / bogus, "
            "with an optional tag), stored per expert in the verdict store (--db). Needs the "
            "'review' extra. Stops on Ctrl-C."
        ),
    )
    p.add_argument("--scores", type=Path, required=True, help="scores (Parquet or CSV)")
    p.add_argument(
        "--lightcurves",
        type=Path,
        help="light curves: ZTF or LSST Parquet of `simulate --lightcurves`, or Rubin alerts "
        "(Avro)",
    )
    p.add_argument("--db", default=DEFAULT_DB, help=DB_HELP)
    p.add_argument("--expert", default=None, help="who gives the verdicts (default: the user)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default local)")
    p.add_argument("--port", type=int, default=8050, help="port (default 8050; 0: any free)")
    p.add_argument(
        "--token-file",
        type=Path,
        help="the access token, read from this file (default: a new random one each start); "
        "the URL printed on start carries it",
    )
    p.add_argument("--n", type=positive_int, default=100, help="candidates per class (100)")
    p.add_argument("--page-size", type=positive_int, default=12, help="candidates per page")
    p.add_argument("--survey", default="ztf", help="survey of rows without one (default ztf)")
    p.set_defaults(handler=run_review)

    v = subparsers.add_parser(
        "verdicts",
        epilog=examples(
            "alert-anomaly verdicts export verdicts.csv",
            "alert-anomaly verdicts publish --bootstrap-servers localhost:9092 "
            "--verdict-topic anomaly-verdicts --db postgresql://me@dbhost/verdicts",
            "alert-anomaly verdicts retrain rerankers/me --expert me --scores scores.parquet "
            "--features objects.parquet",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="export, publish or learn from the experts' stored verdicts",
        description=(
            "export OUT: the stored verdicts to a file (.csv, .jsonl or .parquet). publish: "
            "to a Kafka topic, one JSON message per verdict keyed expert/survey/oid (the "
            "connection from the kafka.* settings, as for run). --expert: one expert's only. "
            "retrain OUT: the expert's active re-ranker (an AADForest of coniferest on the "
            "models' features and percentile, fitted to the expert's verdicts on the objects "
            "of --scores found in --features) written to the directory OUT; needs the "
            "'rerank' extra."
        ),
    )
    v.add_argument("action", choices=("export", "publish", "retrain"))
    v.add_argument(
        "out", nargs="?", type=Path, help="export: the file to write; retrain: the directory"
    )
    v.add_argument("--db", default=DEFAULT_DB, help=DB_HELP)
    v.add_argument("--expert", help="only this expert's verdicts")
    v.add_argument(
        "--verdict-topic", default="anomaly-verdicts", help="publish: topic (anomaly-verdicts)"
    )
    v.add_argument("--scores", type=Path, help="retrain: the scores table (score, replay)")
    v.add_argument("--features", type=Path, help="retrain: the feature table that was scored")
    v.add_argument("--survey", default="ztf", help="retrain: survey of the verdicts (ztf)")
    v.add_argument("--seed", type=int, default=0, help="retrain: the forest's seed (0)")
    add_setting_flags(v, "--bootstrap-servers")
    v.set_defaults(handler=run_verdicts)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0: any free port), or one line saying why not."""
    from models.exceptions import ConfigurationError

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        detail = exc.strerror or str(exc)
        raise ConfigurationError(f"cannot listen on {host}:{port}: {detail}") from None


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_review(args: argparse.Namespace) -> int:
    from models.exceptions import ConfigurationError
    from models.extras import REVIEW, require

    require("flask", REVIEW, "alert-anomaly review")  # the extra named before anything else
    from werkzeug.serving import make_server

    from service.ops import redaction
    from service.review.app import RequestLog, Review, create_app, read_access_token
    from service.review.candidates import rank, read_lightcurves, read_scores
    from service.review.store import open_store

    expert = (args.expert or _default_expert()).strip()
    if not expert:
        raise ConfigurationError("--expert is empty")
    access = read_access_token(args.token_file)
    ranked = {
        cls: found[: args.n] for cls, found in rank(read_scores(args.scores), args.survey).items()
    }
    curves = read_lightcurves(args.lightcurves) if args.lightcurves else {}
    store = open_store(args.db)
    try:
        review = Review(ranked, curves, store, expert, args.page_size, str(args.scores))
        if access is not None:
            review = dataclasses.replace(review, access=access)
        redaction.register([review.access])  # the request log quotes it once
        app = create_app(review)
        listening = _listen(args.host, args.port)
        host, port = listening.getsockname()[:2]
        url_host = f"[{host}]" if ":" in host else host
        try:
            server = make_server(
                args.host, args.port, app, threaded=False, request_handler=RequestLog,
                fd=listening.fileno(),
            )  # fmt: skip
        finally:
            listening.close()  # the server holds its own duplicate
        shown = sum(len(c) for c in ranked.values())
        shown_token = review.access if access is None else "..."  # theirs: not in the logs
        print(
            f"review: http://{url_host}:{port}/?token={shown_token} ({shown} candidates in "
            f"{len(ranked)} classes; "
            f"verdicts of {expert} in {store.description}); Ctrl-C stops",
            flush=True,
        )
        if not ipaddress.ip_address(host.split("%")[0]).is_loopback:
            print(
                f"review: listening on {host}, not only this machine: anyone who has the URL "
                f"sees the candidates and gives verdicts as {expert}, and plain HTTP shows its "
                "token to the network (put it behind a TLS proxy, or keep the default --host "
                "127.0.0.1)",
                file=sys.stderr,
                flush=True,
            )
        previous = signal.signal(signal.SIGTERM, _stop)
        try:
            server.serve_forever()  # until Ctrl-C or SIGTERM: werkzeug swallows the interrupt
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            server.server_close()
    finally:
        store.close()
    print("review: stopped", file=sys.stderr)
    return 0


def run_verdicts(args: argparse.Namespace) -> int:
    from models.exceptions import ConfigurationError
    from service.review.export import FORMATS, export, message
    from service.review.store import open_store

    if args.action == "retrain":
        return run_retrain(args)
    if args.action == "export" and (args.out is None or args.out.suffix.lower() not in FORMATS):
        raise ConfigurationError(f"verdicts export needs OUT ending in {', '.join(FORMATS)}")
    if args.action == "publish" and args.out is not None:
        raise ConfigurationError("verdicts publish takes no OUT (it writes to --verdict-topic)")
    settings = settings_of(args) if args.action == "publish" else None
    with open_store(args.db, create=False) as store:
        verdicts = store.verdicts(args.expert)
        where = store.description
    if args.action == "export":
        export(verdicts, args.out)
        print(f"exported {len(verdicts)} verdicts from {where} to {args.out}")
        return 0
    from service.demo import publish
    from service.ops.availability import Brokers

    assert settings is not None
    kafka = settings.kafka
    brokers = Brokers(kafka.bootstrap_servers, kafka.unavailable_timeout_s)
    messages: list[tuple[bytes | None, bytes]] = [message(v) for v in verdicts]
    publish(
        kafka.bootstrap_servers,
        args.verdict_topic,
        messages,
        client=kafka.librdkafka(),
        brokers=brokers,
    )
    print(f"published {len(verdicts)} verdicts from {where} to {args.verdict_topic}")
    return 0


def run_retrain(args: argparse.Namespace) -> int:
    """``verdicts retrain OUT``: the expert's re-ranker from the store, the scores and the
    features."""
    from models.exceptions import ConfigurationError
    from models.extras import RERANK, require

    require("coniferest", RERANK, "alert-anomaly verdicts retrain")  # named before anything else
    from service.review.retrain import retrain
    from service.review.store import open_store

    if args.out is None:
        raise ConfigurationError("verdicts retrain needs OUT, the re-ranker's directory")
    missing = [f for f, v in (("--scores", args.scores), ("--features", args.features)) if not v]
    if missing:
        raise ConfigurationError(f"verdicts retrain needs {' and '.join(missing)}")
    if not args.expert or not args.expert.strip():
        raise ConfigurationError("verdicts retrain needs --expert (whose verdicts to learn)")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigurationError(f"OUT must be a directory: {args.out} is a file")
    with open_store(args.db, create=False) as store:
        verdicts = store.verdicts(args.expert)
        where = store.description
    print(f"retrain: {len(verdicts)} verdicts of {args.expert} from {where}", flush=True)
    done = retrain(
        verdicts,
        args.expert,
        args.scores,
        args.features,
        args.out,
        survey=args.survey,
        seed=args.seed,
    )
    learned = ", ".join(f"{n} {k}" for k, n in sorted(done.verdicts.items()))
    skipped = f"; {done.left_out} on objects the tables lack, left out" if done.left_out else ""
    print(
        f"retrained the re-ranker of {args.expert} on {done.reference_rows} objects and "
        f"{learned}{skipped} -> {done.manifest.parent}"
    )
    return 0
