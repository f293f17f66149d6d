"""Train the topic adapter of a model on the training split of a labelled catalog and save it in models/.

Only items whose ``split`` is --split (default: train) are read, so the dev split stays unseen.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from engine import EmbeddingCache, get_settings, load_catalog, open_encoder
from engine.catalog.text import publication_text
from engine.encode.adapter import AdapterConfig, save_adapter, train_adapter
from engine.encode.embed import encode_cached
from engine.encode.models import read_manifest, write_tuned_manifest


def main(argv: list[str] | None = None) -> int:
    """Encode the training items with the base model, fit the adapter, write the tuned model folder."""
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--catalog", type=Path, required=True, help="labelled catalog (topics, groups, split)")
    parser.add_argument("--split", default="train", help="items used for training (default: %(default)s)")
    parser.add_argument("--base", default="use-multilingual-v3", help="base model folder (default: %(default)s)")
    parser.add_argument("--name", default="use-multilingual-v3-tuned", help="output model (default: %(default)s)")
    parser.add_argument("--models-dir", type=Path, default=settings.models_dir, help="default: %(default)s")
    parser.add_argument("--epochs", type=int, default=AdapterConfig().epochs)
    parser.add_argument("--identity-weight", type=float, default=AdapterConfig().identity_weight)
    args = parser.parse_args(argv)

    publications = [p for p in load_catalog(args.catalog).publications if p.metadata.get("split") == args.split]
    if len(publications) < 2:
        print(f"error: {args.catalog} has fewer than 2 items with split {args.split!r}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    encoder = open_encoder(settings.model_copy(update={"model": args.base, "models_dir": args.models_dir}))
    cache = EmbeddingCache.in_folder(settings.cache_dir)
    texts = [publication_text(p) for p in publications]
    chunks, _ = encode_cached(encoder, texts, cache, languages=[p.language for p in publications])
    vectors = chunks.pooled()
    config = AdapterConfig(epochs=args.epochs, identity_weight=args.identity_weight)
    weight, means = train_adapter(vectors, publications, config)

    base = read_manifest(args.models_dir, args.base)
    folder = args.models_dir / args.name
    info = {
        "base": args.base,
        "trained_on": f"{args.catalog.name} split={args.split}",
        "items": len(publications),
        "config": dataclasses.asdict(config),
    }
    save_adapter(folder, weight, means, info)
    trained_on = (
        f"{len(publications)} items of {args.catalog.parent.name}/{args.catalog.name} with split={args.split} "
        "(translation pairs and same-topic pairs); never the dev split"
    )
    write_tuned_manifest(args.models_dir, args.name, base, trained_on)
    print(f"trained {args.name} on {len(publications)} items in {time.perf_counter() - started:.1f}s -> {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
