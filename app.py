"""Composition root of the web chat: settings -> assistant -> Gradio UI.

Run with ``python app.py`` (or ``make run``); every setting comes from ``RAG_*`` variables.
"""

from __future__ import annotations

import sys

from rag.runtime import SettingsError, load_settings, offline_env


def main() -> None:
    offline_env()
    from rag.web.server import launch

    try:
        settings = load_settings()
    except SettingsError as exc:
        sys.exit(f"error: {exc}")
    # Opens the index (building it from the corpus first if there is none), builds the UI
    # over the assistant and serves it on RAG_HOST:RAG_PORT.
    launch(settings)


if __name__ == "__main__":
    main()
