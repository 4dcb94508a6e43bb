"""Service settings, read from the environment (EDGEMINE_*) or passed in by `edgemine serve`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the service can be configured with."""

    model_config = SettingsConfigDict(env_prefix="EDGEMINE_", env_file=".env", extra="ignore")

    bundle: Path = Field(default=Path("bundle"), description="Bundle directory to serve.")
    expected_model: str | None = Field(
        default=None, description="Refuse bundles whose model identity differs (e.g. ViT-B-32/laion2b_s34b_b79k).")
    public_url: str = Field(default="", description="Absolute base URL for image links in exports.")
    thumbnail_max: int = Field(default=1024, ge=16, le=4096)
    cors_origins: list[str] = Field(default_factory=list)
    faiss_threads: int = Field(
        default=1, ge=1, le=256,
        description="OpenMP threads per FAISS search; requests already run in parallel across threads and "
                    "workers, and a query's few examples gain nothing from more (measured: only overhead).")
