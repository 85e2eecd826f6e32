"""The chat's look: Gradio's default theme, with font faces that hold every glyph the page uses.

Gradio 6.31's default theme declares its fonts at weights 400 and 600, served from its own
``static/fonts``; but the 600 ("SemiBold") files it ships for Source Sans Pro and IBM Plex Mono
are subsets of 55-75 glyphs (Cyrillic letters, "A", "B", the space). Chromium draws bold text
(the title, "Answer 1:", the Ask button) with that face, so "A" came from it and every other
letter from the next font in the stack: the "A" looked out of place. The 400 and 700 files are
complete (about 1,600 glyphs for Source Sans Pro), so the theme declares those two weights; a
600 request then resolves to the 700 face (CSS font matching looks upward above 500).
``tests/test_web_api.py`` checks the served files for every glyph the page uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import gradio as gr

# Each family's name as Gradio serves it (``static/fonts/<name without spaces>/...``), and the
# weights whose files are complete.
SANS = "Source Sans Pro"
MONO = "IBM Plex Mono"
WEIGHTS = (400, 700)


def chat_theme() -> gr.themes.Base:
    """Gradio's default theme with complete font faces (the system fonts after them)."""
    import gradio as gr

    return gr.themes.Default(
        font=(gr.themes.LocalFont(SANS, weights=WEIGHTS), "ui-sans-serif", "system-ui", "sans-serif"),
        font_mono=(gr.themes.LocalFont(MONO, weights=WEIGHTS), "ui-monospace", "Consolas", "monospace"),
    )
