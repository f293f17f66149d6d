"""Write a site-like sample of a parallel catalog: mostly one language, some items translated.

Each translation group of the input becomes one publication in a language drawn by --shares; about a
--translated share of the sample's items are in translation groups of two (the original and one
translation into another language drawn by --shares). The same --seed gives the same sample
(engine.eval.shapes.site_sample). The "sib200 site sample" shape of docs/reports/shapes.md is seeds 0-4 of

    python scripts/sample_catalog.py --catalog ../shared/data/sib200-dev/catalog.jsonl --split dev \\
        --seed 0 --out var/shapes/sib200-site-0.jsonl

and the untranslated one seeds 100-104 with --translated 0.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from engine import CatalogError, load_catalog, write_catalog
from engine.eval.shapes import SITE_SHARES, SITE_TRANSLATED, composition, site_sample


def parse_shares(text: str) -> dict[str, float]:
    """``en=0.7,fr=0.2,ar=0.1`` -> {"en": 0.7, ...}; the shares must be positive (they are normalised)."""
    shares: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        language, _, value = part.partition("=")
        try:
            shares[language.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected language=share, got {part!r}") from None
        if not math.isfinite(shares[language.strip()]) or shares[language.strip()] <= 0:
            raise argparse.ArgumentTypeError(f"shares must be finite numbers > 0, got {part!r}")
    if not shares:
        raise argparse.ArgumentTypeError("give at least one language=share")
    return shares


def main(argv: list[str] | None = None) -> int:
    """Read the catalog, draw the sample, write it as JSON Lines and say what it holds."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", type=Path, required=True, help="a parallel catalog (items share `group`)")
    parser.add_argument("--split", help="keep only items whose `split` field has this value")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    parser.add_argument(
        "--shares",
        type=parse_shares,
        default=dict(SITE_SHARES),
        help="languages and their shares (default: en=0.7,fr=0.2,ar=0.1)",
    )
    parser.add_argument(
        "--translated",
        type=float,
        default=SITE_TRANSLATED,
        help="share of the sample's items in translation groups, from 0 to below 1 (default: %(default).2f)",
    )
    parser.add_argument("--out", type=Path, required=True, help="the sample catalog to write (.jsonl)")
    args = parser.parse_args(argv)
    if not 0 <= args.translated < 1:
        parser.error(f"--translated must be at least 0 and below 1, got {args.translated}")
    try:
        publications = load_catalog(args.catalog).publications
    except CatalogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.split:
        publications = [p for p in publications if p.metadata.get("split") == args.split]
        if not publications:
            print(f"error: no item of {args.catalog} has split {args.split!r}", file=sys.stderr)
            return 2
    absent = sorted(set(args.shares) - {p.language for p in publications if p.group})
    if absent:
        print(
            f"error: no translated item of {args.catalog} is in {', '.join(absent)}; drop it from --shares",
            file=sys.stderr,
        )
        return 2
    sample = site_sample(publications, args.seed, shares=args.shares, translated=args.translated)
    if not sample:
        print(f"error: no item of {args.catalog} has a translation group in {sorted(args.shares)}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_catalog(sample, args.out)
    print(f"wrote {composition([sample])} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
