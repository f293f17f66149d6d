"""Serve related items over HTTP (FastAPI on uvicorn)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from engine import Settings, get_settings
from engine.settings import CONFIG_ENV


def main(argv: list[str] | None = None) -> int:
    """Start the service on the given host and port until interrupted."""
    # --config first: the settings it names are the defaults of every other option.
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--config", type=Path)
    config = early.parse_known_args(argv)[0].config
    if config is not None:
        if not config.is_file():
            print(
                f"error: --config {config}: no such file; give a settings file (RCE_NAME=value lines)", file=sys.stderr
            )
            return 2
        os.environ[CONFIG_ENV] = str(config.resolve())  # the workers read it too
        get_settings.cache_clear()
    try:
        settings = get_settings()
    except ValueError as exc:  # a bad value in the environment or the file: named by pydantic
        print(f"error: invalid settings: {exc}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--config",
        type=Path,
        help="settings file of RCE_NAME=value lines (the environment wins); default: .env in the working "
        "directory, if there is one",
    )
    parser.add_argument("--index-dir", type=Path, default=settings.index_dir, help="default: %(default)s")
    parser.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    parser.add_argument("--port", type=int, default=8000, help="default: %(default)s")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default: %(default)s)")
    parser.add_argument("--watch", action="store_true", help="reload when a new build becomes current")
    parser.add_argument("--no-model", action="store_true", help="do not load the model (no free-text queries)")
    parser.add_argument(
        "--log-level",
        default=settings.log_level,
        choices=["debug", "info", "warning", "error"],
        help="default: %(default)s",
    )
    parser.add_argument(
        "--log-format",
        choices=["json", "text"],
        default=settings.log_format or "text",
        help="one line per request and per reload, write or build: JSON objects or text (default: %(default)s)",
    )
    parser.add_argument("--no-access-log", action="store_true", help="no line per request (events are still logged)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    overrides = {
        "index_dir": args.index_dir,
        "watch": args.watch or settings.watch,
        "log_format": args.log_format,
        "log_level": args.log_level,
        "access_log": settings.access_log and not args.no_access_log,
    }
    if args.no_model:
        overrides["load_model"] = False
    # In memory (tmpfs) where there is one: every request writes a counter there, and a file on disk would
    # have the kernel write its pages back over and over.
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(prefix="rce-metrics-", dir=shm if shm.is_dir() else None) as metrics_dir:
        # Every worker writes its counters here and a scrape of any one sums them (prometheus-client's
        # multiprocess mode); set before the service is imported, as the library reads it then.
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir)
        return _run(args, settings.model_copy(update=overrides), overrides)


def _run(args: argparse.Namespace, settings: Settings, overrides: dict[str, object]) -> int:
    import uvicorn

    from service.app import create_app

    # The service formats every log line itself (service/observe.py): uvicorn's logging setup stays out.
    common = {"host": args.host, "port": args.port, "log_config": None, "access_log": False}
    if args.workers == 1:
        uvicorn.run(create_app(settings), **common)
        return 0
    # Several processes import the app themselves: hand them the options through the environment.
    os.environ.update({f"RCE_{key.upper()}": str(value) for key, value in overrides.items()})
    uvicorn.run("service.app:create_app", factory=True, workers=args.workers, **common)
    return 0


if __name__ == "__main__":
    sys.exit(main())
