"""Typed errors of the network compiler. Each message says what is wrong and what is allowed."""

from __future__ import annotations

from collections.abc import Sequence

from firstspike.hal.errors import ConfigDecodeError


class CompileError(Exception):
    """Base of every error the compiler raises."""


class IRError(CompileError, ValueError):
    """A :class:`~firstspike.compiler.ir.Network` or :class:`~firstspike.compiler.ir.Layer` is malformed (shapes,
    types)."""


class NIRImportError(CompileError, ValueError):
    """A NIR graph cannot be mapped to the IR; names the node and the reason."""

    def __init__(self, node: str, reason: str) -> None:
        self.node = node
        self.reason = reason
        super().__init__(f"NIR node {node!r}: {reason}")


class PlacementError(CompileError):
    """Placement was asked to place something the design rules reject (call ``rules.check`` first)."""


class DesignRuleViolation(CompileError):  # noqa: N818  # the name the issue specifies
    """One violated design rule: the rule id, where (layer/neuron), the offending value and the limit.

    ``severity`` is ``"error"`` (the network cannot be compiled) or ``"warning"`` (it compiles, with a
    loss the user should know about, e.g. clipped weights).
    """

    def __init__(self, rule: str, where: str, value: object, limit: object, detail: str = "",
                 severity: str = "error") -> None:
        if severity not in ("error", "warning"):
            raise ValueError(f"severity must be 'error' or 'warning', not {severity!r}")
        self.rule = rule
        self.where = where
        self.value = value
        self.limit = limit
        self.detail = detail
        self.severity = severity
        msg = f"{rule}: {where}: value {value} violates limit {limit}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)

    @property
    def message(self) -> str:
        return str(self)


class DesignRuleErrors(CompileError):  # noqa: N818  # the name the issue specifies
    """Every violated design rule of a network at once (the message lists each one)."""

    def __init__(self, violations: Sequence[DesignRuleViolation]) -> None:
        self.violations = tuple(violations)
        lines = [f"{len(self.violations)} design rule violation(s):"]
        lines += [f"  - {v}" for v in self.violations]
        super().__init__("\n".join(lines))

    @property
    def rules(self) -> tuple[str, ...]:
        """The rule ids violated (in report order, with repeats)."""
        return tuple(v.rule for v in self.violations)


class ArtifactDecodeError(ConfigDecodeError, CompileError):
    """Bytes are not a valid compiled-network file: truncated, corrupted, or of another version."""
