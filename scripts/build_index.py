"""Import catalog files into the index folder's catalog store, then build the index from the store.

Items the store holds and the files lack (API writes, earlier imports) are kept unless --sync. With no
--catalog, the store is built as it is (folding the API writes made since the last build into a new build).
With --ray, the texts the cache lacks are encoded and the neighbour lists computed on a Ray cluster (the
extra: pip install -e '.[ray]'); the build is written here exactly as a local one (docs/scale.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine import (
    BuildOptions,
    CatalogError,
    EmbeddingCache,
    ModelNotPreparedError,
    build_index,
    get_settings,
    open_encoder,
)
from engine.index.adaptation import SMOOTHING_NEIGHBOURS
from engine.index.catalog_store import StoreBusyError, StoreUnavailableError
from engine.index.folder import BuildLockedError
from engine.index.neighbours import DEFAULT_SIZE
from engine.index.vectors import STORAGES
from engine.runtime.cluster import ClusterUnavailableError, RayCluster, RayOptions  # imports Ray only when used


def main(argv: list[str] | None = None) -> int:
    """Validate the catalogs, encode what the cache lacks, write a new build and make it current."""
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--catalog",
        type=Path,
        action="append",
        default=[],
        help="catalog file (.jsonl or .csv) to import; repeat for several; none: build the store as it is",
    )
    parser.add_argument(
        "--sync", action="store_true", help="mirror the files exactly: delete from the store what they lack"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print what the import would add, change and delete; write nothing"
    )
    parser.add_argument("--index-dir", type=Path, default=settings.index_dir, help="default: %(default)s")
    parser.add_argument("--cache-dir", type=Path, default=settings.cache_dir, help="default: %(default)s")
    parser.add_argument("--no-cache", action="store_true", help="encode everything, do not read or write the cache")
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="report bad catalog lines and index the rest (default: stop at the first)",
    )
    parser.add_argument(
        "--force", action="store_true", help="write a new build even when the current one holds the same catalog"
    )
    parser.add_argument(
        "--neighbours",
        type=int,
        default=DEFAULT_SIZE,
        help="length of the precomputed neighbour lists; 0 for none (default: %(default)s)",
    )
    parser.add_argument(
        "--storage",
        choices=STORAGES,
        default="float32",
        help="vector precision; float16 halves the index's memory (default: %(default)s)",
    )
    parser.add_argument(
        "--smoothing",
        type=int,
        default=SMOOTHING_NEIGHBOURS,
        help="nearest chunks of other publications each chunk is smoothed toward; 0 for centring only "
        "(default: %(default)s; see engine/index/adaptation.py)",
    )
    parser.add_argument(
        "--no-adapt", action="store_true", help="index the model's vectors as they are (no centring or smoothing)"
    )
    parser.add_argument(
        "--no-calibrate", action="store_true", help="rank by plain cosine, without the per-language correction"
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        metavar="ADDRESS",
        help="encode and list on a Ray cluster: 'auto' (the running one; the default with no value), its "
        "address (host:port or ray://host:port), or 'local' to start one on this machine",
    )
    parser.add_argument(
        "--ray-actors-per-node", type=int, default=1, help="encoding actors per node (default: %(default)s)"
    )
    parser.add_argument(
        "--ray-cpus-per-actor", type=int, default=1, help="CPUs (encoder threads) per actor (default: %(default)s)"
    )
    parser.add_argument(
        "--ray-batch-size", type=int, default=32, help="documents per batch sent to an actor (default: %(default)s)"
    )
    parser.add_argument(
        "--ray-cpus-per-task",
        type=int,
        default=1,
        help="CPUs of each neighbour-list task, each holding a copy of the index: at millions of items, a "
        "node's CPUs (default: %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.sync and not args.catalog:
        parser.error("--sync mirrors catalog files: give them with --catalog")
    if args.neighbours < 0:
        parser.error(f"--neighbours must be >= 0, got {args.neighbours}")
    if not 0 <= args.smoothing <= 100:
        parser.error(f"--smoothing must be between 0 and 100, got {args.smoothing}")
    ray_options = None
    if args.ray is not None:
        try:
            ray_options = RayOptions(
                address=args.ray,
                actors_per_node=args.ray_actors_per_node,
                cpus_per_actor=args.ray_cpus_per_actor,
                batch_size=args.ray_batch_size,
                cpus_per_task=args.ray_cpus_per_task,
            )
        except ValueError as exc:
            parser.error(f"--ray: {exc}")
    options = BuildOptions(
        adapt=not args.no_adapt,
        smoothing_neighbours=args.smoothing,
        calibrate=not args.no_calibrate,
        neighbours=args.neighbours,
        storage=args.storage,
    )

    if settings.log_format is not None:  # RCE_LOG_FORMAT: the build's event line, as the service logs (docs/deploy.md)
        from service.observe import configure_logging

        configure_logging(settings.log_format, settings.log_level)
    cache = None if args.no_cache else EmbeddingCache.in_folder(args.cache_dir)
    cluster = None
    try:
        if ray_options is not None and not args.dry_run:
            # Connected on first use: a bad line, a held lock or an up-to-date index starts no cluster.
            cluster = RayCluster(ray_options, on_connect=announce)
            encoder = cluster.encoder(settings.models_dir, settings.model)
        else:
            encoder = open_encoder(settings)
        report = build_index(
            args.catalog,
            args.index_dir,
            encoder,
            cache=cache,
            skip_invalid=args.skip_invalid,
            show_progress=not args.quiet,
            options=options,
            force=args.force,
            sync=args.sync,
            dry_run=args.dry_run,
            map_slices=cluster.map_slices if cluster is not None else None,
        )
    except CatalogError as exc:
        print(f"error: {exc}\nnothing was written; fix the line or pass --skip-invalid", file=sys.stderr)
        return 2
    except ModelNotPreparedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (BuildLockedError, StoreBusyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 5
    except StoreUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    except OSError as exc:
        # A full or read-only disk: one line naming the path. The staging folder is removed and `current` is
        # unchanged; an import already committed stays in the store, and the next build includes it.
        where = f" {exc.filename}" if exc.filename else ""
        print(
            f"error: cannot write{where}: {exc.strerror or exc}; no build was written, the one in service is unchanged",
            file=sys.stderr,
        )
        return 4
    except Exception as exc:
        if not isinstance(exc, ClusterUnavailableError) and (cluster is None or not cluster.failed(exc)):
            raise
        print(f"error: the build on Ray failed: {exc}", file=sys.stderr)
        # The import commits before the build: what it wrote stays in the store, and the next build includes it.
        print(
            "no build was written; the one in service is unchanged (an import already committed stays in the "
            "store: run the build again)",
            file=sys.stderr,
        )
        return 6
    finally:
        if cluster is not None:
            cluster.close()
        if cache is not None:
            cache.close()
    for error in report.skipped:
        print(f"skipped: {error}", file=sys.stderr)
    print(report.summary())
    return 0


def announce(cluster: RayCluster) -> None:
    """The line that says where the build runs, once connected."""
    print(
        f"building on Ray ({cluster.options.address}): {cluster.nodes()} nodes, {cluster.cpus()} CPUs", file=sys.stderr
    )


if __name__ == "__main__":
    sys.exit(main())
