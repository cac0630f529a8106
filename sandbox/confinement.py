"""What a function's environments get from the host, decided once at start-up (sandbox.host) and
handed to whoever launches their runtimes: the isolation level, the cgroups that may be created,
the private file system, strict's namespace and deny-list, the CPU model, the runtime's user.

Nothing here probes the host: the probes ran once, in sandbox.host, and their findings are values
here, so a launcher (and a test) can be given exactly the confinement it should apply.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .hostlimits import host_limit
from .cgroups import DEFAULT_PIDS_MAX, CgroupSupport, CpuModel, EnvironmentCgroup, lambda_cpu_quota_us
from .isolation import Isolation, PrivateFilesystem
from .runtime_user import RuntimeUser
from .strict import StrictSupport

log = logging.getLogger("lambdalet")


@dataclass(frozen=True, slots=True)
class Limits:
    """One environment's limits: its cgroups (created), and the RLIMIT_DATA guard in MB where no
    memory cgroup limits it (None: the cgroup does, or the environment is not confined)."""

    cgroup: EnvironmentCgroup | None = None
    rlimit_data_mb: int | None = None


@dataclass(frozen=True, slots=True)
class Confinement:
    isolation: Isolation = Isolation.NONE
    memory_mb: int = 128
    cgroups: CgroupSupport = field(default_factory=CgroupSupport)  # what this host may create
    pids_max: int = DEFAULT_PIDS_MAX
    cpu_model: CpuModel = CpuModel.HOST  # LAMBDA: a cpu cgroup with Lambda's share for the memory
    # STANDARD's private /tmp and read-only /var/task, where mount namespaces work.
    filesystem: PrivateFilesystem | None = None
    strict: StrictSupport | None = None  # at STRICT: what strict adds on this host
    user: RuntimeUser | None = None  # the runtime's user, if not lambdalet's own

    @property
    def confined(self) -> bool:
        return self.isolation is not Isolation.NONE

    @property
    def private_filesystem(self) -> PrivateFilesystem | None:
        return self.filesystem if self.confined else None

    @property
    def network_namespace(self) -> bool:
        """Whether each environment gets a network namespace of its own (strict, where it works)."""
        return self.isolation is Isolation.STRICT and self.strict is not None and self.strict.netns

    def limits(self, label: str) -> Limits:
        """Lambda's memory, pids and CPU limits for one environment: through cgroups where the
        host may create them, else RLIMIT_DATA for the memory. `label` names the environment in
        the warning given when its cgroups cannot be made."""
        if not self.confined:
            return Limits()
        cpu_quota_us = lambda_cpu_quota_us(self.memory_mb) if self.cpu_model is CpuModel.LAMBDA else None
        cgroup = None
        if self.cgroups.any or cpu_quota_us is not None:
            try:
                cgroup = EnvironmentCgroup(self.cgroups, memory_mb=self.memory_mb, pids_max=self.pids_max,
                                           cpu_quota_us=cpu_quota_us)
            except OSError as exc:
                reached = host_limit(exc)
                if reached is not None:  # not a reason to run unconfined: refused (sandbox/hostlimits.py)
                    raise reached from None
                log.warning("environment %s runs without cgroups: %s", label, exc)
        if cgroup is None or cgroup.memory is None:
            return Limits(cgroup, self.memory_mb)
        return Limits(cgroup)
