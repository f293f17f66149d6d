"""What a recommender derives from its build alone, made once per build: a write's recommender reuses it."""

from __future__ import annotations

from engine.catalog.records import Publication
from engine.index.delta import Delta
from engine.index.store import Build
from engine.index.vectors import IndexLoadError


class BuildView:
    """What a recommender derives from its build alone, checked and computed once per build: the id map, the
    translation groups and the languages."""

    def __init__(self, build: Build) -> None:
        self.by_id = {p.id: p for p in build.publications}
        index, neighbours = build.index, build.neighbours
        missing = [p for p in self.by_id if p not in index]
        if missing or len(index) != len(self.by_id):
            raise IndexLoadError(
                f"index and catalog disagree ({len(index)} vectors, {len(self.by_id)} publications, "
                f"{len(missing)} without a vector); rebuild the index"
            )
        if neighbours is not None and (
            len(neighbours) != len(self.by_id) or any(i not in self.by_id for i in neighbours.ids)
        ):
            raise IndexLoadError("the neighbour lists do not match the catalog of the build; rebuild the index")
        groups: dict[str, list[str]] = {}
        for p in build.publications:
            if p.group:
                groups.setdefault(p.group, []).append(p.id)
        self.groups = {key: tuple(members) for key, members in groups.items()}
        self.languages = frozenset(p.language for p in build.publications)

    def groups_with(self, delta: Delta, publications: dict[str, Publication]) -> dict[str, tuple[str, ...]]:
        """The translation groups once ``delta`` is applied (``publications``): only the groups it touches move."""
        touched = {p.group for p in delta.upserted if p.group}
        for key in [*delta.deleted, *(p.id for p in delta.upserted)]:
            old = self.by_id.get(key)
            if old is not None and old.group:
                touched.add(old.group)
        groups = dict(self.groups)
        for group in touched:
            members = [
                key for key in self.groups.get(group, ()) if key in publications and publications[key].group == group
            ]
            members += [p.id for p in delta.upserted if p.group == group and p.id not in members]
            if members:
                groups[group] = tuple(members)
            else:
                groups.pop(group, None)
        return groups
