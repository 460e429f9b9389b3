"""The kernels' build cache (motrv3/ops/extension.py): one build per content of csrc/, wherever the
code is checked out, and sources copied so that ninja sees the same paths and mtimes every time."""

from __future__ import annotations

import shutil

from motrv3.ops import extension


def _checkout(tmp_path, name):
    csrc = tmp_path / name / "csrc"
    shutil.copytree(extension.CSRC, csrc)
    return csrc


def test_two_checkouts_of_the_same_code_share_one_build_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MOTRV3_EXTENSIONS_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(extension, "CSRC", _checkout(tmp_path, "clone_a"))
    first = extension.build_directory("kernel")
    monkeypatch.setattr(extension, "CSRC", _checkout(tmp_path, "clone_b"))
    assert extension.build_directory("kernel") == first
    assert first.parent == tmp_path / "cache" and first.name.startswith("kernel-")
    # an edited header is other code: another folder, so a stale library is never loaded
    header = extension.CSRC / "ms_deform_attn.h"
    header.write_text(header.read_text() + "\n// edited\n")
    assert extension.build_directory("kernel") != first


def test_sources_are_compiled_from_stable_copies_rewritten_only_when_they_change(tmp_path, monkeypatch):
    monkeypatch.setattr(extension, "CSRC", _checkout(tmp_path, "clone_a"))
    build = tmp_path / "build"
    paths = extension._stable_sources(build, [extension.CSRC / "ms_deform_attn_cpu.cpp"])
    assert paths == [str(build / "src" / "ms_deform_attn_cpu.cpp")]
    # the header the source includes is copied beside it
    assert (build / "src" / "ms_deform_attn.h").read_bytes() == (
        extension.CSRC / "ms_deform_attn.h"
    ).read_bytes()
    copy = build / "src" / "ms_deform_attn_cpu.cpp"
    stamp = copy.stat().st_mtime_ns
    monkeypatch.setattr(extension, "CSRC", _checkout(tmp_path, "clone_b"))  # same code elsewhere
    assert extension._stable_sources(build, [extension.CSRC / "ms_deform_attn_cpu.cpp"]) == paths
    assert copy.stat().st_mtime_ns == stamp  # untouched: ninja has nothing to rebuild
    edited = extension.CSRC / "ms_deform_attn_cpu.cpp"
    edited.write_text(edited.read_text() + "\n// edited\n")
    extension._stable_sources(build, [edited])
    assert copy.read_text().endswith("// edited\n")
    assert not list((build / "src").glob(".*.tmp"))
