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


@dataclass(frozen=True, slots=True)
class OverridesFile:
    """A parsed ``overrides.json``, before its ids are checked against a catalog (a write changes the catalog,
    not the file: the same file is resolved again)."""

    path: Path
    pinned: dict[str, list[str]]
    banned: list[str]
    version: str

    def resolve(self, known_ids: set[str] | frozenset[str] | dict) -> Overrides:
        """The overrides for a catalog of ``known_ids``; unknown ids are reported in ``warnings`` and ignored."""
        warnings = []
        unknown = sorted({i for i in self.banned if i not in known_ids})
        unknown += sorted({i for key, ids in self.pinned.items() for i in [key, *ids] if i not in known_ids})
        if unknown:
            warnings.append(f"{self.path}: ids not in the catalog are ignored: {sorted(set(unknown))}")
        banned = frozenset(i for i in self.banned if i in known_ids)
        pinned = {
            key: tuple(dict.fromkeys(i for i in ids if i in known_ids and i != key and i not in banned))
            for key, ids in self.pinned.items()
            if key in known_ids
        }
        return Overrides(pinned, banned, self.version, tuple(warnings))


def read_overrides(index_dir: Path) -> OverridesFile | None:
    """Parse ``index_dir/overrides.json`` if present; :class:`OverridesError` naming what is wrong."""
    path = Path(index_dir) / OVERRIDES_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OverridesError(f"{path} cannot be read ({exc.strerror}); fix its permissions or remove it") from None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise OverridesError(f"{path} is not valid JSON ({exc}); fix or remove it") from None
    if not isinstance(data, dict) or set(data) - {"pinned", "banned"}:
        raise OverridesError(f"{path} must be an object with only the keys 'pinned' and 'banned'")
    pinned, banned = data.get("pinned", {}), data.get("banned", [])
    if not isinstance(pinned, dict) or not all(
        isinstance(v, list) and all(isinstance(i, str) for i in v) for v in pinned.values()
    ):
        raise OverridesError(f"{path}: 'pinned' must map publication ids to lists of ids")
    if not isinstance(banned, list) or not all(isinstance(i, str) for i in banned):
        raise OverridesError(f"{path}: 'banned' must be a list of ids")
    return OverridesFile(path, pinned, banned, hashlib.sha256(raw).hexdigest()[:12])


def load_overrides(index_dir: Path, known_ids: set[str] | frozenset[str]) -> Overrides:
    """Read ``index_dir/overrides.json`` if present; unknown ids are reported in ``warnings`` and ignored."""
    source = read_overrides(index_dir)
    return source.resolve(known_ids) if source is not None else Overrides()
