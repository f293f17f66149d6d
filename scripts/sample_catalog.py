"""Write a site-like sample of a parallel catalog: mostly one language, some items translated.

Each translation group of the input becomes one publication in a language drawn by --shares; a
--translated share of the groups keeps all its versions (in those languages) as a translation group.
The same --seed gives the same sample (engine.shapes.site_sample, as used by evaluate.py --shapes).
Example: the shapes of docs/quality-shapes.md are

    python scripts/sample_catalog.py --catalog ../shared/data/sib200-dev/catalog.jsonl --split dev \\
        --seed 0 --out var/shapes/sib200-site-0.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine import CatalogError, load_catalog, write_catalog
from engine.shapes import SITE_SHARES, site_sample


def parse_shares(text: str) -> dict[str, float]:
    """``en=0.7,fr=0.2,ar=0.1`` -> {"en": 0.7, ...}; the shares must be positive (they are normalised)."""
    shares: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        language, _, value = part.partition("=")
        try:
            shares[language.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected language=share, got {part!r}") from None
        if shares[language.strip()] <= 0:
            raise argparse.ArgumentTypeError(f"shares must be > 0, got {part!r}")
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
    parser.add_argument("--translated", type=float, default=1 / 3, help="share of groups kept translated (0-1)")
    parser.add_argument("--out", type=Path, required=True, help="the sample catalog to write (.jsonl)")
    args = parser.parse_args(argv)
    if not 0 <= args.translated <= 1:
        parser.error(f"--translated must be between 0 and 1, got {args.translated}")
    try:
        publications = load_catalog(args.catalog).publications
    except CatalogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.split:
        publications = [p for p in publications if p.metadata.get("split") == args.split]
    sample = site_sample(publications, args.seed, shares=args.shares, translated=args.translated)
    if not sample:
        print(f"error: no item of {args.catalog} has a translation group in {sorted(args.shares)}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_catalog(sample, args.out)
    counts = {lang: sum(p.language == lang for p in sample) for lang in args.shares}
    groups = len({p.group for p in sample if p.group})
    print(f"wrote {len(sample)} publications ({counts}, {groups} translation groups) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
