"""The ``hardcase`` command line."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_DB = "sqlite:///hardcase.db"


class CliError(Exception):
    """A user mistake reported as one line and exit code 2."""


def _default_artifacts(db_url: str) -> Path:
    """Artifacts (embeddings, arrays) live beside an SQLite file, else in ./hardcase_artifacts."""
    if db_url.startswith("sqlite:///") and db_url != "sqlite:///:memory:":
        database = Path(db_url.removeprefix("sqlite:///"))
        return database.parent / f"{database.stem}_artifacts"
    return Path("hardcase_artifacts")


def _class_names(text: str) -> list[str]:
    """``"cat, dog,fox"`` -> ``["cat", "dog", "fox"]``."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"--class-names has an empty name: {text!r}")
    return names


def _size(text: str) -> tuple[int, ...]:
    """``28x28`` -> (28, 28); ``32x32x3`` -> (32, 32, 3) (a flat-input model's image, channels included)."""
    try:
        parts = [int(p) for p in text.lower().replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 28x28 or 32x32x3, got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) not in (2, 3) or min(parts) < 1 or (len(parts) == 3 and parts[2] not in (1, 3)):
        raise argparse.ArgumentTypeError(f"--size must look like 28x28 or 32x32x3, got {text!r}")
    return tuple(parts)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"--diversity must be in [0, 1], got {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


TRUST_HELP = ("load a SavedModel directory: its TensorFlow graph runs as it is, and may do anything on this "
              "machine (.keras and .h5 files load without running code from the file)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hardcase", description="Find, explain, review and fix the hard cases of an image classifier.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logs and tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    def add_db(p, required=False):
        p.add_argument("--db", default=None if required else DEFAULT_DB, required=required,
                       help=f"database URL (default {DEFAULT_DB}); PostgreSQL: postgresql+psycopg://user@host/db")
        p.add_argument("--artifacts", type=Path, default=None, help="folder for embeddings and arrays (default: beside the SQLite file)")

    demo = commands.add_parser("demo", help="train the demo model if absent, mine a disturbed MNIST pool, serve the review page")
    add_db(demo)
    demo.add_argument("--port", type=int, default=7860)
    demo.add_argument("--per-class", type=_positive, default=10)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-launch", action="store_true", help="do everything but serve")

    mine = commands.add_parser("mine", help="score a data set with a model and select diverse hard examples")
    scorer = mine.add_mutually_exclusive_group(required=True)
    scorer.add_argument("--model", help=".keras, .h5 or SavedModel directory")
    scorer.add_argument("--predictions", default=None,
                        help="recorded pred_probs (N, K) as .npy, row i for row i of --data, in the place of a model")
    mine.add_argument("--embeddings", default=None, help="recorded embeddings (N, D) as .npy, with --predictions")
    mine.add_argument("--invert", action="store_true", default=None,
                      help="the model expects inverted pixels (255 - x); default: its spec, else detected")
    mine.add_argument("--data", required=True, help="IDX, .npy, .npz, image folder, CSV or JSONL manifest")
    mine.add_argument("--labels", default=None, help="labels for --data (IDX or .npy), when not inside it")
    mine.add_argument("--class-names", type=_class_names, default=None, help="comma-separated class names, in output order")
    mine.add_argument("--train-data", default=None, help="training data, for density, imbalance and causes")
    add_db(mine)
    mine.add_argument("--run", required=True, help="name of this mining run (same name resumes)")
    group = mine.add_mutually_exclusive_group()
    group.add_argument("--per-class", type=_positive, default=None, help="candidates per class (default 20)")
    group.add_argument("--budget", type=_positive, default=None, help="total candidates")
    mine.add_argument("--diversity", type=_fraction, default=0.5, help="0 = pure hardness, 1 = pure coverage")
    mine.add_argument("--batch-size", type=_positive, default=256)
    mine.add_argument("--seed", type=int, default=0)
    mine.add_argument("--embedding-layer", default=None)
    mine.add_argument("--checkpoint-seconds", type=float, default=1.0,
                      help="make progress durable this often (a killed run resumes from the last checkpoint)")
    mine.add_argument("--scale", choices=["0-1", "0-255", "-1-1"], default=None)
    mine.add_argument("--channels", type=int, choices=[1, 3], default=None)
    mine.add_argument("--size", type=_size, default=None, help="model input size, e.g. 28x28")
    mine.add_argument("--resize", action="store_true",
                      help="resize IDX/.npy/.npz images of another size to the model's (else an error)")
    mine.add_argument("--max-pixels", type=_positive, default=None,
                      help="largest width*height of an image file, from its header (default 40000000)")
    mine.add_argument("--allow-outside-root", action="store_true",
                      help="read manifest paths that lead outside the manifest's folder")
    mine.add_argument("--no-suggest", action="store_true", help="skip cause suggestion for the candidates")
    mine.add_argument("--replace", action="store_true",
                      help="forget the run of this name first (its rows and arrays) and mine it anew; "
                           "refused once anyone has reviewed it")
    mine.add_argument("--trust-model", action="store_true", help=TRUST_HELP)
    mine.add_argument("--quiet", action="store_true", help="no progress bar")

    monitor = commands.add_parser(
        "monitor", help="watch a production stream in windows: alerts, their root cause, the worst samples into review")
    monitor.add_argument("--model", required=True, help=".keras, .h5 or SavedModel directory")
    monitor.add_argument("--reference", required=True,
                         help="labelled held-out data the model was not trained on (same formats as --data)")
    monitor.add_argument("--reference-labels", default=None, help="labels for --reference, when not inside it")
    monitor.add_argument("--stream", required=True, help="the production data, in order (any --data format)")
    monitor.add_argument("--stream-labels", default=None, help="labels for --stream where known (true accuracy)")
    windows = monitor.add_mutually_exclusive_group()
    windows.add_argument("--window", type=_positive, default=None, help="samples per window (default 300)")
    windows.add_argument("--by", choices=["t"], default=None,
                         help="t: one window per timestamp or batch id (npz 't', manifest 'timestamp')")
    add_db(monitor)
    monitor.add_argument("--run", required=True, help="name of this monitor run (same name resumes; its alerts "
                                                      "go to the review run of the same name)")
    monitor.add_argument("--review", type=int, default=20,
                         help="samples of each alerting window sent to review (default 20; 0 = none)")
    monitor.add_argument("--alpha", type=float, default=0.002,
                         help="per-window false-alert rate of all signals together (default 0.002)")
    monitor.add_argument("--class-names", type=_class_names, default=None)
    monitor.add_argument("--scale", choices=["0-1", "0-255", "-1-1"], default=None)
    monitor.add_argument("--invert", action="store_true", default=None)
    monitor.add_argument("--channels", type=int, choices=[1, 3], default=None)
    monitor.add_argument("--size", type=_size, default=None)
    monitor.add_argument("--resize", action="store_true")
    monitor.add_argument("--max-pixels", type=_positive, default=None)
    monitor.add_argument("--allow-outside-root", action="store_true")
    monitor.add_argument("--embedding-layer", default=None)
    monitor.add_argument("--batch-size", type=_positive, default=256)
    monitor.add_argument("--seed", type=int, default=0)
    monitor.add_argument("--no-suggest", action="store_true", help="skip cause suggestion for the review samples")
    monitor.add_argument("--trust-model", action="store_true", help=TRUST_HELP)
    monitor.add_argument("--quiet", action="store_true", help="no progress bar")

    serve = commands.add_parser("serve", help="serve the review app")
    add_db(serve)
    serve.add_argument("--run", default=None)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7860)
    serve.add_argument("--auth", type=Path, default=None, help="users file (TOML: name, role, password_hash)")
    serve.add_argument("--trust-model", action="store_true", help=TRUST_HELP)

    users = commands.add_parser("users", help="manage reviewer accounts")
    users.add_argument("action", choices=["hash"], help="hash: read a password, print the users-file hash")

    export = commands.add_parser("export", help="export scores, candidates or the fix list")
    add_db(export)
    export.add_argument("--run", required=True)
    export.add_argument("--what", choices=["scores", "candidates", "fixes", "reviews", "errors", "images", "windows"],
                        required=True,
                        help="images: the relabeled candidates as an image-folder zip (root/<class>/<id>.png); "
                             "windows: one row per window of a monitor run")
    export.add_argument("--format", choices=["csv", "jsonl", "parquet"], default=None, help="default: from --out's suffix")
    export.add_argument("--out", type=Path, required=True)

    retrain = commands.add_parser("retrain", help="retrain from the fix list and report the gain, cause by cause")
    retrain.add_argument("--model", required=True, help="the model the run was mined with (.keras/.h5)")
    retrain.add_argument("--train-data", required=True, help="labelled training data (same formats as --data)")
    retrain.add_argument("--train-labels", default=None, help="labels for --train-data, when not inside it")
    add_db(retrain)
    retrain.add_argument("--run", required=True, help="the reviewed run whose decisions make the plan")
    retrain.add_argument("--fixes", default=None, help="an exported fix list (CSV/JSONL/Parquet) instead of the run's reviews")
    retrain.add_argument("--eval", action="append", default=[], metavar="NAME=PATH", required=True,
                         help="labelled evaluation set (repeatable); a rotated and a warped copy are added")
    retrain.add_argument("--out", type=Path, required=True, help="the retrained model (.keras); plan and report beside it")
    retrain.add_argument("--epochs", type=_positive, default=8)
    retrain.add_argument("--scale", choices=["0-1", "0-255", "-1-1"], default=None,
                         help="override the input scaling recorded with the run")
    retrain.add_argument("--class-names", type=_class_names, default=None,
                         help="comma-separated class names, overriding those recorded with the run")
    retrain.add_argument("--no-pool", action="store_true",
                         help="leave the reviewed pool samples out of the training data")
    retrain.add_argument("--resize", action="store_true",
                         help="resize training and evaluation arrays of another size to the model's input")
    retrain.add_argument("--imbalance", default=None, metavar="METHOD",
                         help="the imbalance fix: weights, oversample, both or threshold (default both: the best "
                              "of the four in bench/close_loop.py --imbalance-options)")
    retrain.add_argument("--seed", type=int, default=0)
    retrain.add_argument("--trust-model", action="store_true", help=TRUST_HELP)
    retrain.add_argument("--batch-size", type=_positive, default=64)
    retrain.add_argument("--ablate", action="store_true", help="also retrain with no fix and with one fix family at a time")
    retrain.add_argument("--no-stress", action="store_true", help="skip the rotated / perspective copies of the eval sets")

    db = commands.add_parser("db", help="database schema migrations")
    db.add_argument("action", choices=["upgrade", "current", "downgrade"])
    db.add_argument("revision", nargs="?", default=None, help="target revision (upgrade: head, downgrade: -1)")
    add_db(db)
    return parser


def _open_store(url: str, *, upgrade: bool = True):
    from hardcase.store.db import open_store

    return open_store(url, upgrade=upgrade)


def _cmd_demo(args) -> int:
    store = _open_store(args.db)
    artifacts = args.artifacts or _default_artifacts(args.db)
    from hardcase.review_app.workflows.demo import run_demo

    report = run_demo(store, artifacts_dir=artifacts, per_class=args.per_class, seed=args.seed)
    print(report.summary())
    if args.no_launch:
        return 0
    return _serve(store, run_name="demo", host="127.0.0.1", port=args.port)


def _cmd_mine(args) -> int:
    from hardcase.review_app.workflows.artifacts import discard_run, run_folder
    from hardcase.review_app.workflows.mining import MiningOptions, mine

    artifacts = args.artifacts or _default_artifacts(args.db)
    run_folder(artifacts, args.run)  # a name that cannot be a folder fails before any work
    store = _open_store(args.db)
    if args.replace and discard_run(store, artifacts, args.run):
        print(f"run {args.run!r} replaced: its scores, candidates and arrays are gone", file=sys.stderr)
    options = MiningOptions(
        run_name=args.run,
        model_path=args.model,
        data_path=args.data,
        labels_path=args.labels,
        class_names=args.class_names,
        train_data=args.train_data,
        per_class=args.per_class if args.per_class or args.budget else 20,
        budget=args.budget,
        diversity=args.diversity,
        batch_size=args.batch_size,
        seed=args.seed,
        embedding_layer=args.embedding_layer,
        checkpoint_seconds=args.checkpoint_seconds,
        suggest=not args.no_suggest,
        scale=args.scale,
        channels=args.channels,
        size=args.size,
        resize=args.resize,
        max_pixels=args.max_pixels,
        allow_outside_root=args.allow_outside_root,
        predictions_path=args.predictions,
        invert=args.invert,
        embeddings_path=args.embeddings,
        trust_model=args.trust_model,
    )
    if args.embeddings and not args.predictions:
        raise CliError("--embeddings goes with --predictions (a model computes its own)")
    report = mine(store, options, artifacts_dir=artifacts, progress=not args.quiet)
    print(report.summary())
    return 0


def _cmd_monitor(args) -> int:
    from hardcase.review_app.workflows.artifacts import run_folder
    from hardcase.review_app.workflows.monitoring import MonitorOptions, monitor_stream

    artifacts = args.artifacts or _default_artifacts(args.db)
    run_folder(artifacts, args.run)
    options = MonitorOptions(
        run_name=args.run, model_path=args.model, reference_path=args.reference,
        reference_labels=args.reference_labels, stream_path=args.stream, stream_labels=args.stream_labels,
        window=args.window, by_t=args.by == "t", review=args.review, alpha=args.alpha,
        class_names=args.class_names, scale=args.scale, invert=args.invert, channels=args.channels, size=args.size,
        resize=args.resize, max_pixels=args.max_pixels, allow_outside_root=args.allow_outside_root,
        embedding_layer=args.embedding_layer, batch_size=args.batch_size, seed=args.seed,
        suggest=not args.no_suggest, trust_model=args.trust_model,
    )
    options.check()  # before the database is opened or created
    store = _open_store(args.db)
    report = monitor_stream(store, options, artifacts_dir=artifacts, progress=not args.quiet)
    print(report.summary())
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve(store, *, run_name: str | None, host: str, port: int, auth_file: Path | None = None,
           trust_model: bool = False) -> int:
    if not _is_loopback(host) and auth_file is None:
        raise CliError(f"refusing to serve on {host} without --auth FILE; bind 127.0.0.1 or give a users file")
    from hardcase.review_app.app import (
        build_app,
        launch_options,
        limit_decoded_pixels,
        queue_options,
    )
    from hardcase.review_app.workflows.accounts import authenticator, load_accounts
    from hardcase.review_app.workflows.review import ReviewService

    options = launch_options(host=host, port=port)
    if auth_file is not None:
        accounts = load_accounts(auth_file)
        _sync_accounts(store, accounts)
        options.update(auth=authenticator(accounts), auth_message="hardcase: sign in to review")
    limit_decoded_pixels()
    app = build_app(ReviewService(store, trust_model=trust_model), run_name=run_name)
    app.queue(**queue_options())
    print(f"hardcase review app: http://{host}:{port}", flush=True)
    app.launch(**options)
    return 0


def _sync_accounts(store, accounts) -> None:
    """Record the users file's accounts in the database, so reviews can be joined to roles."""
    from hardcase.store import api

    with store.Session.begin() as session:
        for account in accounts.values():
            user = api.get_user(session, account.name)
            if user is None:
                api.add_user(session, name=account.name, role=account.role, password_hash=account.password_hash)
            else:
                user.role, user.password_hash = account.role, account.password_hash


def _cmd_serve(args) -> int:
    return _serve(_open_store(args.db), run_name=args.run, host=args.host, port=args.port, auth_file=args.auth,
                  trust_model=args.trust_model)


def _cmd_users(args) -> int:
    import getpass

    from hardcase.review_app.workflows.accounts import hash_password

    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    print(hash_password(password))
    return 0


def _cmd_export(args) -> int:
    from hardcase.store.export import export_rows, write_rows

    store = _open_store(args.db)
    if args.what == "images":
        import shutil
        import tempfile

        from hardcase.review_app.workflows.exports import write_image_folder_zip

        with tempfile.TemporaryDirectory() as folder:
            report = write_image_folder_zip(store, args.run, Path(folder))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(report.path, args.out)
        print(f"wrote {report.n_images} images in {len(report.per_class)} class folders to {args.out}")
        return 0
    fmt = args.format or args.out.suffix.lstrip(".").lower()
    if fmt not in ("csv", "jsonl", "parquet"):
        raise CliError(f"cannot tell the format of {args.out}; pass --format csv|jsonl|parquet")
    from tqdm import tqdm

    columns, rows = export_rows(store, args.run, args.what)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(rows), unit="row", desc=f"writing {args.what}", disable=None) as bar:  # None: a terminal only
        write_rows(columns, rows, args.out, fmt, progress=lambda done, _: bar.update(done - bar.n))
    print(f"wrote {len(rows)} {args.what} rows to {args.out}")
    return 0


def _cmd_retrain(args) -> int:
    from hardcase.models.retrain import DEFAULT_IMBALANCE, IMBALANCE_METHODS, PlanError
    from hardcase.review_app.workflows.retrain import RetrainOptions, report_paths, run_retrain

    imbalance = args.imbalance or DEFAULT_IMBALANCE
    if imbalance not in IMBALANCE_METHODS:
        raise CliError(f"--imbalance must be one of {', '.join(IMBALANCE_METHODS)}, got {imbalance!r}")
    evals: dict[str, str] = {}
    for item in args.eval:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise CliError(f"--eval must look like NAME=PATH, got {item!r}")
        if name in evals:
            raise CliError(f"--eval name {name!r} is given twice")
        if not Path(path).exists():
            raise CliError(f"--eval {name}: {path} does not exist")
        evals[name] = path
    if args.out.suffix not in (".keras", ".h5"):
        raise CliError(f"--out must be a .keras or .h5 file, got {args.out}")
    store = _open_store(args.db)
    options = RetrainOptions(
        model_path=args.model, train_data=args.train_data, train_labels=args.train_labels, run_name=args.run,
        fixes_path=args.fixes, evals=evals, out=str(args.out), epochs=args.epochs, seed=args.seed,
        batch_size=args.batch_size, ablate=args.ablate, stress=not args.no_stress, resize=args.resize,
        pool=not args.no_pool, scale=args.scale, class_names=args.class_names, trust_model=args.trust_model,
        imbalance=imbalance,
    )
    try:
        run_retrain(store, options)
    except PlanError as exc:
        raise CliError(str(exc)) from None
    print("wrote " + ", ".join(str(p) for p in [args.out, *report_paths(args.out).values()] if Path(p).exists()))
    return 0


def _cmd_db(args) -> int:
    from hardcase.store import db

    store = _open_store(args.db, upgrade=False)
    if args.action == "current":
        print(db.current_revision(store) or "(empty database)")
    elif args.action == "upgrade":
        db.upgrade(store, args.revision or "head")
        print(f"upgraded to {db.current_revision(store)}")
    else:
        db.downgrade(store, args.revision or "-1")
        print(f"downgraded to {db.current_revision(store) or '(empty database)'}")
    return 0


COMMANDS = {"demo": _cmd_demo, "mine": _cmd_mine, "monitor": _cmd_monitor, "serve": _cmd_serve, "export": _cmd_export, "db": _cmd_db,
            "users": _cmd_users, "retrain": _cmd_retrain}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        # TensorFlow's own warnings (retracing notices...) say nothing a user can act on
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    from hardcase.store.errors import StoreError

    try:
        return COMMANDS[args.command](args)
    # every input error of the workflows (MiningInputError, SuggestionInputError, PlanError,
    # ModelOutputError, the miner's validation) is a ValueError: catching it here keeps the
    # commands that need no model from importing TensorFlow
    except (CliError, StoreError, ValueError, OSError) as exc:
        if args.verbose:
            raise
        # the machine's fault, not the user's (disk full, permissions): exit 1; a missing file is the user's
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            print(f"hardcase {args.command}: failed: {exc}", file=sys.stderr)
            return 1
        print(f"hardcase {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hardcase {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
