"""Eight writers, one branch: linear history, nothing lost, nothing applied twice."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from providers.contract import FileChange, FileMode, Forge
from providers.errors import Conflict, Unavailable
from tests.conftest import ForgeEnv

THREADS = 8
COMMITS = 25
SHARED = [f"shared/s{i}.yml" for i in range(4)]


@dataclass
class Outcome:
    thread: int
    n: int
    path: str
    content: bytes
    sha: str | None = None
    error: Exception | None = None


def writer(
    forge: Forge, env: ForgeEnv, thread: int, outcomes: list[Outcome], start: threading.Barrier
) -> None:
    start.wait()
    for n in range(COMMITS):
        head = forge.branch("main").head
        if n % 2 == 0:
            path, base_mode = SHARED[(thread + n) % len(SHARED)], FileMode.REGULAR
        else:
            path, base_mode = f"private/t{thread}/c{n}.txt", None
        content = f"thread {thread} commit {n}\n".encode()
        outcome = Outcome(thread, n, path, content)
        try:
            result = forge.commit(
                "main",
                head,
                [FileChange.put(path, content, base_mode=base_mode)],
                f"t{thread} c{n}",
            )
            outcome.sha = result.sha
        except Exception as exc:  # every failure is inspected below
            outcome.error = exc
        outcomes.append(outcome)


@pytest.mark.slow
@pytest.mark.parametrize("env", ["local", "github", "github-graphql", "gitlab"], indirect=True)
def test_concurrent_writers_lose_and_duplicate_nothing(env: ForgeEnv) -> None:
    base = env.seed(dict.fromkeys(SHARED, b"initial\n"))
    if env.double is not None:
        env.double.validate = False  # type: ignore[attr-defined]  # 1,000+ requests; the contract is checked elsewhere
    outcomes: list[Outcome] = []
    start = threading.Barrier(THREADS)
    forges = [env.new_forge() for _ in range(THREADS)]
    threads = [
        threading.Thread(target=writer, args=(forges[t], env, t, outcomes, start))
        for t in range(THREADS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if env.double is not None:
        env.double.validate = True  # type: ignore[attr-defined]

    assert len(outcomes) == THREADS * COMMITS
    failures = [o for o in outcomes if o.error is not None]
    assert all(isinstance(o.error, Conflict) for o in failures), [
        repr(o.error) for o in failures if not isinstance(o.error, Conflict)
    ]
    assert all(o.path in SHARED for o in failures), "private files never conflict"
    successes = [o for o in outcomes if o.sha is not None]

    history = env.git("rev-list", "--parents", "main").strip().splitlines()
    assert all(len(line.split()) <= 2 for line in history), "history is linear"
    assert env.git("rev-list", "--count", "--merges", "main").strip() == "0"
    shas = [line.split()[0] for line in history]
    assert len(shas) == len(successes) + 1, "one commit per success, none twice"
    assert set(shas) == {o.sha for o in successes} | {base}

    for outcome in successes:
        assert outcome.sha is not None
        parent = env.git("rev-parse", f"{outcome.sha}^").strip()
        changed = env.git(
            "diff-tree", "-r", "--no-commit-id", "--name-only", parent, outcome.sha
        ).split()
        assert changed == [outcome.path]
        assert env.git("show", f"{outcome.sha}:{outcome.path}").encode() == outcome.content
    tree = set(env.git("ls-tree", "-r", "--name-only", "main").split())
    assert {o.path for o in successes if o.path.startswith("private/")} <= tree
    assert len([o for o in successes if o.path.startswith("private/")]) == THREADS * (COMMITS // 2)


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_a_held_ref_lock_is_waited_out_like_any_lost_race(env: ForgeEnv) -> None:
    """A ref lock another writer holds is a lost race like a moved head: tried again with
    the one retry mechanism's jittered pauses, then given up in the same words."""
    base = env.seed({"meltano.yml": b"v: 1\n"})
    lock = env.repo_dir / "refs" / "heads" / "main.lock"
    lock.write_bytes(b"")  # as git leaves it while another process moves the branch
    started = time.monotonic()
    with pytest.raises(Unavailable, match="kept moving while committing") as caught:
        env.forge.commit("main", base, [FileChange.put("a.txt", b"a\n")], "add a")
    assert "Try again in a moment" in str(caught.value)
    assert time.monotonic() - started < 30
    lock.unlink()
    assert env.head() == base
    landed = env.forge.commit("main", base, [FileChange.put("a.txt", b"a\n")], "add a")
    assert env.head() == landed.sha
