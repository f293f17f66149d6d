"""Related-content engine: catalog -> multilingual embeddings -> FAISS index -> related publications."""

from engine.catalog.records import CatalogError, LoadResult, Publication, catalog_hash, load_catalog, write_catalog
from engine.catalog.text import chunk_text, publication_text
from engine.encode.chunks import ChunkVectors
from engine.encode.embed import (
    EmbeddingCache,
    Encoder,
    SentenceTransformerEncoder,
    encode_cached,
    encode_chunks,
    encode_documents,
)
from engine.encode.models import ModelNotPreparedError, check_prepared, prepare_model, read_manifest
from engine.index.adaptation import CatalogAdaptation
from engine.index.build import BuildReport, build_index
from engine.index.calibrate import LanguageCalibration
from engine.index.catalog_store import CatalogStore, StoreBusyError, StoreUnavailableError
from engine.index.delta import Delta, DeltaIndex
from engine.index.folder import BuildLock, BuildLockedError
from engine.index.options import BuildOptions
from engine.index.store import Build, BuildManifest, resolve_build
from engine.index.vectors import IndexLoadError, VectorIndex
from engine.rank.query import InvalidQueryError, RelatedQuery
from engine.rank.recommend import Recommender, RelatedItem, RelatedResult, UnknownPublicationError
from engine.runtime.cluster import RayCluster, RayEncoder, RayOptions
from engine.runtime.holder import EngineHolder, NotReadyError, ReloadError
from engine.runtime.loading import load_recommender
from engine.settings import Settings, get_settings

__all__ = [
    "Build",
    "BuildLock",
    "BuildLockedError",
    "BuildManifest",
    "BuildOptions",
    "BuildReport",
    "CatalogAdaptation",
    "CatalogError",
    "CatalogStore",
    "ChunkVectors",
    "Delta",
    "DeltaIndex",
    "EmbeddingCache",
    "Encoder",
    "EngineHolder",
    "IndexLoadError",
    "InvalidQueryError",
    "LanguageCalibration",
    "LoadResult",
    "ModelNotPreparedError",
    "NotReadyError",
    "Publication",
    "RayCluster",
    "RayEncoder",
    "RayOptions",
    "Recommender",
    "RelatedItem",
    "RelatedQuery",
    "RelatedResult",
    "ReloadError",
    "SentenceTransformerEncoder",
    "Settings",
    "StoreBusyError",
    "StoreUnavailableError",
    "UnknownPublicationError",
    "VectorIndex",
    "build_index",
    "catalog_hash",
    "check_prepared",
    "chunk_text",
    "encode_cached",
    "encode_chunks",
    "encode_documents",
    "expected_model_name",
    "get_settings",
    "load_catalog",
    "load_recommender",
    "open_encoder",
    "prepare_model",
    "publication_text",
    "read_manifest",
    "resolve_build",
    "write_catalog",
]


def expected_model_name(settings: Settings | None = None) -> str:
    """The name an index built with the configured model carries (read from the manifest, no weights)."""
    settings = settings or get_settings()
    manifest = read_manifest(settings.models_dir, settings.model)
    return manifest.vectors_name


def open_encoder(settings: Settings | None = None) -> SentenceTransformerEncoder:
    """The configured model, loaded offline; fails with the command to run if it is not prepared."""
    settings = settings or get_settings()
    return SentenceTransformerEncoder(
        settings.models_dir, settings.model, threads=settings.threads, batch_size=settings.batch_size
    )
