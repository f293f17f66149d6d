"""Export every publication's related list, for a static site or a CMS table (no service needed to read it).

Writes OUT/items/<id>.json (the JSON API's body for that id), OUT/related.jsonl and OUT/related.csv for
bulk loading, and with --locale the server-rendered fragment per id (OUT/html/<locale>/<id>.html). Ids that
are not safe file names get a hashed name; OUT/ids.json maps every id to its file. The lists are what the
service serves now (build, API writes since, overrides). The new export is swapped in whole: a failed or
interrupted run leaves the previous one in place.
"""

from __future__ import annotations

import argparse
import signal
import sys
from functools import partial
from pathlib import Path

from engine import get_settings, load_recommender
from engine.rank.query import MAX_K, InvalidQueryError
from engine.runtime.export import FORMATS, ExportError, Renderer, export_related
from engine.runtime.loading import LOAD_ERRORS
from service.fragment import FragmentParams, render_fragment
from service.locales import LOCALES


def main(argv: list[str] | None = None) -> int:
    """Load what the index folder serves, write the export, print a one-line summary."""
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index-dir", type=Path, default=settings.index_dir, help="default: %(default)s")
    parser.add_argument("--out", type=Path, required=True, help="export folder (new, or an earlier export's)")
    parser.add_argument("--k", type=int, default=10, help=f"items per list, 1-{MAX_K} (default: %(default)s)")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        action="append",
        help="json: one file per id; jsonl, csv: one file for all; repeat for several (default: all three)",
    )
    parser.add_argument(
        "--locale",
        choices=LOCALES,
        action="append",
        default=[],
        help="also write each list as the server-rendered HTML fragment in this locale; repeat for several",
    )
    parser.add_argument("--heading-level", type=int, default=2, help="the fragments' heading, h2-h6 (default: 2)")
    parser.add_argument("--thumbnails", action="store_true", help="the fragments show each item's catalog image")
    parser.add_argument(
        "--collapse-translations",
        action="store_true",
        help="one entry per translation group, linking the other languages (as the widget shows it)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not 1 <= args.k <= MAX_K:
        parser.error(f"--k must be between 1 and {MAX_K}, got {args.k}")
    if not 2 <= args.heading_level <= 6:
        parser.error(f"--heading-level must be between 2 and 6, got {args.heading_level}")
    try:
        recommender = load_recommender(args.index_dir)
    except LOAD_ERRORS as exc:
        print(
            f"error: cannot load the index in {args.index_dir}: {exc}",
            file=sys.stderr,
        )
        return 2
    renderers: dict[str, Renderer] = {
        locale: partial(
            render_fragment,
            recommender,
            options=FragmentParams(locale=locale, heading_level=args.heading_level, thumbnails=args.thumbnails),
        )
        for locale in dict.fromkeys(args.locale)
    }
    # A SIGTERM (cron, systemd, a CI timeout) stops the export like Ctrl-C: its staging folder is removed.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        report = export_related(
            recommender,
            args.out,
            k=args.k,
            formats=args.format or FORMATS,
            renderers=renderers,
            collapse_translations=args.collapse_translations,
            progress=not args.quiet,
        )
    except (ExportError, InvalidQueryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: cannot write{where}: {exc.strerror or exc}; {_UNCHANGED}", file=sys.stderr)
        return 4
    except KeyboardInterrupt:
        print(f"interrupted: {_UNCHANGED}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(report.summary())
    return 0


_UNCHANGED = "no export was written; any earlier export in --out is unchanged"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
