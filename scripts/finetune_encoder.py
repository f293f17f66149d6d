"""Fine-tune the whole encoder (not only the adapter) on the training split of a labelled catalog.

Translation pairs and same-topic pairs of the items whose ``split`` is --split (default: train; the dev split
stays unseen) train every float weight of the base model with sentence-transformers' trainer and
MultipleNegativesRankingLoss; the model is saved to --output (under var/, never in git: ~80 MB).
--evaluate then measures every catalog shape (engine.eval.shapes) for the served model, the base encoder, the
fine-tuned encoder and the fine-tuned encoder with offsets and adapter retrained on top of it (saved to
OUTPUT/adapter; a control retrains them on the base encoder, OUTPUT/adapter-base); --report FILE writes those
figures as JSON, with bootstrap intervals of the fine-tuned + adapter minus served nDCG. See docs/finetune.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from engine import EmbeddingCache, Encoder, get_settings, open_encoder
from engine.catalog.records import Publication
from engine.encode.models import ModelNotPreparedError, check_prepared
from engine.eval.experiments.finetune import (
    AdaptedEncoder,
    FinetuneConfig,
    FolderEncoder,
    comparison_table,
    finetune,
    measure,
    paired_bootstrap,
    train_adapter_on,
    training_pairs,
    training_publications,
    verdict,
    write_info,
)
from engine.eval.shapes import SHARED_DATA, MissingSharedDataError, standard_shapes
from engine.settings import PROJECT_ROOT


def _config(args: argparse.Namespace) -> FinetuneConfig:
    return FinetuneConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_ratio=args.warmup_ratio,
        topic_pairs_per_item=args.topic_pairs,
        translation_pairs=not args.no_translation_pairs,
        max_steps=args.max_steps,
        seed=args.seed,
        threads=args.threads,
    )


def _evaluate(args: argparse.Namespace, publications: list[Publication]) -> str:
    """Measure the five variants on every shape; print the table, write --report; return the summary."""
    settings = get_settings().model_copy(update={"threads": args.threads, "models_dir": args.models_dir})
    shapes = standard_shapes(args.shared_data)
    cache = EmbeddingCache.in_folder(settings.cache_dir)
    base = open_encoder(settings.model_copy(update={"model": args.base}))
    fine_tuned = FolderEncoder(args.output, "finetuned", threads=args.threads)
    # The adapter retrained on the base encoder by the same code: a control that should match the served model.
    train_adapter_on(base, publications, args.output / "adapter-base", cache)
    train_adapter_on(fine_tuned, publications, args.output / "adapter", cache)
    encoders: dict[str, Encoder] = {
        f"served model ({settings.model})": open_encoder(settings),
        f"base encoder ({args.base})": base,
        "base + offsets and adapter retrained (control)": AdaptedEncoder(base, args.output / "adapter-base", cache),
        "fine-tuned encoder": fine_tuned,
        "fine-tuned + offsets and adapter": AdaptedEncoder(fine_tuned, args.output / "adapter", cache),
    }
    results = {}
    for variant, encoder in encoders.items():
        started = time.perf_counter()
        results[variant] = measure(encoder, shapes, cache, k=args.k)
        print(f"measured {variant} in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    print(comparison_table(shapes, results, k=args.k))
    served, *_, adapted = results
    deltas = {name: verdict(results[served], results[name], k=args.k) for name in list(results)[1:]}
    noise = {}
    for shape in shapes:
        noise[shape.name] = paired_bootstrap(shape, encoders[adapted], encoders[served], cache, k=args.k)
        low, high = noise[shape.name][1:]
        print(f"{shape.name}: fine-tuned + adapter - served nDCG@{args.k} 95 % interval {low:+.4f} .. {high:+.4f}")
    lost = [shape for shape, delta in deltas[adapted].items() if delta[f"ndcg@{args.k}"] < args.margin]
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        info = json.loads((args.output / "finetune.json").read_text(encoding="utf-8"))
        report = {
            "training": info,
            "k": args.k,
            "margin": args.margin,
            "results": results,
            "served_minus": {served: deltas},
            "bootstrap_adapted_minus_served": noise,
        }
        args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.report}", file=sys.stderr)
    return (
        f"; fine-tuned + adapter vs served: nDCG@{args.k} not higher by {args.margin} on {len(lost)}/{len(shapes)} "
        f"shapes {lost}"
    )


def main(argv: list[str] | None = None) -> int:
    """Build the pairs, fine-tune, save; optionally measure every shape against the served model."""
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", type=Path, required=True, help="labelled catalog (topics, groups, split)")
    parser.add_argument("--split", default="train", help="items used for training (default: %(default)s)")
    parser.add_argument("--base", default="use-multilingual-v3", help="base model folder (default: %(default)s)")
    parser.add_argument("--models-dir", type=Path, default=settings.models_dir, help="default: %(default)s")
    parser.add_argument(
        "--output",
        type=Path,
        default=PROJECT_ROOT / "var" / "finetune" / "use-multilingual-v3-ft",
        help="the fine-tuned model folder (default: %(default)s)",
    )
    defaults = FinetuneConfig()
    parser.add_argument("--epochs", type=float, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--warmup-ratio", type=float, default=defaults.warmup_ratio)
    parser.add_argument("--topic-pairs", type=int, default=defaults.topic_pairs_per_item, help="per training item")
    parser.add_argument("--no-translation-pairs", action="store_true", help="train on same-topic pairs only")
    parser.add_argument("--max-steps", type=int, default=defaults.max_steps, help="> 0: stop after so many steps")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--skip-training", action="store_true", help="reuse the model already in --output")
    parser.add_argument("--evaluate", action="store_true", help="measure every catalog shape (needs the shared data)")
    parser.add_argument("--shared-data", type=Path, default=SHARED_DATA, help="default: %(default)s")
    parser.add_argument("--report", type=Path, metavar="FILE", help="with --evaluate: write the figures as JSON")
    parser.add_argument(
        "--margin", type=float, default=0.001, help="least nDCG gain that counts as a win (default: %(default)s)"
    )
    parser.add_argument("--k", type=int, default=10, help="cut-off (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        config = _config(args)
    except ValueError as exc:
        parser.error(str(exc))
    if args.k < 1:
        parser.error(f"--k must be >= 1, got {args.k}")
    if not args.catalog.is_file():
        print(f"error: {args.catalog} is not a file", file=sys.stderr)
        return 2
    try:
        publications = training_publications(args.catalog, args.split)
        base_folder = check_prepared(args.models_dir, args.base)
    except (ValueError, ModelNotPreparedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    started = time.perf_counter()
    if args.skip_training:
        if not (args.output / "finetune.json").is_file():
            print(f"error: --skip-training but {args.output} holds no fine-tuned model", file=sys.stderr)
            return 2
        summary = f"reused {args.output}"
    else:
        pairs = training_pairs(publications, config)
        result = finetune(base_folder, pairs, args.output, config)
        trained_on = f"{len(publications)} items of {args.catalog.parent.name}/{args.catalog.name} split={args.split}"
        write_info(result, base_folder, trained_on)
        summary = (
            f"fine-tuned {args.base} on {len(pairs)} pairs ({pairs.translation} translation, {pairs.topic} topic) "
            f"of {len(publications)} items: {result.steps} steps in {result.seconds:.0f}s, loss {result.loss:.3f} "
            f"-> {args.output}"
        )
    if args.evaluate:
        try:
            summary += _evaluate(args, publications)
        except MissingSharedDataError as exc:
            print(f"error: {exc} (--shared-data)", file=sys.stderr)
            return 2
    print(f"{summary} ({time.perf_counter() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
