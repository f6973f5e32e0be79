"""YAML documents loaded together with the line of every key, so errors can name file and line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from receiver.errors import ConfigError

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Document:
    """One YAML document: its data and the 1-based line of every key and list item by path."""

    file: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """Line of the deepest known prefix of `path` (pydantic error locations fit here)."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), None)

    def errors_from(self, exc: ValidationError, *, base: Path_ = (), where: str = "") -> list[ConfigError]:
        """Turn a pydantic ValidationError on part of this document into located ConfigErrors."""
        out: list[ConfigError] = []
        for err in exc.errors():
            loc = tuple(x for x in err["loc"] if isinstance(x, str | int))
            key = ".".join(str(x) for x in loc) or "(document)"
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            out.append(
                ConfigError(
                    f"{key}: {msg}",
                    file=self.file,
                    line=self.line_of(base + loc),
                    where=where or None,
                )
            )
        return out


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int], loader: yaml.SafeLoader) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            sub = (*path, str(key))
            lines[sub] = key_node.start_mark.line + 1
            _walk(value_node, sub, lines, loader)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), lines, loader)


def load_documents(path: Path) -> list[Document]:
    """Parse every document of a YAML file; a syntax error becomes a ConfigError with its line."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read file: {e.strerror or e}", file=name) from e
    loader = yaml.SafeLoader(text)
    docs: list[Document] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            data = loader.construct_document(node)
            lines: dict[Path_, int] = {}
            _walk(node, (), lines, loader)
            docs.append(Document(file=name, data=data, lines=lines))
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise ConfigError(f"invalid YAML: {e.problem or e}", file=name, line=line) from e
    finally:
        loader.dispose()
    return docs
