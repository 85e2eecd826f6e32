"""The manifest: what the index holds, per corpus file its SHA-256 and the ids of its chunks, and
the model and splitter settings it was built with. Ingest reads it to re-embed only what changed.

It is written atomically (a temporary file, then a rename), so a crash leaves the old one or the
new one, never half of either.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_VERSION = 1


@dataclass
class Manifest:
    model: str = ""
    dim: int = 0
    splitter: dict[str, int | str] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError):
            # An unreadable manifest only costs a re-embed: reconciliation removes strays.
            return cls()
        if raw.get("version") != MANIFEST_VERSION:
            return cls()
        return cls(raw["model"], raw["dim"], raw["splitter"], raw["files"])

    def save(self, path: Path) -> None:
        data = {
            "version": MANIFEST_VERSION,
            "model": self.model,
            "dim": self.dim,
            "splitter": self.splitter,
            "files": self.files,
        }
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def all_ids(self) -> set[str]:
        return {cid for entry in self.files.values() for cid in entry["chunk_ids"]}
