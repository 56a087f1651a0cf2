"""The resolved configuration of one emulated server (built by ``cli``, read by ``api`` and ``pipeline``)."""

from __future__ import annotations

from dataclasses import dataclass

from higgs_sim.omni.deploy import DeployConfig


@dataclass(frozen=True)
class OmniConfig:
    model: str
    served_model_names: tuple[str, ...]
    host: str
    port: int
    deploy: DeployConfig
    api_key: str | None = None
    log_stats: bool = True
    enable_request_id_headers: bool = False
    allowed_local_media_path: str | None = None
    # --sim-* flags
    profile: str = "calibrated"
    slowdown: float = 3.4
    gpu_memory_gib: float = 80.0
    startup_seconds: float = 0.0
    seed: int = 0
    trace_file: str | None = None
    error_rate: float = 0.0
    schema_error_status: int = 400
    shutdown_timeout: float = 30.0

    @property
    def served_model_name(self) -> str:
        return self.served_model_names[0]
