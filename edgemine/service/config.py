"""Service settings, read from the environment (EDGEMINE_*) or passed in by `edgemine serve`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the service can be configured with."""

    model_config = SettingsConfigDict(env_prefix="EDGEMINE_", env_file=".env", extra="ignore")

    bundle: Path = Field(default=Path("bundle"), description="Bundle directory to serve.")
    expected_model: str | None = Field(
        default=None, description="Refuse bundles whose model identity differs (e.g. ViT-B-32/laion2b_s34b_b79k).")
    public_url: str = Field(default="", description="Absolute base URL for image links in exports.")
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

