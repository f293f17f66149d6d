"""Typed settings, read from the environment (prefix ``RCE_``) once, through :func:`get_settings`."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "use-multilingual-v3-tuned"


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class Settings(BaseSettings):
    """Everything configurable about the engine and the service."""

    model_config = SettingsConfigDict(env_prefix="RCE_", extra="ignore")

    models_dir: Path = Field(default=PROJECT_ROOT / "models", description="Folder holding one folder per model.")
    model: str = Field(default=DEFAULT_MODEL, description="Name of the model folder under models_dir.")
    index_dir: Path = Field(default=PROJECT_ROOT / "var" / "index", description="Index folder to serve.")
    cache_dir: Path = Field(default=PROJECT_ROOT / "var" / "cache", description="Embedding cache folder.")
    threads: int = Field(default_factory=available_cores, description="Encoder threads (<= free cores).")
    # Texts per encoder call: 256 short texts share more token ids than 64, which the network computes once
    # per batch (1.2x the snippets/s of 64; articles alike; docs/performance.md "The encoder").
    batch_size: int = Field(default=256, ge=1, le=4096, description="Texts per encoder call.")
    load_model: bool = Field(default=True, description="Load the model in the service (needed by POST /related).")
    cors_origins: list[str] = Field(default_factory=list, description='Allowed CORS origins, e.g. ["https://a.org"].')
    admin_token: SecretStr | None = Field(default=None, description="Bearer token of /admin/*; unset = disabled.")
    cache_max_age: int = Field(default=300, ge=0, description="Cache-Control max-age (s) of GET responses.")
    max_body_bytes: int = Field(default=64_000, ge=1_024, description="Largest accepted request body.")
    response_cache_size: int = Field(default=4096, ge=0, description="GET responses kept in memory (0 = off).")
    response_cache_bytes: int = Field(
        default=16 * 1024 * 1024, ge=0, description="Bytes of GET response bodies kept in memory (0 = off)."
    )
    work_threads: int = Field(
        default_factory=lambda: max(1, available_cores() - 1),
        ge=1,
        description="Threads for the CPU-heavy part of requests (drafts, diverse or deep lists, explanations).",
    )
    work_queue: int = Field(default=16, ge=0, description="Requests waiting for those threads before 503s.")
    rate_limit_drafts: str = Field(
        default="10/10 seconds", description="POST /related per client address ('off' when a proxy limits)."
    )
    rate_limit_heavy: str = Field(
        default="30/10 seconds",
        description="Diverse, explained or deep related lists and title searches per client address ('off').",
    )
    watch: bool = Field(
        default=False,
        description="Also reload when the index folder changes by other means than the build script: a new "
        "`current` link, an edited overrides.json (writes, builds and reloads are always followed).",
    )
    follow_interval: float = Field(
        default=0.1,
        gt=0,
        le=60,
        description="Seconds between looks at the catalog store (and with watch, the index folder): writes, "
        "builds and reloads made by other workers are served within this plus the time to compose them.",
    )
    log_format: Literal["json", "text"] | None = Field(
        default=None,
        description="Log lines as JSON objects or text, one per request and per event (reload, write, build); "
        "unset: the service leaves logging as its host set it up (tests, embedding).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Least level logged.")
    access_log: bool = Field(default=True, description="One log line per request (with log_format set).")
    metrics: bool = Field(default=True, description="Prometheus metrics at /metrics.")

    @field_validator("rate_limit_drafts", "rate_limit_heavy")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse

        if value.strip().lower() not in ("", "off"):
            try:
                parse(value)
            except ValueError:
                raise ValueError(
                    f"{value!r} is not a rate limit; write e.g. '20/10 seconds', '5/second' or 'off'"
                ) from None
        return value

    @field_validator("threads")
    @classmethod
    def _threads_within_cores(cls, value: int) -> int:
        cores = available_cores()
        if value < 1:
            raise ValueError(f"threads must be >= 1, got {value}")
        # More threads than cores made the encoder an order of magnitude slower (docs/performance.md).
        return min(value, cores)


CONFIG_ENV = "RCE_CONFIG"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, validated on first use: the environment, over the file named by
    ``RCE_CONFIG`` (``serve.py --config``) or else a ``.env`` file in the working directory, if there is one.

    Raises :class:`ConfigFileError` when ``RCE_CONFIG`` names a file that does not exist."""
    named = os.environ.get(CONFIG_ENV)
    if named and not Path(named).is_file():
        raise ConfigFileError(f"{CONFIG_ENV}={named}: no such file; give an existing settings file or unset it")
    return Settings(_env_file=named or ".env", _env_file_encoding="utf-8")


class ConfigFileError(ValueError):
    """The settings file named by ``RCE_CONFIG`` is missing."""


def effective_config(settings: Settings) -> dict[str, object]:
    """The settings as JSON values, secrets masked: what ``/ready`` shows and the service logs at start."""
    return settings.model_dump(mode="json")
