"""`check`: can this machine download the registry's models, and what is it working with?"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import vlmkit.gpu
from vlmkit.access import (
    AccessStatus,
    AccessTarget,
    ModelAccess,
    TokenReport,
    check_access,
    check_hub_endpoint,
    find_token,
    hub_unreachable,
    inspect_token,
)
from vlmkit.environment import PackageVersions, package_versions
from vlmkit.gpu import GpuProbe
from vlmkit.registry import Registry, load_registry


@dataclass(frozen=True)
class CheckReport:
    token: TokenReport
    environment: PackageVersions
    gpus: GpuProbe
    models: tuple[ModelAccess, ...]

    @property
    def all_ok(self) -> bool:
        return all(m.status is AccessStatus.OK for m in self.models)

    def _repr_html_(self) -> str:  # Jupyter shows this table instead of the dataclass repr
        from vlmkit.notebook_html import check_report_html

        return check_report_html(self)


def check(*, registry: Registry | None = None, models: list[str] | None = None, token: str | None = None,
          endpoint: str | None = None, timeout: float = 10.0) -> CheckReport:
    """Token, environment, GPUs, and the access status of every requested model (all by default)."""
    check_hub_endpoint()
    registry = registry or load_registry()
    entries = [registry.model(name) for name in models] if models else registry.all_models()
    targets = [AccessTarget(e.key, e.repo, e.kind, e.gated, e.revision) for e in dict.fromkeys(entries)]
    value, source = find_token(token)
    with ThreadPoolExecutor(max_workers=2) as pool:  # versions and NVML beside the network
        versions = pool.submit(package_versions)
        gpus = pool.submit(vlmkit.gpu.probe_gpus)
        # one look-up and one connection first: without a network, every model gets that one reason at once
        unreachable = hub_unreachable(endpoint, timeout) if targets or value else None
        token_report = pool.submit(inspect_token, value, source, endpoint=endpoint, timeout=timeout,
                                   unreachable=unreachable)
        results = check_access(targets, token=value, endpoint=endpoint, timeout=timeout, preflight=False,
                               unreachable=unreachable)
        return CheckReport(token_report.result(), versions.result(), gpus.result(), tuple(results))
