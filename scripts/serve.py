"""Serve related items over HTTP (FastAPI on uvicorn)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from engine import get_settings


def main(argv: list[str] | None = None) -> int:
    """Start the service on the given host and port until interrupted."""
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index-dir", type=Path, default=settings.index_dir, help="default: %(default)s")
    parser.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    parser.add_argument("--port", type=int, default=8000, help="default: %(default)s")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default: %(default)s)")
    parser.add_argument("--watch", action="store_true", help="reload when a new build becomes current")
    parser.add_argument("--no-model", action="store_true", help="do not load the model (no free-text queries)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    args = parser.parse_args(argv)

    import uvicorn

    from service.app import create_app

    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    overrides = {"index_dir": args.index_dir, "watch": args.watch or settings.watch}
    if args.no_model:
        overrides["load_model"] = False
    if args.workers == 1:
        app = create_app(settings.model_copy(update=overrides))
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
        return 0
    # Several processes import the app themselves: hand them the options through the environment.
    os.environ.update({f"RCE_{key.upper()}": str(value) for key, value in overrides.items()})
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        workers=args.workers,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
