"""Sandboxed Jinja2 templates: compiled once at load, rendered with undefined names as errors.

Alert labels and annotations only ever arrive as data in the render context; they are never
compiled as templates themselves.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from receiver.errors import TemplateError

_ENV = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


@contextmanager
def _as_template_error(where: str) -> Iterator[None]:
    """Turn whatever rendering raises (undefined names, sandbox refusals, bad operations) into
    a TemplateError naming the template's place."""
    try:
        yield
    except jinja2.UndefinedError as e:
        raise TemplateError(where, f"undefined: {e.message}") from e
    except jinja2.TemplateError as e:
        raise TemplateError(where, e.message or type(e).__name__) from e
    except (TypeError, ValueError, ArithmeticError, LookupError) as e:
        raise TemplateError(where, f"{type(e).__name__}: {e}") from e


@dataclass(frozen=True)
class Template:
    """A compiled template string that remembers where it was written (for error messages)."""

    source: str
    where: str
    _compiled: jinja2.Template

    def render(self, context: Mapping[str, Any]) -> str:
        """Render with `context`; TemplateError names the template's place and the cause."""
        with _as_template_error(self.where):
            return self._compiled.render(context)


def compile_template(source: str, where: str) -> Template:
    """Compile a template string; TemplateError if its syntax is wrong."""
    try:
        return Template(source, where, _ENV.from_string(source))
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(where, f"line {e.lineno}: {e.message}") from e


@dataclass(frozen=True)
class Expression:
    """A compiled Jinja2 expression (a `when:` condition) that remembers where it was written."""

    source: str
    where: str
    _compiled: Any

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """Evaluate with `context`; TemplateError names the place and the cause."""
        with _as_template_error(self.where):
            value = self._compiled(**context)
            if isinstance(value, jinja2.Undefined):
                value._fail_with_undefined_error()
            return value


def compile_expression(source: str, where: str) -> Expression:
    """Compile an expression such as `steps.check.exit_code != 0` (surrounding {{ }} allowed)."""
    text = source.strip()
    if text.startswith("{{") and text.endswith("}}"):
        text = text[2:-2]
    try:
        return Expression(source, where, _ENV.compile_expression(text, undefined_to_none=False))
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(where, e.message or "syntax error") from e


TemplateTree = Template | str | int | float | bool | None | list["TemplateTree"] | dict[str, "TemplateTree"]


def compile_tree(value: Any, where: str) -> TemplateTree:
    """Compile every string inside a YAML value (dicts, lists, scalars) into templates."""
    if isinstance(value, str):
        return compile_template(value, where) if ("{{" in value or "{%" in value) else value
    if isinstance(value, list):
        return [compile_tree(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): compile_tree(v, f"{where}.{k}") for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float):
        return value
    raise TemplateError(where, f"unsupported value of type {type(value).__name__}")


def render_tree(tree: TemplateTree, context: Mapping[str, Any]) -> Any:
    """Render a compiled tree into plain data with the same shape."""
    if isinstance(tree, Template):
        return tree.render(context)
    if isinstance(tree, list):
        return [render_tree(v, context) for v in tree]
    if isinstance(tree, dict):
        return {k: render_tree(v, context) for k, v in tree.items()}
    return tree
