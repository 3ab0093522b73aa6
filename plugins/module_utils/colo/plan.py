"""Plans: what a COLO sequence will do, decided before anything is done.

A planner (checkpoint.plan_*, failover.plan_*, replication.plan, proxy.plan)
reads a VMState and returns a Plan, or raises where the sequence must refuse.
Check mode lists plan.describe(); a real run calls plan.apply(qmp), which runs
the steps in order and returns what QEMU was really told (a step may find its
work done by then and return nothing). The Xen planners (xen_colo.plan_*) have
the same shape with shell commands as steps.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient

# A step's action: given the VM's QMP client, do it and return the actions taken.
Action = Callable[[QMPClient], list[str]]


@dataclass(frozen=True)
class Step:
    """One step of a plan: what check mode shows (none: a wait or check) and the action."""

    texts: tuple[str, ...]
    run: Action


@dataclass
class Plan:
    """Steps in order, warnings found while planning, and an undo for a failed apply."""

    steps: list[Step] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Called with the client when a step raised, before the error goes on.
    undo: Callable[[QMPClient], None] | None = None

    def add(self, run: Action, *texts: str) -> None:
        self.steps.append(Step(texts, run))

    @property
    def changed(self) -> bool:
        return any(s.texts for s in self.steps)

    def describe(self) -> list[str]:
        """The steps check mode reports."""
        return [t for s in self.steps for t in s.texts]

    def apply(self, qmp: QMPClient) -> list[str]:
        done: list[str] = []
        try:
            for step in self.steps:
                done += step.run(qmp)
        except Exception:
            if self.undo is not None:
                self.undo(qmp)
            raise
        return done


def send(command: str, arguments: dict[str, Any] | None, text: str) -> Action:
    """An action that sends one QMP command and reports text."""
    def run(qmp: QMPClient) -> list[str]:
        qmp.execute(command, arguments)
        return [text]
    return run


def require_role(role: str | None, wanted: str, what: str) -> None:
    """Refuse `what` on a VM whose record says it was started in another role."""
    if role != wanted:
        raise ColoError(f"{what} runs on the {wanted}; this VM was started as {role} "
                        f"(started with colo.ft.vm role={wanted})")
