"""Editorial overrides from ``overrides.json`` in the index folder: pinned related items and banned items.

Format::

    {"pinned": {"<publication id>": ["<id shown first>", "<id shown second>"]},
     "banned": ["<id never shown as related>"]}

Pins go first, in the given order, before the ranked items; they still obey the request's explicit
filters (language, type, dates) but not ``min_score``. Banned items never appear in any related list
(they remain readable through ``GET /publications/{id}``). The file is read when the index is (re)loaded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

OVERRIDES_FILE = "overrides.json"


class OverridesError(ValueError):
    """An ``overrides.json`` that cannot be used; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Overrides:
    """Pinned related items per publication, and globally banned items."""

    pinned: dict[str, tuple[str, ...]] = field(default_factory=dict)
    banned: frozenset[str] = frozenset()
    version: str = "none"  # content hash, part of the ETag
    warnings: tuple[str, ...] = ()


def load_overrides(index_dir: Path, known_ids: set[str] | frozenset[str]) -> Overrides:
    """Read ``index_dir/overrides.json`` if present; unknown ids are reported in ``warnings`` and ignored."""
    path = Path(index_dir) / OVERRIDES_FILE
    if not path.is_file():
        return Overrides()
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise OverridesError(f"{path} is not valid JSON ({exc}); fix or remove it") from None
    if not isinstance(data, dict) or set(data) - {"pinned", "banned"}:
        raise OverridesError(f"{path} must be an object with only the keys 'pinned' and 'banned'")
    pinned_raw, banned_raw = data.get("pinned", {}), data.get("banned", [])
    if not isinstance(pinned_raw, dict) or not all(
        isinstance(v, list) and all(isinstance(i, str) for i in v) for v in pinned_raw.values()
    ):
        raise OverridesError(f"{path}: 'pinned' must map publication ids to lists of ids")
    if not isinstance(banned_raw, list) or not all(isinstance(i, str) for i in banned_raw):
        raise OverridesError(f"{path}: 'banned' must be a list of ids")
    warnings = []
    unknown = sorted({i for i in banned_raw if i not in known_ids})
    unknown += sorted({i for key, ids in pinned_raw.items() for i in [key, *ids] if i not in known_ids})
    if unknown:
        warnings.append(f"{path}: ids not in the catalog are ignored: {sorted(set(unknown))}")
    banned = frozenset(i for i in banned_raw if i in known_ids)
    pinned = {
        key: tuple(dict.fromkeys(i for i in ids if i in known_ids and i != key and i not in banned))
        for key, ids in pinned_raw.items()
        if key in known_ids
    }
    return Overrides(pinned, banned, hashlib.sha256(raw).hexdigest()[:12], tuple(warnings))
