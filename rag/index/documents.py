"""Loading documents from a folder: Markdown (with front matter), text, HTML, PDF and DOCX.

Each file becomes one LangChain ``Document`` whose metadata holds the file name (``source``,
relative to the corpus folder) and the front-matter fields we use (``FRONT_MATTER_KEYS``: title,
source_url, license, author, published, publication, date, description, note). A file that
cannot be read becomes a ``LoadError`` instead, so one bad file never stops the rest.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from langchain_core.documents import Document

from rag.index.store import IndexProblem

SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".docx")
# The fields that say when and what the document is: the year check of the answer counts their
# years as the document's ("the 2016 sanctions law" is the one whose note says "enacted Feb. 18,
# 2016", though its sections never print the year; ``Passage.about``).
ABOUT_KEYS = ("published", "date", "description", "note")
FRONT_MATTER_KEYS = ("title", "source_url", "license", "author", "publication", *ABOUT_KEYS)
# Files in a corpus folder that describe the corpus rather than belong to it.
IGNORED_NAMES = {"SOURCES.md", "README.md", "LICENSE.md"}
# Wikipedia's maintenance banners ("This article needs additional citations ... Find sources:
# news · books · JSTOR ... (Learn how and when to remove this message)"), kept by page savers:
# they are about the page, not its subject, and were quoted as answers.
BANNER = re.compile(
    r"Learn how and when to remove th(?:is|ese) messages?"
    r"|Please help (?:improve|update) this (?:article|section)"
)
# A block longer than this that holds a banner holds other text too (Wikipedia's longest banners,
# several stacked, run to about 500 characters).
BANNER_BLOCK_CHARS = 1000


class CorpusError(IndexProblem):
    """The corpus folder itself is unusable (missing, not a folder, nothing to load)."""


@dataclass(frozen=True)
class LoadError:
    source: str
    reason: str


@dataclass(frozen=True)
class SourceFile:
    """A file of the corpus, named relative to the corpus folder, with its content hash."""

    path: Path
    source: str
    sha256: str


def discover(corpus_dir: Path, prefix: str = "") -> list[SourceFile]:
    """List the loadable files under ``corpus_dir``, sorted, with their content hashes; each
    file's ``source`` is ``prefix`` + its path relative to the folder.

    Symlinks that resolve outside the corpus folder are skipped, so a planted link cannot pull
    in files from elsewhere on the machine. Hidden files and folders are skipped too (uploads
    are staged in one until they are indexed).
    """
    if not corpus_dir.exists():
        raise CorpusError(f"corpus folder {corpus_dir} does not exist")
    if not corpus_dir.is_dir():
        raise CorpusError(f"{corpus_dir} is not a folder")
    root = corpus_dir.resolve()
    files: list[SourceFile] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or name in IGNORED_NAMES:
                continue
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                continue
            real = path.resolve()
            if not real.is_relative_to(root) or not real.is_file():
                continue
            digest = hashlib.sha256(real.read_bytes()).hexdigest()
            files.append(SourceFile(real, prefix + path.relative_to(root).as_posix(), digest))
    return files


def load_file(file: SourceFile) -> Document:
    """Load one file into a Document; raises ``ValueError`` with a readable reason on failure."""
    data = file.path.read_bytes()
    if not data.strip():
        raise ValueError("the file is empty")
    suffix = file.path.suffix.lower()
    metadata: dict[str, str] = {"source": file.source, "file_name": file.path.name}
    if suffix in (".md", ".markdown", ".txt"):
        text = _decode_text(data)
        if suffix != ".txt":
            text, front = _split_front_matter(text)
            metadata.update(front)
    elif suffix in (".html", ".htm"):
        text, title = _html_to_text(data)
        if title:
            metadata["title"] = title
    elif suffix == ".pdf":
        text = _pdf_to_text(data)
    elif suffix == ".docx":
        text, title = _docx_to_text(data)
        if title:
            metadata["title"] = title
    else:  # discover() filters these out; a direct caller gets a clear reason
        raise ValueError(f"unsupported file type {suffix}")
    text = drop_banners(text)
    if not text.strip():
        raise ValueError("no text could be extracted")
    metadata.setdefault("title", _title_from(text, file.path))
    return Document(page_content=text, metadata=metadata)


def load_files(files: Iterable[SourceFile]) -> tuple[list[Document], list[LoadError]]:
    docs: list[Document] = []
    errors: list[LoadError] = []
    for file in files:
        try:
            doc = load_file(file)
        except Exception as exc:  # noqa: BLE001 - any parser failure is reported per file
            errors.append(LoadError(file.source, str(exc) or type(exc).__name__))
        else:
            doc.metadata["sha256"] = file.sha256
            docs.append(doc)
    return docs, errors


def drop_banners(text: str) -> str:
    """``text`` without the blocks (runs of lines between blank lines) that hold a maintenance banner.

    >>> drop_banners("## History\\n\\n| This article needs citations. (Learn how and when to remove "
    ...              "this message)\\n---|---\\n\\nThe NSG was founded in 1974.")
    '## History\\n\\nThe NSG was founded in 1974.'
    """
    if not BANNER.search(text):
        return text
    kept = []
    for block in re.split(r"\n[ \t]*\n", text):
        if not BANNER.search(block):
            kept.append(block)
        elif len(block) > BANNER_BLOCK_CHARS:
            # More than a banner: text without blank lines (HTML and PDF text come out that way)
            # loses only the lines that hold one.
            kept.append("\n".join(line for line in block.splitlines() if not BANNER.search(line)))
    return "\n\n".join(kept)


def _decode_text(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise ValueError("looks like a binary file, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not valid UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def _split_front_matter(text: str) -> tuple[str, dict[str, str]]:
    import frontmatter  # lazy: yaml parsing is only needed for Markdown

    try:
        post = frontmatter.loads(text)
    except Exception as exc:
        raise ValueError(f"front matter is not valid YAML: {exc}") from exc
    meta = {k: str(post.metadata[k]) for k in FRONT_MATTER_KEYS if post.metadata.get(k) is not None}
    return post.content, meta


def _html_to_text(data: bytes) -> tuple[str, str | None]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else None
    # Keep headings as Markdown headings so the structure-aware splitter sees sections.
    for level in range(1, 7):
        for heading in soup.find_all(f"h{level}"):
            heading.replace_with(f"\n\n{'#' * level} {heading.get_text(' ', strip=True)}\n\n")
    body = soup.body or soup
    lines = [line.strip() for line in body.get_text("\n").splitlines()]
    return "\n".join(line for line in lines if line), title or None


def _pdf_to_text(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a readable PDF ({exc})") from exc
    return "\n\n".join(pages)


def _docx_to_text(data: bytes) -> tuple[str, str | None]:
    import zipfile

    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ValueError(f"not a readable DOCX file ({exc})") from exc
    lines: list[str] = []
    for para in document.paragraphs:
        text = para.text.strip()
        if not text:
            continue
        style = (para.style.name if para.style is not None else "") or ""
        if style.startswith("Heading") and style[-1:].isdigit():
            lines.append(f"{'#' * int(style[-1])} {text}")
        else:
            lines.append(text)
    title = document.core_properties.title or None
    return "\n\n".join(lines), title


def _title_from(text: str, path: Path) -> str:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# "):
            return stripped[2:].strip()
    return path.stem.replace("-", " ").replace("_", " ")
