"""The archive cache is bounded: the least recently used archives are evicted."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.archive_cache import ArchiveCache
from tests.conftest import ForgeEnv


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_cache_is_bounded_and_keeps_the_newest(env: ForgeEnv, tmp_path: Path) -> None:
    shas = []
    parent = None
    for i in range(4):
        parent = env.seed({f"f{i}.bin": bytes([i]) * 50_000}, parent=parent)
        shas.append(parent)
    first = ArchiveCache(tmp_path / "probe", 10**9).path_for(env.forge, "p", shas[0])
    cache = ArchiveCache(tmp_path / "cache", max_bytes=int(first.stat().st_size * 2.5))
    paths = [cache.path_for(env.forge, "p", sha) for sha in shas]
    assert cache.fetches == 4
    kept = sorted(p.name for p in (tmp_path / "cache" / "p").glob("*.tar.gz"))
    assert paths[-1].name in kept
    assert len(kept) <= 2
    assert cache.path_for(env.forge, "p", shas[-1]) == paths[-1]
    assert cache.fetches == 4, "a cached commit is served from disk"
    with pytest.raises(ValueError, match="not a commit SHA"):
        cache.path_for(env.forge, "p", "main")
