"""Playbooks: named lists of steps, each an action with templated parameters. Pure: no I/O.

Steps form a DAG through `needs` (see planner.py); without `needs` they run in file order.
Each step's `with:` is validated against its action's
parameter model when the playbook loads, and again, rendered, when the step runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from receiver.approval import APPROVAL
from receiver.durations import parse_duration
from receiver.errors import ConfigError, ConfigErrors, TemplateError
from receiver.planner import Plan, PlanError, build_plan
from receiver.templates import (
    Expression,
    Template,
    TemplateTree,
    compile_expression,
    compile_template,
    compile_tree,
)
from receiver.yamlsource import Document

T = TypeVar("T")

DEFAULT_PLAYBOOK_TIMEOUT_S = 30 * 60.0
# Steps of one execution that may run at once when the DAG allows it.
DEFAULT_MAX_PARALLEL = 4


# Playbook hooks, in the order they run once the execution's outcome is known.
HOOKS = ("on_success", "on_failure", "always")


class RetrySpec(BaseModel):
    """`retry:` of a step: how many attempts in all, and the exponential backoff between them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: int = Field(default=1, ge=1, le=100)
    backoff: float = 1.0
    max_backoff: float = 300.0

    @field_validator("backoff", "max_backoff", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)

    def delay(self, failed_attempt: int, rand: float) -> float:
        """Seconds to wait after attempt `failed_attempt` (1-based) failed; `rand` in [0, 1).

        The base doubles each time up to max_backoff; jitter takes it down by up to half, so
        replicas retrying the same thing spread out.
        """
        base = min(self.max_backoff, self.backoff * 2.0 ** (failed_attempt - 1))
        return base * (0.5 + rand / 2)


NO_RETRY = RetrySpec()


# Rollbacks and hooks run outside the playbook's clock (it may have run out), with their own.
DEFAULT_ACTION_TIMEOUT_S = 5 * 60.0


class ActionSpec(BaseModel):
    """A step's `rollback:` or a playbook hook: an action with its parameters and timeout."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    action: str = Field(min_length=1)
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    timeout: float = DEFAULT_ACTION_TIMEOUT_S

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)


class StepSpec(BaseModel):
    """One step as written in YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str = Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")
    action: str = Field(min_length=1)
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    needs: list[str] | None = None
    when: str | None = None
    retry: RetrySpec = NO_RETRY
    continue_on_error: bool = False
    rollback: ActionSpec | None = None
    timeout: float | None = None
    idempotent: bool = False

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float | None:
        return None if v is None else parse_duration(v)


class PlaybookSpec(BaseModel):
    """A playbook as written in YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    description: str = ""
    timeout: float = DEFAULT_PLAYBOOK_TIMEOUT_S
    max_parallel: int = Field(default=DEFAULT_MAX_PARALLEL, ge=1, le=64)
    lock: str | None = None
    lock_policy: Literal["wait", "skip"] = "wait"
    steps: list[dict[str, Any]] = Field(min_length=1)
    on_success: list[dict[str, Any]] = Field(default_factory=list)
    on_failure: list[dict[str, Any]] = Field(default_factory=list)
    always: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)


@dataclass(frozen=True)
class Compensation:
    """A loaded rollback or hook: its action, compiled `with:`, and its own timeout."""

    action: str
    with_: TemplateTree
    timeout_s: float


@dataclass(frozen=True)
class Step:
    """A loaded step: its action name and compiled `with:` templates."""

    id: str
    action: str
    with_: TemplateTree
    timeout_s: float | None
    needs: tuple[str, ...] | None = None
    when: Expression | None = None
    retry: RetrySpec = NO_RETRY
    continue_on_error: bool = False
    rollback: Compensation | None = None
    idempotent: bool = False  # safe to run again when a crash interrupted it


@dataclass(frozen=True)
class Playbook:
    """A loaded playbook."""

    name: str
    description: str
    timeout_s: float
    steps: tuple[Step, ...]
    plan: Plan
    max_parallel: int
    source: str
    hooks: dict[str, tuple[Compensation, ...]] = field(default_factory=dict)  # on_success, ...
    lock: Template | None = None  # names the target: one execution per rendered name at a time
    lock_policy: str = "wait"  # another execution holds the lock: "wait" in order, or "skip"
    definition: str = ""  # the document it was loaded from, as canonical JSON (see definition_of)
    version: str = ""  # a digest of `definition`: executions record the version they run


def definition_of(data: Any) -> tuple[str, str]:
    """A playbook document as canonical JSON, and its version: the first 12 hex digits of its
    SHA-256. Equal documents give equal versions whatever their YAML layout or comments."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return text, hashlib.sha256(text.encode()).hexdigest()[:12]


def _compile_action(
    action: str,
    with_: dict[str, Any],
    doc: Document,
    base: tuple[str | int, ...],
    where: str,
    actions: Mapping[str, type[BaseModel]],
) -> TemplateTree:
    """Check that the action exists and its `with:` is valid, then compile its templates."""
    model = actions.get(action)
    if model is None:
        known = ", ".join(sorted(actions))
        raise ConfigError(
            f"unknown action {action!r} (known: {known})",
            file=doc.file,
            line=doc.line_of((*base, "action")),
            where=where,
        )
    try:
        model.model_validate(with_)
    except ValidationError as e:
        errs = doc.errors_from(e, base=(*base, "with"), where=where)
        raise ConfigErrors(
            [ConfigError(f"with.{x.message}", file=x.file, line=x.line, where=where) for x in errs]
        ) from e
    try:
        return compile_tree(with_, f"{where} with")
    except TemplateError as e:
        raise ConfigError(str(e), file=doc.file, line=doc.line_of((*base, "with")), where=where) from e


def _not_approval(action: str, doc: Document, base: tuple[str | int, ...], where: str) -> None:
    if action == APPROVAL:
        raise ConfigError(
            "approval can only be a step, not a rollback or a hook",
            file=doc.file,
            line=doc.line_of((*base, "action")),
            where=where,
        )


def _located(doc: Document, base: tuple[str | int, ...], where: str, load: Callable[[], T]) -> T:
    """Run `load`, turning any validation or config error it raises into located ConfigErrors."""
    try:
        return load()
    except ValidationError as e:
        raise ConfigErrors(doc.errors_from(e, base=base, where=where)) from e
    except ConfigError as e:
        raise ConfigErrors([e]) from e


def _load_hook(
    raw: Any, doc: Document, base: tuple[str | int, ...], where: str, actions: Mapping[str, type[BaseModel]]
) -> Compensation:
    h = ActionSpec.model_validate(raw)
    _not_approval(h.action, doc, base, where)
    tree = _compile_action(h.action, h.with_, doc, base, where, actions)
    return Compensation(action=h.action, with_=tree, timeout_s=h.timeout)


def _load_step(
    raw: Any,
    doc: Document,
    base: tuple[str | int, ...],
    where: str,
    actions: Mapping[str, type[BaseModel]],
) -> Step:
    spec = StepSpec.model_validate(raw)
    swhere = f"{where} step {spec.id!r}"
    tree = _compile_action(spec.action, spec.with_, doc, base, swhere, actions)
    rollback = None
    if spec.rollback is not None:
        rb = spec.rollback
        rwhere = f"{swhere} rollback"
        _not_approval(rb.action, doc, (*base, "rollback"), rwhere)
        rtree = _compile_action(rb.action, rb.with_, doc, (*base, "rollback"), rwhere, actions)
        rollback = Compensation(action=rb.action, with_=rtree, timeout_s=rb.timeout)
    when = None
    if spec.when is not None:
        try:
            when = compile_expression(spec.when, f"{swhere} when")
        except TemplateError as e:
            raise ConfigError(str(e), file=doc.file, line=doc.line_of((*base, "when")), where=swhere) from e
    return Step(
        id=spec.id,
        action=spec.action,
        with_=tree,
        timeout_s=spec.timeout,
        needs=tuple(spec.needs) if spec.needs is not None else None,
        when=when,
        retry=spec.retry,
        continue_on_error=spec.continue_on_error,
        rollback=rollback,
        idempotent=spec.idempotent,
    )


def load_playbook(
    doc: Document, actions: Mapping[str, type[BaseModel]]
) -> tuple[Playbook | None, list[ConfigError]]:
    """Load one playbook document, checking every step's action and parameters.

    `actions` maps each known action name to the pydantic model of its `with:` parameters.
    """
    try:
        spec = PlaybookSpec.model_validate(doc.data)
    except ValidationError as e:
        return None, doc.errors_from(e)
    where = f"playbook {spec.name!r}"
    steps: list[Step] = []
    errors: list[ConfigError] = []
    seen: set[str] = set()
    for i, raw in enumerate(spec.steps):
        base: tuple[str | int, ...] = ("steps", i)
        try:
            step = _located(
                doc, base, f"{where} steps[{i}]", partial(_load_step, raw, doc, base, where, actions)
            )
        except ConfigErrors as e:
            errors.extend(e.errors)
            continue
        if step.id in seen:
            errors.append(
                ConfigError(
                    f"duplicate step id {step.id!r}", file=doc.file, line=doc.line_of(base), where=where
                )
            )
        seen.add(step.id)
        steps.append(step)
    hooks: dict[str, tuple[Compensation, ...]] = {}
    for kind in HOOKS:
        loaded: list[Compensation] = []
        for i, raw in enumerate(getattr(spec, kind)):
            base = (kind, i)
            hwhere = f"{where} {kind}[{i}]"
            try:
                loaded.append(
                    _located(doc, base, hwhere, partial(_load_hook, raw, doc, base, hwhere, actions))
                )
            except ConfigErrors as e:
                errors.extend(e.errors)
        hooks[kind] = tuple(loaded)
    lock = None
    if spec.lock is not None:
        try:
            lock = compile_template(spec.lock, f"{where} lock")
        except TemplateError as e:
            errors.append(ConfigError(str(e), file=doc.file, line=doc.line_of(("lock",)), where=where))
    if errors:
        return None, errors
    try:
        plan = build_plan(
            [(s.id, s.needs) for s in steps], tolerant=[s.id for s in steps if s.continue_on_error]
        )
    except PlanError as e:
        index = next(i for i, s in enumerate(steps) if s.id == e.step)
        line = doc.line_of(("steps", index, "needs"))
        return None, [ConfigError(str(e), file=doc.file, line=line, where=where)]
    definition, version = definition_of(doc.data)
    return (
        Playbook(
            name=spec.name,
            description=spec.description,
            timeout_s=spec.timeout,
            steps=tuple(steps),
            plan=plan,
            max_parallel=spec.max_parallel,
            hooks=hooks,
            source=f"{doc.file}:{doc.line_of(()) or 1}",
            lock=lock,
            lock_policy=spec.lock_policy,
            definition=definition,
            version=version,
        ),
        [],
    )
