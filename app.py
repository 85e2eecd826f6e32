"""Composition root of the web chat: settings -> assistant -> Gradio UI.

Run with ``python app.py`` (or ``make run``); every setting comes from ``RAG_*`` variables.
"""

from __future__ import annotations

from rag.cli import load_settings, offline_env


def main() -> None:
    offline_env()
    from rag.web.app import launch

    # Opens the index (building it from the corpus first if there is none), builds the UI
    # over the assistant and serves it on RAG_HOST:RAG_PORT.
    launch(load_settings())


if __name__ == "__main__":
    main()
