"""Atomic writes leave either the old file or the complete new one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autolfads.outputs.atomic import atomic_copy, atomic_path, atomic_write_bytes, atomic_write_text


def test_atomic_path_replaces_the_file_on_success(tmp_path: Path) -> None:
    final = tmp_path / "sub" / "fitlog.csv"
    with atomic_path(final) as tmp:
        assert tmp.parent == final.parent
        tmp.write_text("a,b\n")
        assert not final.exists()
    assert final.read_text() == "a,b\n"
    assert [p.name for p in final.parent.iterdir()] == ["fitlog.csv"]


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    final = tmp_path / "model.ckpt"
    final.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert final.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckpt"]


def test_atomic_files_get_ordinary_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        path = atomic_write_bytes(tmp_path / "x.bin", b"\x00\x01")
    finally:
        os.umask(umask)
    assert path.read_bytes() == b"\x00\x01"
    assert path.stat().st_mode & 0o777 == 0o644


def test_atomic_text_and_copy(tmp_path: Path) -> None:
    source = atomic_write_text(tmp_path / "a.txt", "héllo")
    copy = atomic_copy(source, tmp_path / "b.txt")
    assert copy.read_text(encoding="utf-8") == "héllo"
