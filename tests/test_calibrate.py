"""Per-language calibration against brute force on seeded random vectors with a built-in language bias."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine import Publication, Recommender, VectorIndex, build_index, load_recommender
from engine.calibrate import SHRINKAGE, LanguageCalibration
from tests.conftest import SMALL_CATALOG
from tests.fakes import FakeEncoder, write_jsonl

LANGUAGES = ("en", "fr", "ar")


def biased_catalog(seed: int = 0, per_language: int = 150, dimension: int = 24):
    """Random unit vectors plus a strong per-language offset, like a multilingual encoder's language bias."""
    rng = np.random.default_rng(seed)
    offsets = {lang: rng.standard_normal(dimension) * 0.6 for lang in LANGUAGES}
    publications, rows = [], []
    for lang in LANGUAGES:
        for i in range(per_language):
            publications.append(Publication(f"{lang}-{i}", "t", language=lang))
            rows.append(rng.standard_normal(dimension) + offsets[lang])
    vectors = np.array(rows, dtype=np.float32)
    return publications, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def brute_force_z(vectors: np.ndarray, languages: np.ndarray, query: np.ndarray) -> np.ndarray:
    sims = vectors @ query
    z = np.empty_like(sims)
    n_all, mean_all, std_all = len(sims), sims.mean(), sims.std()
    for lang in set(languages):
        mask = languages == lang
        weight = mask.sum() / (mask.sum() + SHRINKAGE)
        mean = weight * sims[mask].mean() + (1 - weight) * mean_all
        std = weight * sims[mask].std() + (1 - weight) * std_all
        z[mask] = (sims[mask] - mean) / std
    assert n_all == len(vectors)
    return z


def test_statistics_equal_the_spread_of_similarities() -> None:
    publications, vectors = biased_catalog()
    calibration = LanguageCalibration.fit(vectors, [p.language for p in publications])
    query = vectors[3]
    languages = np.array([p.language for p in publications])
    sims = vectors @ query
    for lang in LANGUAGES:
        mask = languages == lang
        weight = 150 / (150 + SHRINKAGE)
        mean, std = calibration.statistics(query, lang)
        assert mean == pytest.approx(weight * sims[mask].mean() + (1 - weight) * sims.mean(), abs=1e-5)
        assert std == pytest.approx(weight * sims[mask].std() + (1 - weight) * sims.std(), abs=1e-5)
    assert calibration.statistics(query, "xx") == pytest.approx((sims.mean(), sims.std()), abs=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_engine_ranks_by_the_per_language_z_score(seed: int) -> None:
    publications, vectors = biased_catalog(seed)
    index = VectorIndex(vectors.shape[1], "m").build([p.id for p in publications], vectors)
    languages = np.array([p.language for p in publications])
    calibration = LanguageCalibration.fit(vectors, list(languages))
    calibrated = Recommender(publications, index, {}, calibration=calibration)
    plain = Recommender(publications, index, {})
    for row in (0, 200, 400):
        z = brute_force_z(vectors, languages, vectors[row])
        z[row] = -np.inf
        expected = [publications[i].id for i in np.argsort(-z, kind="stable")[:10]]
        got = calibrated.related(publications[row].id, 10)
        assert [item.id for item in got] == expected
        # the API still reports the cosine
        assert got[0].score == pytest.approx(float(vectors[row] @ index.vector(expected[0])), abs=1e-5)

    # the bias is real: by cosine the query's own language fills ~8 of 10 places; calibrated, about a third
    def own_language_share(recommender: Recommender) -> float:
        return float(
            np.mean(
                [sum(item.language == p.language for item in recommender.related(p.id, 10)) / 10 for p in publications]
            )
        )

    assert own_language_share(plain) > 0.7
    assert own_language_share(calibrated) < 0.4


def test_calibration_is_saved_with_the_build(tmp_path: Path) -> None:
    catalog = write_jsonl(tmp_path / "c.jsonl", SMALL_CATALOG)
    build_index([catalog], tmp_path / "index", FakeEncoder())
    recommender = load_recommender(tmp_path / "index")
    assert recommender.calibration is not None and recommender.calibration.languages == ["ar", "en", "fr"]
    loaded = LanguageCalibration.load((tmp_path / "index" / "current").resolve())
    query = recommender.index.vector("t1-en")
    assert loaded.statistics(query, "fr") == pytest.approx(recommender.calibration.statistics(query, "fr"))
