"""Per-language calibration against brute force on seeded random vectors with a built-in language bias."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine import BuildOptions, Publication, Recommender, VectorIndex, build_index, load_recommender
from engine.index.calibrate import SHRINKAGE, LanguageCalibration
from engine.index.store import CALIBRATION_FILE, Build
from tests.conftest import SMALL_CATALOG
from tests.fakes import FakeEncoder, write_jsonl

LANGUAGES = ("en", "fr", "ar")


def biased_catalog(seed: int = 0, groups: int = 150, dimension: int = 24, translated: float = 1.0):
    """Each publication's content vector in every language, plus a strong per-language offset (a multilingual
    encoder's language bias). A ``translated`` share of the groups keeps its translation group; the rest are
    three unrelated-looking publications as far as the catalog knows."""
    rng = np.random.default_rng(seed)
    offsets = {lang: rng.standard_normal(dimension) * 0.6 for lang in LANGUAGES}
    publications, rows = [], []
    for g in range(groups):
        content = rng.standard_normal(dimension)
        linked = g < groups * translated
        for lang in LANGUAGES:
            publications.append(Publication(f"{lang}-{g}", "t", language=lang, group=f"g{g}" if linked else None))
            rows.append(content + offsets[lang] + 0.3 * rng.standard_normal(dimension))
    vectors = np.array(rows, dtype=np.float32)
    return publications, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def brute_force_key(vectors: np.ndarray, publications: list[Publication], query: np.ndarray) -> np.ndarray:
    """The documented key, from the similarities themselves: language effects measured on translated items."""
    sims = vectors.astype(np.float64) @ query.astype(np.float64)
    languages = np.array([p.language for p in publications])
    group_languages: dict[str, set[str]] = {}
    for p in publications:
        if p.group:
            group_languages.setdefault(p.group, set()).add(p.language)
    translated = np.array([bool(p.group) and len(group_languages[p.group]) > 1 for p in publications])
    key = (sims - sims.mean()) / sims.std()
    for lang in set(languages):
        in_language = translated & (languages == lang)
        if in_language.sum() < 2:
            continue
        weight = in_language.sum() / (in_language.sum() + SHRINKAGE)
        mean = sims.mean() + weight * (sims[in_language].mean() - sims[translated].mean())
        spread = sims.std() * (1 + weight * (sims[in_language].std() / sims[translated].std() - 1))
        key[languages == lang] = (sims[languages == lang] - mean) / spread
    return key


def fit(publications: list[Publication], vectors: np.ndarray) -> LanguageCalibration:
    return LanguageCalibration.fit(vectors, [p.language for p in publications], [p.group for p in publications])


def statistics(calibration: LanguageCalibration, query: np.ndarray, language: str | None) -> tuple[float, float]:
    """m and s of ``query`` for items of ``language``, as the ranking reads them (``scorer``)."""
    per_language = calibration.scorer(query)
    return per_language.get(language, per_language[None])


@pytest.mark.parametrize("translated", [1.0, 0.2])
def test_statistics_equal_the_documented_formula(translated: float) -> None:
    publications, vectors = biased_catalog(translated=translated)
    calibration = fit(publications, vectors)
    # 150 groups, a share of them linked: 30 translated items per language at 0.2, so weight 30 / 40.
    assert calibration.describe()["fr"] == {
        "translated_items": int(150 * translated),
        "weight": round(150 * translated / (150 * translated + SHRINKAGE), 4),
    }
    languages = np.array([p.language for p in publications])
    for row in (3, 200):
        query = vectors[row]
        expected = brute_force_key(vectors, publications, query)
        sims = vectors @ query
        for lang in LANGUAGES:
            mean, spread = statistics(calibration, query, lang)
            got = (sims[languages == lang] - mean) / spread
            assert got == pytest.approx(expected[languages == lang], abs=1e-4)
    # an unknown language gets the whole catalog's statistics
    sims = vectors @ vectors[3]
    assert statistics(calibration, vectors[3], "xx") == pytest.approx((sims.mean(), sims.std()), abs=1e-5)


def test_without_translations_the_key_keeps_the_cosine_order() -> None:
    """No translated items, no evidence of a language effect: nothing to correct, whatever the languages hold."""
    publications, vectors = biased_catalog(translated=0.0)
    calibration = fit(publications, vectors)
    assert calibration.languages == []
    for row in (0, 151, 302):
        query = vectors[row]
        means, spreads = calibration.statistics_matrix(query)
        assert means.shape == spreads.shape == (1, 1)
        keys = (vectors @ query - means[0, 0]) / spreads[0, 0]
        assert list(np.argsort(-keys, kind="stable")) == list(np.argsort(-(vectors @ query), kind="stable"))


def test_what_each_language_publishes_is_not_taken_for_a_language_effect() -> None:
    """French items all about one subject and no translations: the old per-language z-score pushed that
    subject down for everyone; measured on translations only, the French statistics stay the catalog's."""
    rng = np.random.default_rng(3)
    subject = rng.standard_normal(16) * 2
    rows, publications = [], []
    for i in range(120):
        lang = "fr" if i % 3 == 0 else "en"
        rows.append(rng.standard_normal(16) + (subject if lang == "fr" else 0))
        publications.append(Publication(f"p{i}", "t", language=lang))
    vectors = np.array(rows, dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    calibration = fit(publications, vectors)
    query = vectors[1]  # an English item
    assert statistics(calibration, query, "fr") == pytest.approx(statistics(calibration, query, "en"))


@pytest.mark.parametrize("seed", [0, 1])
def test_engine_ranks_by_the_calibrated_key(seed: int) -> None:
    publications, vectors = biased_catalog(seed)
    index = VectorIndex(vectors.shape[1], "m").build([p.id for p in publications], vectors)
    calibrated = Recommender(Build(publications, index, BuildOptions(), calibration=fit(publications, vectors)))
    plain = Recommender(Build(publications, index, BuildOptions()))
    for row in (0, 200, 400):
        key = brute_force_key(vectors, publications, vectors[row])
        group = publications[row].group
        key[[i for i, p in enumerate(publications) if p.group == group]] = -np.inf  # itself and its translations
        expected = [publications[i].id for i in np.argsort(-key, kind="stable")[:10]]
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
    assert own_language_share(calibrated) < 0.45


def test_calibration_is_saved_with_the_build(tmp_path: Path) -> None:
    catalog = write_jsonl(tmp_path / "c.jsonl", SMALL_CATALOG)
    build_index([catalog], tmp_path / "index", FakeEncoder(), options=BuildOptions(adapt=False))
    recommender = load_recommender(tmp_path / "index")
    # one translation group (t1-en, t1-fr): only en and fr have translated items, too few to count
    calibration = recommender.build.calibration
    assert calibration is not None and calibration.languages == []
    loaded = LanguageCalibration.load((tmp_path / "index" / "current").resolve() / CALIBRATION_FILE)
    query = recommender.index.vector("t1-en")
    assert statistics(loaded, query, "fr") == pytest.approx(statistics(calibration, query, "fr"))
    manifest = recommender.build.manifest
    assert manifest.language_correction == {} and manifest.options["calibrate"] is True
