"""The archive reader refuses everything `git archive` would never produce."""

from __future__ import annotations

import io
import tarfile

import pytest

from providers.contract import FileMode
from providers.errors import UnsafeInput
from providers.safety import Limits
from providers.tarball import open_tarball

SHA = "a" * 40


def build(members: list[tuple[tarfile.TarInfo, bytes | None]], comment: str = SHA) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT, pax_headers={"comment": comment}
    ) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def file(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def special(name: str, kind: bytes, link: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info, None


def read(data: bytes, limits: Limits | None = None) -> list[tuple[str, FileMode, bytes]]:
    with open_tarball(io.BytesIO(data), limits=limits) as (sha, entries):
        assert sha == SHA
        return [(e.path, e.mode, e.read()) for e in entries]


def test_reads_files_modes_and_links() -> None:
    data = build(
        [
            special("top", tarfile.DIRTYPE),
            file("top/a.txt", b"a"),
            file("top/bin/run", b"#!", 0o755),
            special("top/bin/up", tarfile.SYMTYPE, "../a.txt"),
        ]
    )
    assert read(data) == [
        ("a.txt", FileMode.REGULAR, b"a"),
        ("bin/run", FileMode.EXECUTABLE, b"#!"),
        ("bin/up", FileMode.SYMLINK, b"../a.txt"),
    ]


@pytest.mark.parametrize(
    "member",
    [
        file("top/../../etc/passwd"),
        file("/etc/passwd"),
        file("top/.git/config"),
        special("top/link", tarfile.SYMTYPE, "/etc/passwd"),
        special("top/sub/link", tarfile.SYMTYPE, "../../outside"),
        special("top/hard", tarfile.LNKTYPE, "top/a.txt"),
        special("top/dev", tarfile.CHRTYPE),
        special("top/fifo", tarfile.FIFOTYPE),
    ],
    ids=[
        "dotdot",
        "absolute",
        "dotgit",
        "abs-symlink",
        "escaping-symlink",
        "hardlink",
        "device",
        "fifo",
    ],
)
def test_hostile_entries_are_refused(member: tuple[tarfile.TarInfo, bytes | None]) -> None:
    with pytest.raises(UnsafeInput):
        read(build([file("top/a.txt"), member]))


def test_size_caps() -> None:
    with pytest.raises(UnsafeInput, match="over the limit of 1,000"):
        read(build([file("top/big", b"x" * 2000)]), Limits(max_file_bytes=1000))
    with pytest.raises(UnsafeInput, match="more than 2,500 bytes"):
        read(
            build([file(f"top/f{i}", b"x" * 900) for i in range(4)]),
            Limits(max_total_bytes=2500),
        )
    with pytest.raises(UnsafeInput, match="entries"):
        read(build([file(f"top/f{i}") for i in range(20)]), Limits(max_entries=10))


def test_truncated_and_garbage_archives() -> None:
    data = build([file("top/a.txt", b"a" * 100_000), file("top/b.txt", b"b" * 100_000)])
    with pytest.raises(UnsafeInput):
        read(data[: len(data) // 2])
    with pytest.raises(UnsafeInput):
        read(b"this is not a tarball")


def test_archives_must_say_which_commit() -> None:
    unsaid = io.BytesIO(build([file("top/a")], comment=""))
    with pytest.raises(UnsafeInput, match="commit"), open_tarball(unsaid):
        pass
    other = io.BytesIO(build([file("top/a")]))
    with (
        pytest.raises(UnsafeInput, match="not the requested"),
        open_tarball(other, expected_sha="b" * 40),
    ):
        pass
