"""The documents view of the web app, a tab beside the chat: every indexed document in a table
with a filter box, one document's passages in order, and for admins an upload control and a
remove button.

``DocumentsView`` holds the callbacks as plain methods (unit-tested without a server);
``build_documents_tab`` wires them into the chat's ``gr.Blocks`` (``rag.web.app.build_ui``)::

    view = DocumentsView(library)
    view.table("iran")                       # the filtered table, as HTML
    view.open('{"source": "factbook.md"}')   # its passages, rendered as in the sources panel

A citation in the sources panel, or a title in the table, carries ``data-source`` (and
``data-chunk``): the page's script (``DOCUMENTS_JS``) hands them to a hidden request box, and
the open callback switches to this tab with that document shown and the cited passage marked.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.answering import DocumentLibrary, DocumentNotFoundError, IndexProblem, IngestBusyError, Upload
from rag.web.render import document_html, documents_html, escape_markdown

if TYPE_CHECKING:
    import gradio as gr

log = logging.getLogger(__name__)

TAB_ID = "documents"

DOCUMENTS_CSS = """
.doc-hidden { display: none !important; }
#doc-table { max-height: 46vh; overflow: auto !important; }
#doc-view { clear: both; }
#doc-table .doc-count { font-size: 0.85em; opacity: 0.75; margin: 4px 0; }
#doc-table table.doc-table { width: 100%; border-collapse: collapse; font-size: 0.9em; }
#doc-table th { text-align: left; position: sticky; top: 0; background: var(--background-fill-primary); }
#doc-table th, #doc-table td { padding: 4px 6px; border-bottom: 1px solid var(--border-color-primary);
  vertical-align: top; }
#doc-table td.doc-num { text-align: right; }
#doc-table td .src-url { word-break: break-all; font-size: 0.85em; }
#doc-view .doc-head { font-weight: 600; margin: 6px 0; }
#doc-view .doc-passage { border: 1px solid var(--border-color-primary); border-radius: 8px; margin: 6px 0;
  padding: 6px 10px; }
#doc-view .src-section { opacity: 0.8; font-size: 0.85em; }
#doc-view .src-meta { font-size: 0.8em; opacity: 0.8; margin: 6px 0; word-break: break-all; }
#doc-view .src-text { white-space: pre-wrap; font-size: 0.92em; line-height: 1.5; }
#doc-view .src-text mark { background: #fde68a; color: #1f2937; padding: 0 2px; border-radius: 3px; }
#sources a.doc-link { margin-left: 6px; font-size: 0.95em; }
"""

# A click on a document link (a title in the table, "in Documents" under a citation) asks the
# server for that document through a hidden box and button (the callback switches the tab).
DOCUMENTS_JS = """
() => {
  document.addEventListener('click', (event) => {
    const link = event.target.closest && event.target.closest('a.doc-link');
    if (!link) return;
    event.preventDefault();
    event.stopPropagation();
    const box = document.querySelector('#doc-request textarea, #doc-request input');
    const button = document.getElementById('doc-open');
    if (!box || !button) return;
    box.value = JSON.stringify({source: link.dataset.source || '', chunk: link.dataset.chunk || '',
                                nonce: Date.now()});
    box.dispatchEvent(new Event('input', {bubbles: true}));
    setTimeout(() => button.click(), 50);
  }, true);
}
"""

# After a document is shown: bring its cited passage (or its top) into view.
SCROLL_JS = """
() => {
  setTimeout(() => {
    const target = document.querySelector('#doc-view .doc-passage.cited')
      || document.getElementById('doc-view');
    if (target) target.scrollIntoView({behavior: 'smooth', block: 'center'});
  }, 100);
}
"""


CONFIRM_REMOVE_JS = """
(source, query) => confirm('Remove ' + source + ' and its file from the index?')
  ? [source, query] : [null, query]
"""


@dataclass
class Opened:
    """What opening a document shows: its HTML, its name (for the remove button), a notice."""

    html: str
    source: str
    notice: str = ""


class DocumentsView:
    """The documents view's callbacks over ``library`` (None: no index, ``problem`` says why)."""

    def __init__(self, library: DocumentLibrary | None, problem: str | None = None) -> None:
        self.library = library
        self.problem = problem

    def may_change(self, user: str | None) -> bool:
        return self.library is not None and self.library.may_change(user)

    def table(self, query: str = "") -> str:
        if self.library is None:
            return f'<div class="doc-empty">{escape_html(self.problem or "The index is not open.")}</div>'
        try:
            docs = [d.to_dict() for d in self.library.documents()]
        except IndexProblem as exc:
            return (
                f'<div class="doc-empty">The document index is not available: {escape_html(str(exc))}</div>'
            )
        return documents_html(docs, query or "")

    def open(self, request: str) -> Opened:
        """The document a link asked for: ``request`` is ``{"source", "chunk"}`` as JSON (or a
        bare document name)."""
        try:
            asked = json.loads(request) if request.strip().startswith("{") else {"source": request}
        except ValueError:
            asked = {"source": request}
        source, chunk = str(asked.get("source") or ""), str(asked.get("chunk") or "")
        if self.library is None or not source:
            return Opened("", "", escape_markdown(self.problem or "No document was asked for."))
        try:
            passages = self.library.passages(source)
            info = next((d for d in self.library.documents() if d.source == source), None)
        except DocumentNotFoundError:
            return Opened("", "", escape_markdown(f"{source} is not in the index (any more)."))
        except IndexProblem as exc:
            return Opened("", "", escape_markdown(f"The document index is not available: {exc}"))
        doc = info.to_dict() if info else {"source": source}
        rows = [
            {"index": p.index, "section": p.section, "text": p.text, "chunk_id": p.chunk_id} for p in passages
        ]
        return Opened(document_html(doc, rows, cited=chunk), source)

    def upload(
        self,
        paths: Sequence[str | Path] | None,
        user: str | None,
        progress: Callable[[int, int], None] | None = None,
    ) -> str:
        """Index the uploaded files (Gradio's temporary copies, named as on the user's machine);
        the result as Markdown, a line per file."""
        if not self.may_change(user):
            return "Only administrators (RAG_ADMINS) may add documents."
        assert self.library is not None
        files = [Path(p) for p in paths or []]
        if not files:
            return "Choose one or more files first."
        try:
            results = self.library.add([Upload(f.name, path=f) for f in files], progress=progress)
        except IngestBusyError:
            return "Another ingest is running on this index; try again when it has finished."
        except IndexProblem as exc:
            return escape_markdown(f"The document index is not available: {exc}")
        except Exception:
            log.exception("indexing uploaded files failed")
            return "Indexing failed; nothing already indexed was changed. The error was logged."
        return "\n".join(f"- {'✅' if r.ok else '❌'} {escape_markdown(r.message)}" for r in results)

    def remove(self, source: str, user: str | None) -> str:
        if not self.may_change(user):
            return "Only administrators (RAG_ADMINS) may remove documents."
        assert self.library is not None
        if not source:
            return "Open a document first."
        try:
            chunks = self.library.remove(source)
        except DocumentNotFoundError:
            return escape_markdown(f"{source} is not in the index (any more).")
        except IngestBusyError:
            return "Another ingest is running on this index; try again when it has finished."
        except IndexProblem as exc:
            return escape_markdown(f"{source} could not be removed: {exc}")
        return escape_markdown(f"Removed {source} ({chunks} chunks) and its file.")


def escape_html(text: str) -> str:
    import html

    return html.escape(text)


def username(request: Any) -> str | None:
    return getattr(request, "username", None) if request is not None else None


def build_documents_tab(view: DocumentsView, demo: gr.Blocks, tabs: gr.Tabs) -> None:
    """The tab's components and events, inside ``demo`` and ``tabs`` (call within both)."""
    import gradio as gr

    with gr.Tab("Documents", id=TAB_ID, elem_id="documents-tab"):
        with gr.Column(visible=False) as admin:
            files = gr.File(
                label="Add documents (.md, .txt, .html, .pdf, .docx)",
                # No file_types: the browser would refuse other types silently; the server
                # refuses them with the reason instead.
                file_count="multiple",
                elem_id="doc-upload",
            )
            send = gr.Button("Upload and index", variant="primary", elem_id="doc-upload-send")
        results = gr.Markdown("", elem_id="doc-results")
        query = gr.Textbox(
            placeholder="Filter by title, file, author or publication",
            show_label=False,
            elem_id="doc-filter",
        )
        table = gr.HTML(view.table(), elem_id="doc-table")
        request = gr.Textbox("", elem_id="doc-request", elem_classes=["doc-hidden"], show_label=False)
        open_ = gr.Button("Open", elem_id="doc-open", elem_classes=["doc-hidden"])
        opened = gr.State("")
        notice = gr.Markdown("", elem_id="doc-notice")
        remove = gr.Button("Remove this document", variant="stop", visible=False, elem_id="doc-remove")
        shown = gr.HTML("", elem_id="doc-view")

    def on_load(request: gr.Request) -> Any:
        return gr.Column(visible=view.may_change(username(request)))

    def on_open(asked: str, request: gr.Request) -> tuple[Any, ...]:
        result = view.open(asked)
        can_remove = bool(result.source) and view.may_change(username(request))
        return (
            gr.Tabs(selected=TAB_ID),
            result.html,
            result.source,
            result.notice,
            gr.Button(visible=can_remove),
        )

    def on_upload(
        paths: list[str] | None,
        query_: str,
        request: gr.Request,
        progress: Any = gr.Progress(),  # noqa: B008 - how Gradio asks for a progress bar
    ) -> tuple[Any, ...]:
        def report(done: int, total: int) -> None:
            if total:
                progress((done, total), desc="Indexing", unit="chunks")

        progress(0, desc="Reading the files")
        lines = view.upload(paths, username(request), report)
        return lines, view.table(query_), None

    def on_remove(source: str | None, query_: str, request: gr.Request) -> tuple[Any, ...]:
        if not source:  # the confirmation was declined
            return (gr.skip(),) * 5
        message = view.remove(source, username(request))
        gone = message.startswith("Removed")
        return (
            message,
            view.table(query_),
            "" if gone else gr.skip(),
            "" if gone else source,
            gr.Button(visible=not gone and view.may_change(username(request))),
        )

    # Gradio finds request and progress parameters from type hints and defaults; under postponed
    # annotations those are strings, so hand it the real types.
    on_load.__annotations__["request"] = gr.Request
    on_open.__annotations__["request"] = gr.Request
    on_remove.__annotations__["request"] = gr.Request
    on_upload.__annotations__["request"] = gr.Request

    private: dict[str, Any] = {"api_visibility": "private"}
    # The table is rendered once the load has answered, from what the filter box holds then:
    # rendered inside the load, from the empty filter the page started with, it could answer
    # after the filter's own change event and undo what a reader typed during the load.
    demo.load(on_load, None, admin, **private).then(view.table, query, table, **private)
    query.change(view.table, query, table, concurrency_limit=None, **private)
    open_.click(on_open, request, [tabs, shown, opened, notice, remove], **private).then(
        None, None, None, js=SCROLL_JS
    )
    send.click(
        on_upload,
        [files, query],
        [results, table, files],
        concurrency_id="upload",
        concurrency_limit=1,
        **private,
    )
    remove.click(
        on_remove,
        [opened, query],
        [notice, table, shown, opened, remove],
        js=CONFIRM_REMOVE_JS,
        **private,
    )
