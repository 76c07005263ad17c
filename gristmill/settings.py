"""Every knob Gristmill has, read from `GRISTMILL_*` environment variables."""

from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gristmill.embedding_models import (
    DEFAULT_DIMENSIONS,
    DEFAULT_MODEL,
    EmbeddingModel,
    known_models,
    model_named,
    packaged_tokenizer_path,
    served_model,
)
from gristmill.home import EMBEDDINGS_KEY_FILE, read_secret

MB = 1024 * 1024

# What GRISTMILL_EMBEDDINGS_PRECISION may say (gristmill/embeddings/precision.py decides `auto`).
EmbeddingsPrecision = Literal["auto", "bfloat16", "float32"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRISTMILL_", extra="ignore")

    home: Path = Field(Path(".gristmill"), description="Folder holding the database, LanceDB, blobs and keys.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite (WAL) under home.")
    lancedb_uri: str | None = Field(
        None,
        description="LanceDB directory or URI; default `home/lancedb`. `s3://bucket/prefix` keeps the chunk tables "
        "on an S3-compatible store that every machine reaches (the `s3_*` settings say how).",
    )
    blob_uri: str | None = Field(
        None,
        description="Where sources' bytes (uploads, kept originals) are kept: a folder, default `home/blobs`, or "
        "`s3://bucket/prefix` (the `s3_*` settings say how).",
    )
    s3_endpoint: str | None = Field(
        None, description="Endpoint of the S3-compatible store (`http://minio:9000`); unset: AWS S3 itself."
    )
    s3_region: str = Field("us-east-1", description="Region of the S3 buckets.")
    s3_access_key_id: str | None = Field(
        None, description="Access key for the S3 store; unset: the AWS SDKs' usual chain (environment, files, role)."
    )
    s3_secret_access_key: str | None = Field(None, description="Secret key for the S3 store.")
    s3_allow_http: bool = Field(False, description="Allow a plain-HTTP `s3_endpoint` (a store on the same network).")
    prefect_database_url: str | None = Field(
        None,
        description="Database of the Prefect server `gristmill serve` starts, as Prefect's "
        "`PREFECT_API_DATABASE_CONNECTION_URL` (`postgresql+asyncpg://...`); unset: SQLite under `home/prefect`.",
    )

    embeddings_url: str = Field(
        "http://127.0.0.1:8081/v1", description="Base URL of an OpenAI-compatible embeddings API."
    )
    embeddings_api_key: str | None = Field(
        None,
        description="Bearer key sent to the embeddings API, and required by the embeddings server Gristmill "
        "starts; unset, that server's key is made once in `home/embeddings.key`.",
    )
    embedding_model: str = Field(
        DEFAULT_MODEL,
        description="The service's default model: new libraries embed with it, and a library is `compatible` "
        "when it uses it. One of the known models (the packaged all-MiniLM-L6-v2 and `embedding_models`).",
    )
    embedding_dim: int = Field(
        DEFAULT_DIMENSIONS,
        description="Dimension of `embedding_model` when `embedding_models` does not list it "
        "(then it is served at `embeddings_url`).",
    )
    embedding_models: str | None = Field(
        None,
        description='More models, as a JSON list: `[{"name": "nomic-embed-text", "dimensions": 768, '
        '"url": "http://ollama:11434/v1", "window_tokens": 2048}]` (optional `api_key`, `tokenizer_path`); '
        "any OpenAI-compatible endpoint.",
    )
    embed_batch_size: int = Field(32, description="Chunks per embeddings request.")
    embeddings_precision: EmbeddingsPrecision = Field(
        "auto",
        description="Number format the embeddings server runs the model in; `auto` is bfloat16 where the CPU has "
        "bfloat16 instructions (`avx512_bf16`, AMX, Arm `bf16`: up to 2.5x float32's speed, cosine >= 0.9999 to it), else float32.",
    )
    embeddings_timeout_seconds: float = Field(120.0, description="Read timeout for one embeddings request.")
    tokenizer_path: Path | None = Field(
        None, description="tokenizer.json of the embedding model; default the packaged all-MiniLM-L6-v2's."
    )

    chunk_max_tokens: int = Field(256, description="Default maximum tokens per chunk for new libraries.")
    chunk_overlap_tokens: int = Field(32, description="Default token overlap between chunks for new libraries.")
    vector_index_min_rows: int = Field(
        30_000,
        description="Chunks a library holds before its vector index is built; until then vector search compares "
        "every chunk (exact: 17 ms unfiltered at 30,000 chunks on 2 cores, bench/bench_search.py).",
    )

    fetch_connect_timeout_seconds: float = Field(10.0, description="URL fetch connect timeout.")
    fetch_read_timeout_seconds: float = Field(30.0, description="URL fetch read timeout.")
    fetch_max_redirects: int = Field(5, description="Redirects followed when fetching a URL.")
    fetch_user_agent: str = Field("Gristmill/0.1 (+self-hosted ingestion)", description="User-Agent for fetches.")
    fetch_allowed_networks: str | None = Field(
        None,
        description="Comma-separated CIDRs that URL sources, redirects and webhooks may reach besides public "
        "addresses (e.g. `127.0.0.0/8,10.1.0.0/16`); unset, the CLI's standalone mode allows loopback.",
    )

    keep_originals: bool = Field(
        True,
        description="Keep every source's bytes as submitted or fetched (`GET /v1/sources/{id}/original`, "
        "re-indexing from the original); false: only failed sources keep theirs, for a retry.",
    )

    max_request_bytes: int = Field(
        10 * MB, description="Largest request body other than a file upload; cut off while it is read (413)."
    )
    max_upload_request_bytes: int = Field(
        100 * MB, description="Largest multipart file-upload request, all its files together; cut off while it is read (413)."
    )
    max_inline_bytes: int = Field(1 * MB, description="Largest inline `content` accepted.")
    max_pdf_bytes: int = Field(20 * MB, description="Largest PDF accepted.")
    max_docx_bytes: int = Field(20 * MB, description="Largest DOCX accepted.")
    max_csv_bytes: int = Field(10 * MB, description="Largest CSV accepted.")
    max_text_bytes: int = Field(5 * MB, description="Largest Markdown, TXT, JSON, HTML or code file accepted.")
    max_docx_uncompressed_bytes: int = Field(200 * MB, description="DOCX whose unzipped size is larger is refused.")
    parse_timeout_seconds: float = Field(120.0, description="Time limit for parsing one source.")
    parse_memory_bytes: int = Field(2048 * MB, description="Address-space limit of the parsing child process.")

    api_host: str = Field("127.0.0.1", description="Address the REST API listens on.")
    api_port: int = Field(8080, description="Port of the REST API.")
    embeddings_host: str = Field("127.0.0.1", description="Address the embeddings server listens on.")
    embeddings_port: int = Field(8081, description="Port of the embeddings server started by `gristmill serve`.")
    prefect_port: int = Field(4200, description="Port of the Prefect server started by `gristmill serve`.")
    runner_poll_seconds: float = Field(
        0.25,
        description="How often the flow runner asks Prefect for runs to start; a new job waits half of it on average.",
    )
    runner_flow_limit: int = Field(4, description="Flow runs the runner, or one `gristmill worker`, executes at once.")
    work_pool: str | None = Field(
        None,
        description="Prefect work pool the deployments target: `gristmill worker` processes on any machine run the "
        "flow runs, and `gristmill serve` starts no runner of its own; unset: the runner `serve` starts runs them.",
    )
    reconcile_interval_seconds: float = Field(30.0, description="How often unfinished jobs are checked against Prefect.")
    job_lease_seconds: float = Field(
        60.0,
        description="A running job whose flow run has not renewed its heartbeat for this long is taken as lost "
        "and run again (detected within this plus the reconcile interval; docs/job-states.md).",
    )
    job_max_attempts: int = Field(3, ge=1, description="Flow runs a job gets before a lost one fails it.")
    shutdown_grace_seconds: float = Field(
        30.0, description="On a graceful stop of `gristmill serve`, how long running flow runs get to finish."
    )
    sync_interval_seconds: int = Field(3600, description="Interval of the scheduled URL re-sync deployment.")
    sync_prune_after: int = Field(
        2,
        ge=1,
        description="Consecutive syncs on which a URL source's page answers 404 or 410 before the source is "
        "removed with its chunks (the removal is recorded: status `removed`).",
    )
    webhook_timeout_seconds: float = Field(
        10.0, description="Time one webhook delivery attempt may take, connecting included (at most 5 s of it)."
    )
    webhook_sweep_interval_seconds: float = Field(
        10.0,
        description="How often the API looks for webhook deliveries that are due and that no delivery run holds "
        "(an event whose writer died, a retry now due), and starts a run for them.",
    )

    rate_limit_writes: str = Field(
        "60/minute",
        description="Writes (ingests, uploads, library and key changes, retries) one API key may make, in the "
        "`limits` notation (`60/minute`, `10/second;600/hour`); empty for no limit.",
    )
    rate_limit_searches: str = Field("300/minute", description="Searches one API key may make; empty for no limit.")
    rate_limit_storage_uri: str = Field(
        "memory://",
        description="Where request counts are kept: `memory://` (one API process) or a shared store such as "
        "`redis://127.0.0.1:6379/0` when several API processes serve one service.",
    )

    url: str | None = Field(None, description="A running Gristmill service for the CLI to talk to.")
    api_key: str | None = Field(None, description="API key the CLI sends to `url`.")

    @field_validator("fetch_allowed_networks")
    @classmethod
    def _networks_parse(cls, value: str | None) -> str | None:
        parse_networks(value)
        return value

    @field_validator("embedding_models")
    @classmethod
    def _models_parse(cls, value: str | None) -> str | None:
        known_models(value, default_name=DEFAULT_MODEL, default_dimensions=DEFAULT_DIMENSIONS, url="", api_key=None)
        return value

    @property
    def known_embedding_models(self) -> dict[str, EmbeddingModel]:
        return known_models(
            self.embedding_models,
            default_name=self.embedding_model,
            default_dimensions=self.embedding_dim,
            url=self.embeddings_url,
            api_key=self.resolved_embeddings_api_key,
        )

    def embedding_model_named(self, name: str | None = None) -> EmbeddingModel:
        """A known model a caller names (default: the service's default model); InvalidRequest for an
        unknown name."""
        return model_named(self.known_embedding_models, name or self.embedding_model)

    def library_model(self, name: str) -> EmbeddingModel:
        """The model a library embeds with; ServiceUnavailable once the configuration lost it."""
        return served_model(self.known_embedding_models, name)

    @field_validator("rate_limit_writes", "rate_limit_searches")
    @classmethod
    def _rate_limits_parse(cls, value: str) -> str:
        from limits import parse_many

        if value.strip():
            try:
                parse_many(value)
            except ValueError as error:
                raise ValueError(f"{value!r} is not a rate limit such as '60/minute': {error}") from None
        return value

    @property
    def allowed_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        return parse_networks(self.fetch_allowed_networks)

    @property
    def resolved_embeddings_api_key(self) -> str | None:
        """The key set, else the one made for the embeddings server Gristmill starts in this home."""
        return self.embeddings_api_key or read_secret(self.home, EMBEDDINGS_KEY_FILE)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'gristmill.db').resolve()}"

    @property
    def resolved_lancedb_uri(self) -> str:
        return self.lancedb_uri or str((self.home / "lancedb").resolve())

    @property
    def resolved_blob_uri(self) -> str:
        return self.blob_uri or str((self.home / "blobs").resolve())

    @property
    def lancedb_storage_options(self) -> dict[str, str]:
        """LanceDB's object-store options for an `s3://` `lancedb_uri` (nothing for a folder)."""
        if not self.resolved_lancedb_uri.startswith("s3://"):
            return {}
        options = {"region": self.s3_region, "allow_http": str(self.s3_allow_http).lower()}
        if self.s3_endpoint:
            options["aws_endpoint"] = self.s3_endpoint
        if self.s3_access_key_id and self.s3_secret_access_key:
            options["aws_access_key_id"] = self.s3_access_key_id
            options["aws_secret_access_key"] = self.s3_secret_access_key
        return options

    @property
    def resolved_tokenizer_path(self) -> Path:
        return self.tokenizer_path or packaged_tokenizer_path()


def parse_networks(text: str | None) -> tuple[IPv4Network | IPv6Network, ...]:
    """Comma-separated CIDRs (`127.0.0.0/8,10.1.0.0/16`); a bare address is one host."""
    networks = []
    for part in (text or "").split(","):
        if part.strip():
            try:
                networks.append(ip_network(part.strip(), strict=False))
            except ValueError as error:
                raise ValueError(f"{part.strip()!r} is not a network in CIDR notation: {error}") from None
    return tuple(networks)


@lru_cache
def get_settings() -> Settings:
    return Settings()


def settings_table() -> str:
    """The README's configuration table, generated from the fields above (a test keeps them equal)."""
    lines = ["| variable | default | what |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        lines.append(f"| `GRISTMILL_{name.upper()}` | `{_shown_default(name, field.default)}` | {field.description} |")
    return "\n".join(lines)


def _shown_default(name: str, default: object) -> str:
    if default is None:
        return "(unset)"
    if name.endswith("_bytes") and isinstance(default, int) and default % MB == 0:
        return f"{default // MB} MB"
    return str(default)


if __name__ == "__main__":
    print(settings_table())
