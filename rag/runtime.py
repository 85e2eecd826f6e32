"""What every entry point does first: keep libraries offline, then read the settings.

``app.py`` and the ``rag`` command line both start here::

    offline_env()
    settings = load_settings(answerer="extractive")   # SettingsError says what is wrong
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import ValidationError

from rag.config import Settings


class SettingsError(ValueError):
    """The settings (``RAG_*`` variables, ``.env``, overrides) are invalid; the message says which."""


def offline_env() -> None:
    """Keep every library off the network (model hubs, analytics)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_settings(**overrides: Any) -> Settings:
    """``Settings`` from the environment, with the overrides that are not None.

    >>> load_settings(top_k=3, answerer=None).top_k
    3
    >>> load_settings(top_k=0)
    Traceback (most recent call last):
    ...
    rag.runtime.SettingsError: invalid settings: top_k: Input should be greater than or equal to 1
    """
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from None
