"""The documents over plain HTTP, beside ``/api/ask`` (``rag.web.server`` includes the router)::

    curl -s -u ann:secret localhost:7860/api/documents
    curl -s -u ann:secret localhost:7860/api/documents -F files=@notes.md -F files=@report.pdf
    curl -s -u ann:secret -X DELETE localhost:7860/api/documents/uploads/notes.md

``GET /api/documents`` lists the indexed documents (the documents view's table);
``GET /api/documents/{name}`` one document with its passages in order; ``POST /api/documents``
(multipart, field ``files``, one or more) adds files and answers with a line per file;
``DELETE /api/documents/{name}`` removes a document. Adding and removing are for the users of
``RAG_ADMINS`` (``rag.index.library.may_change``); everyone signed in may read. Errors are the
API's ``{"error", "status"}``: 403 not an admin, 413 too large, 415 not a supported type, 400 a
bad name or an empty or unreadable file, 404 no such document, 409 another ingest is running.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rag.answering import (
    DocumentLibrary,
    DocumentNotFoundError,
    IndexProblem,
    IngestBusyError,
    Upload,
    UploadResult,
)
from rag.web.api import ApiError, ApiState

if TYPE_CHECKING:
    from fastapi import APIRouter, Request
    from starlette.responses import Response

log = logging.getLogger(__name__)

# What a refused file answers with when every file of the request was refused.
PROBLEM_STATUS = {"too_large": 413, "unsupported": 415, "bad_name": 400, "empty": 400, "unreadable": 400}
MAX_FILES = 20
# Multipart framing around the files themselves.
FORM_OVERHEAD_BYTES = 64 * 1024


def library_of(state: ApiState) -> DocumentLibrary:
    library = state.library
    if library is None:
        raise ApiError(503, state.not_ready() or "The documents are not available: the index is not open.")
    return library


def require_admin(state: ApiState, user: str | None) -> DocumentLibrary:
    """The library, when ``user`` may change it; else ``ApiError`` 403 saying who may."""
    library = library_of(state)
    if library.may_change(user):
        return library
    if state.settings.auth:
        raise ApiError(403, f"{user} may not add or remove documents: only the users in RAG_ADMINS may.")
    raise ApiError(
        403,
        "Adding and removing documents is off: set RAG_AUTH and RAG_ADMINS, or RAG_ALLOW_UPLOADS=true"
        " with the server bound to loopback (RAG_HOST=127.0.0.1).",
    )


def upload_status(results: list[UploadResult]) -> int:
    """200 when a file was indexed; when none was, the status of the first refusal.

    >>> upload_status([UploadResult("a.exe", False, "", problem="unsupported")])
    415
    """
    if any(r.ok for r in results):
        return 200
    return next((PROBLEM_STATUS.get(r.problem or "", 500) for r in results), 400)


def documents_router(state: ApiState) -> APIRouter:
    """``/api/documents`` (list, add) and ``/api/documents/{name}`` (read, remove) over
    ``state.library``."""
    from fastapi import APIRouter, Depends, Request
    from fastapi.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, Response

    signed_in = state.user

    def list_documents(user: str | None = Depends(signed_in)) -> Response:
        library = library_of(state)
        try:
            docs = library.documents()
        except IndexProblem as exc:
            raise ApiError(503, f"The document index is not available: {exc}") from None
        return JSONResponse(
            {
                "count": len(docs),
                "may_change": library.may_change(user),
                "documents": [d.to_dict() for d in docs],
            }
        )

    def read_document(name: str, user: str | None = Depends(signed_in)) -> Response:
        library = library_of(state)
        try:
            passages = library.passages(name)
            info = next((d for d in library.documents() if d.source == name), None)
        except DocumentNotFoundError:
            raise ApiError(
                404, f"No indexed document is named {name!r}; GET /api/documents lists them."
            ) from None
        except IndexProblem as exc:
            raise ApiError(503, f"The document index is not available: {exc}") from None
        return JSONResponse(
            {
                "document": info.to_dict() if info else {"source": name},
                "passages": [{"index": p.index, "section": p.section, "text": p.text} for p in passages],
            }
        )

    async def add_documents(request: Request, user: str | None = Depends(signed_in)) -> Response:
        library = require_admin(state, user)
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            raise ApiError(
                415, "Send the files as multipart/form-data in the field `files` (curl -F files=@notes.md)."
            )
        limit = int(state.settings.max_upload_mb * 1024 * 1024)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit * MAX_FILES + FORM_OVERHEAD_BYTES:
            raise ApiError(413, f"The request is larger than {MAX_FILES} files of RAG_MAX_UPLOAD_MB each.")
        try:
            form = await request.form(max_files=MAX_FILES, max_fields=10)
        except Exception as exc:  # noqa: BLE001 - Starlette's parser errors: too many files, bad framing
            raise ApiError(400, f"The upload could not be read: {exc}") from None
        uploads: list[Upload] = []
        try:
            for item in form.getlist("files"):
                if isinstance(item, str):
                    continue
                name = item.filename or ""
                size = item.size if item.size is not None else 0
                if size > limit:  # never read into memory
                    uploads.append(Upload(name, declared_size=size))
                else:
                    uploads.append(Upload(name, data=await item.read()))
        finally:
            await form.close()
        if not uploads:
            raise ApiError(
                400, "No files were sent: use the multipart field `files` (curl -F files=@notes.md)."
            )
        try:
            results = await run_in_threadpool(library.add, uploads)
        except IngestBusyError:
            raise ApiError(
                409, "Another ingest is running on this index; try again when it has finished."
            ) from None
        except IndexProblem as exc:
            raise ApiError(503, f"The document index is not available: {exc}") from None
        status = upload_status(results)
        body: dict[str, Any] = {"results": [r.to_dict() for r in results]}
        if status != 200:
            body = {"error": " ".join(r.message for r in results), "status": status, **body}
        return JSONResponse(body, status_code=status)

    async def remove_document(name: str, user: str | None = Depends(signed_in)) -> Response:
        library = require_admin(state, user)
        try:
            chunks = await run_in_threadpool(library.remove, name)
        except DocumentNotFoundError:
            raise ApiError(
                404, f"No indexed document is named {name!r}; GET /api/documents lists them."
            ) from None
        except IngestBusyError:
            raise ApiError(
                409, "Another ingest is running on this index; try again when it has finished."
            ) from None
        except IndexProblem as exc:
            raise ApiError(503, f"The document could not be removed: {exc}") from None
        return JSONResponse({"removed": name, "chunks": chunks})

    # FastAPI reads parameters from type hints; under postponed annotations those are strings
    # naming what is imported in this function only, so hand it the real types.
    for endpoint in (list_documents, read_document, add_documents, remove_document):
        endpoint.__annotations__.update(user=str | None, **{"return": Response})
    read_document.__annotations__["name"] = remove_document.__annotations__["name"] = str
    add_documents.__annotations__["request"] = Request

    common: dict[int | str, dict[str, Any]] = {
        401: {"description": "RAG_AUTH is set and no valid HTTP Basic credentials were sent."},
        503: {"description": "The index is not open."},
    }
    admin: dict[int | str, dict[str, Any]] = {
        403: {"description": "Not one of RAG_ADMINS (or uploads are off without RAG_AUTH)."}
    }
    router = APIRouter(tags=["documents"])
    router.add_api_route(
        "/api/documents",
        list_documents,
        methods=["GET"],
        response_model=None,
        summary="List the indexed documents",
        description=(
            "Every document with `source` (its name in the index), `title`, `file_name`, `author`, "
            "`publication`, `chunks`, `indexed` (ISO time), `url` and `uploaded`; `may_change` says "
            "whether the caller may add and remove documents."
        ),
        responses=common,
    )
    router.add_api_route(
        "/api/documents",
        add_documents,
        methods=["POST"],
        response_model=None,
        summary="Add documents (admins)",
        description=(
            "Multipart form, field `files` (one or more .md, .txt, .html, .pdf or .docx files of at most "
            "RAG_MAX_UPLOAD_MB each). Each is indexed and kept in RAG_UPLOAD_DIR, named `uploads/<file>`; "
            "`results` has a line per file (`ok`, `message`, `chunks` or the `problem`). When no file "
            "was indexed the status is that of the first refusal."
        ),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                            },
                            "required": ["files"],
                        }
                    }
                },
            }
        },
        responses={
            **common,
            **admin,
            400: {"description": "A bad file name, an empty or unreadable file, or no files."},
            409: {"description": "Another ingest is running."},
            413: {"description": "A file is over RAG_MAX_UPLOAD_MB."},
            415: {"description": "Not a supported type, or not multipart/form-data."},
        },
    )
    router.add_api_route(
        "/api/documents/{name:path}",
        read_document,
        methods=["GET"],
        response_model=None,
        summary="One document and its passages in order",
        responses={**common, 404: {"description": "No indexed document has that name."}},
    )
    router.add_api_route(
        "/api/documents/{name:path}",
        remove_document,
        methods=["DELETE"],
        response_model=None,
        summary="Remove a document (admins)",
        description="Deletes the document's chunks from the index (Chroma and BM25) and its file.",
        responses={
            **common,
            **admin,
            404: {"description": "No indexed document has that name."},
            409: {"description": "Another ingest is running."},
        },
    )
    return router
