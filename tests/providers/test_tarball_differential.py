"""The streaming archive reader against Python's `tarfile`, on archives hypothesis builds in
every format `tarfile` writes: what the reader yields is exactly what `tarfile` reads (the
top folder stripped), and an archive cut anywhere, or with any byte changed, is refused or
read exactly as `tarfile` reads it, never half-read in silence."""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers.contract import FileMode
from providers.errors import UnsafeInput
from providers.tarball import INLINE_MAX, open_tarball

SHA = "c" * 40
TOP = "repo-" + SHA[:7]
FORMATS = {"pax": tarfile.PAX_FORMAT, "gnu": tarfile.GNU_FORMAT, "ustar": tarfile.USTAR_FORMAT}

segment = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_characters="/\\\0", exclude_categories=("Cs", "Cc")
    ),
    min_size=1,
    max_size=60,
).filter(lambda s: s not in (".", "..", ".git", ".meltano-forge") and s.strip() == s)
paths = st.lists(segment, min_size=1, max_size=4).map("/".join)
sizes = st.one_of(
    st.sampled_from([0, 1, 511, 512, 513, 1024, INLINE_MAX - 1, INLINE_MAX, INLINE_MAX + 1]),
    st.integers(0, 5000),
)


@st.composite
def trees(draw: st.DrawFn) -> dict[str, tuple[str, bytes]]:
    """path -> (kind, data): files ('f', 'x' for executables) and in-tree symlinks ('l')."""
    chosen: dict[str, tuple[str, bytes]] = {}
    for path in draw(st.lists(paths, min_size=1, max_size=12, unique=True)):
        if any(p.startswith(path + "/") or path.startswith(p + "/") for p in chosen):
            continue  # a path cannot be a file and a folder at once
        kind = draw(st.sampled_from("ffxl"))
        if kind == "l" and chosen:
            target = draw(st.sampled_from(sorted(chosen)))
            depth = path.count("/")
            chosen[path] = ("l", ("../" * depth + target).encode())
            continue
        size = draw(sizes)
        seed = draw(st.binary(min_size=1, max_size=8))
        chosen[path] = ("x" if kind == "x" else "f", (seed * (size // len(seed) + 1))[:size])
    return chosen


def build(tree: dict[str, tuple[str, bytes]], fmt: int) -> bytes:
    buffer = io.BytesIO()
    headers = {"comment": SHA} if fmt == tarfile.PAX_FORMAT else {}
    with tarfile.open(fileobj=buffer, mode="w:gz", format=fmt, pax_headers=headers) as tar:
        folder = tarfile.TarInfo(TOP)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o775
        tar.addfile(folder)
        for path, (kind, data) in tree.items():
            info = tarfile.TarInfo(f"{TOP}/{path}")
            if kind == "l":
                info.type, info.linkname = tarfile.SYMTYPE, data.decode()
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o775 if kind == "x" else 0o664
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def ours(data: bytes) -> list[tuple[str, FileMode, bytes]]:
    with open_tarball(io.BytesIO(data), expected_sha=SHA) as (_, entries):
        return [(e.path, e.mode, e.read()) for e in entries]


def theirs(data: bytes) -> list[tuple[str, FileMode, bytes]]:
    """What `tarfile` reads, as the reader reports it (the gzip checksum checked too)."""
    raw = gzip.decompress(data)
    found = []
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        for info in tar:
            if info.isdir():
                continue
            path = info.name.split("/", 1)[1]
            if info.issym():
                found.append((path, FileMode.SYMLINK, info.linkname.encode()))
                continue
            handle = tar.extractfile(info)
            assert handle is not None
            mode = FileMode.EXECUTABLE if info.mode & 0o111 else FileMode.REGULAR
            found.append((path, mode, handle.read()))
    return found


def fits(tree: dict[str, tuple[str, bytes]], fmt: int) -> bool:
    """USTAR cannot hold long or non-ASCII names; tarfile refuses to write them."""
    if fmt != tarfile.USTAR_FORMAT:
        return True
    return all(len(f"{TOP}/{p}".encode()) <= 100 and p.isascii() for p in tree) and all(
        len(d) <= 100 for k, d in tree.values() if k == "l"
    )


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(tree=trees(), fmt=st.sampled_from(sorted(FORMATS)))
def test_the_reader_reads_what_tarfile_reads(tree: dict[str, tuple[str, bytes]], fmt: str) -> None:
    if not fits(tree, FORMATS[fmt]):
        return
    data = build(tree, FORMATS[fmt])
    assert ours(data) == theirs(data)
    assert sorted(p for p, _, _ in ours(data)) == sorted(tree)


@SETTINGS
@given(tree=trees(), cut=st.floats(0.0, 0.999))
def test_an_archive_cut_anywhere_is_refused(tree: dict[str, tuple[str, bytes]], cut: float) -> None:
    data = build(tree, tarfile.PAX_FORMAT)
    short = data[: int(len(data) * cut)]
    try:
        ours(short)
    except UnsafeInput:
        return
    raise AssertionError(f"a download cut at {len(short)} of {len(data)} bytes was accepted")


@SETTINGS
@given(tree=trees(), where=st.floats(0.0, 0.999), flip=st.integers(1, 255))
def test_a_changed_byte_is_refused_or_read_as_tarfile_reads_it(
    tree: dict[str, tuple[str, bytes]], where: float, flip: int
) -> None:
    data = bytearray(build(tree, tarfile.PAX_FORMAT))
    data[int(len(data) * where)] ^= flip
    try:
        read = ours(bytes(data))
    except UnsafeInput:
        return
    try:
        expected = theirs(bytes(data))
    except (OSError, EOFError, zlib.error, tarfile.TarError, IndexError, UnicodeError):
        raise AssertionError("the reader accepted an archive tarfile cannot read") from None
    assert read == expected
