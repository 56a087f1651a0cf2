"""In-memory state of the operator per HiggsDeployment, fed by the watch streams (children, pods, secrets)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .scaling import Recommendation
from .secrets import SecretCheck


@dataclass
class ChildInfo:
    api_version: str
    kind: str
    name: str
    namespace: str
    render_hash: str | None
    resource_version: str | None
    generation: int | None = None


@dataclass
class ResourceState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dirty: bool = False
    force: bool = False  # next reconcile re-applies every child (a child was edited by someone else)
    children: dict[tuple[str, str, str], ChildInfo] = field(default_factory=dict)
    deployment: dict | None = None
    pods: dict[str, dict] = field(default_factory=dict)
    secret: SecretCheck | None = None
    secret_refs: set[tuple[str, str]] = field(default_factory=set)
    last_secret_reason: str | None = None
    last_warning: str | None = None  # reason of the last Warning event posted from the status
    api_key: str | None = None
    history: tuple[Recommendation, ...] = ()
    next_poll: float = 0.0
    last_resync: float = 0.0
    last_status_refresh: float = 0.0
    render_cache: tuple[str, list[dict]] | None = None
    rendered_names: frozenset = frozenset()
    endpoint: str = ""
    failure: tuple[str, str] | None = None  # (reason, message) of the last failed render or apply
    autoscale_status: dict = field(default_factory=dict)

    def poke(self, force: bool = False) -> None:
        """Ask the resource's daemon to reconcile now (``force``: re-apply unchanged children too)."""
        self.dirty = True
        self.force = self.force or force
        self.wake.set()


class Registry:
    """ResourceState by owner uid, and which resources refer to which Secret."""

    def __init__(self) -> None:
        self.by_uid: dict[str, ResourceState] = {}

    def get(self, uid: str) -> ResourceState:
        return self.by_uid.setdefault(uid, ResourceState())

    def drop(self, uid: str) -> None:
        self.by_uid.pop(uid, None)

    def referring(self, namespace: str, name: str) -> list[ResourceState]:
        return [s for s in self.by_uid.values() if (namespace, name) in s.secret_refs]
