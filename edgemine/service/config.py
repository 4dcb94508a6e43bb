"""Service settings, read from the environment (EDGEMINE_*) or passed in by `edgemine serve`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from edgemine.bundle.objects import DEFAULT_MAX_OBJECT_BYTES
from edgemine.models.images import DEFAULT_MAX_PIXELS, UPLOAD_MAX_PIXELS

MiB = 1024 * 1024
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


class Settings(BaseSettings):
    """Everything the service can be configured with."""

    model_config = SettingsConfigDict(env_prefix="EDGEMINE_", env_file=".env", extra="ignore")

    bundle: Path = Field(default=Path("bundle"), description="Bundle directory to serve.")
    expected_model: str | None = Field(
        default=None, description="Refuse bundles whose model identity differs (e.g. ViT-B-32/laion2b_s34b_b79k).")
    public_url: str = Field(default="", description="Absolute base URL for image links in exports.")
    scenarios: Path = Field(
        default=Path("scenarios"),
        description="Scenarios folder (YAML files and their locks) for /v1/scenarios and /v1/evaluations; "
                    "relative to the working directory.")
    state_url: SecretStr | None = Field(
        default=None, description="State database URL (postgresql://user:password@host:port/db) shared by "
                                  "several service hosts; unset: state.sqlite in the bundle.")
    thumbnail_max: int = Field(default=1024, ge=16, le=4096)
    # NoDecode: pydantic-settings would parse the variable as JSON only; `a,b` is the usual spelling.
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed by CORS: `a,b` or a JSON list.")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        """Accept `EDGEMINE_CORS_ORIGINS` as comma-separated text or as a JSON list."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON list of origins: {exc}") from exc
        return [part.strip() for part in text.split(",") if part.strip()]

    faiss_threads: int = Field(
        default=1, ge=1, le=256,
        description="OpenMP threads per FAISS search; requests already run in parallel across threads and "
                    "workers, and a query's few examples gain nothing from more (measured: only overhead).")
    blas_threads: int = Field(
        default=1, ge=1, le=256,
        description="BLAS threads per numpy product (exact re-scoring, list assignment); as for FAISS, "
                    "requests already run in parallel, and a multi-threaded BLAS spin-waits on a busy machine "
                    "(measured: a 200k-vector query 2.7x slower with 2 threads than with 1 on a loaded 2-core host).")
    api_key: SecretStr | None = Field(
        default=None, description="When set, every /v1 call except /v1/health needs `Authorization: Bearer <key>`.")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(LOCAL_HOSTS),
        description="Host header values served (DNS rebinding defence); `*` allows any, `*.example.com` a "
                    "domain. From the environment: comma-separated.")
    max_json_body_bytes: int = Field(default=8 * MiB, ge=1024, description="Largest non-multipart request body.")
    max_upload_body_bytes: int = Field(default=64 * MiB, ge=1024, description="Largest multipart upload body.")
    max_upload_file_bytes: int = Field(default=20 * MiB, ge=1024, description="Largest uploaded file.")
    max_upload_files: int = Field(default=16, ge=1, description="Most files in one upload.")
    max_upload_pixels: int = Field(default=UPLOAD_MAX_PIXELS, ge=1, description="Largest uploaded image (pixels).")
    max_image_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS, ge=1, description="Largest image decoded to serve it (after JPEG draft scaling).")
    max_object_bytes: int = Field(
        default=DEFAULT_MAX_OBJECT_BYTES, ge=1024,
        description="Largest object read from object storage (s3://, gs://) to serve one image; checked "
                    "against its size before downloading.")
    full_image_max_edge: int = Field(
        default=4096, ge=16, le=16384, description="Full-size images are re-encoded with at most this edge.")

    @property
    def state_url_text(self) -> str | None:
        """Return the state URL (None: state.sqlite in the bundle)."""
        return self.state_url.get_secret_value() if self.state_url is not None else None

    @field_validator("state_url", mode="before")
    @classmethod
    def _empty_url_is_none(cls, value: Any) -> Any:
        # EDGEMINE_STATE_URL= (empty) means the bundle's state.sqlite.
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None if raw in (None, "") else value

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: Any) -> Any:
        # EDGEMINE_API_KEY= (empty) means no key, never "the empty key".
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None if raw in (None, "") else value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        # EDGEMINE_ALLOWED_HOSTS=a,b (not JSON), as for every other list option of the CLI.
        if isinstance(value, str):
            value = [h.strip() for h in value.split(",") if h.strip()]
        for host in value if isinstance(value, list) else []:
            if "*" in str(host)[1:] or (str(host).startswith("*") and host != "*" and not host.startswith("*.")):
                raise ValueError(f"allowed host {host!r}: a wildcard must be `*` or like `*.example.com`")
        return value
