"""A thin typed view over PyYAML's composed node tree, so every error can name its line.

Composing (rather than loading) keeps each value's position and its raw text: ``yes`` and
``no`` stay the words they are instead of YAML 1.1 booleans.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import yaml

from ivr_scripts.flow import FlowError


@dataclass(frozen=True)
class YNode:
    node: yaml.Node
    source: str

    @property
    def line(self) -> int:
        return int(self.node.start_mark.line) + 1

    def error(self, problem: str) -> FlowError:
        return FlowError(self.source, self.line, problem)

    def mapping(self, what: str, allowed: Iterable[str] | None = None) -> dict[str, YNode]:
        return {key: value for key, (_, value) in self.entries(what, allowed).items()}

    def entries(
        self, what: str, allowed: Iterable[str] | None = None
    ) -> dict[str, tuple[YNode, YNode]]:
        """Key -> (key node, value node): the key node's line is where the entry starts."""
        if not isinstance(self.node, yaml.MappingNode):
            raise self.error(f"{what} must be a mapping")
        result: dict[str, tuple[YNode, YNode]] = {}
        keys = set(allowed) if allowed is not None else None
        for key_node, value_node in self.node.value:
            key = YNode(key_node, self.source)
            name = key.scalar(f"a key in {what}")
            if name in result:
                raise key.error(f"duplicate key {name!r} in {what}")
            if keys is not None and name not in keys:
                raise key.error(
                    f"unknown key {name!r} in {what} (allowed: {', '.join(sorted(keys))})"
                )
            result[name] = (key, YNode(value_node, self.source))
        return result

    def scalar(self, what: str) -> str:
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag.endswith(":null"):
            raise self.error(f"{what} must be a single value")
        return str(self.node.value)

    def text(self, what: str) -> str:
        value = self.scalar(what)
        if not value.strip():
            raise self.error(f"missing text: {what} is empty")
        return value

    def items(self, what: str) -> list[YNode]:
        """A sequence; a single value counts as a one-item sequence."""
        if isinstance(self.node, yaml.SequenceNode):
            return [YNode(child, self.source) for child in self.node.value]
        if isinstance(self.node, yaml.ScalarNode | yaml.MappingNode):
            return [self]
        raise self.error(f"{what} must be a list")

    def integer(self, what: str, minimum: int = 0) -> int:
        value = self.scalar(what)
        if not value.isdigit() or int(value) < minimum:
            raise self.error(f"{what} must be an integer >= {minimum}, got {value!r}")
        return int(value)

    def number(self, what: str) -> float:
        value = self.scalar(what)
        try:
            return float(value)
        except ValueError:
            raise self.error(f"{what} must be a number, got {value!r}") from None

    def boolean(self, what: str) -> bool:
        value = self.scalar(what).lower()
        if value not in ("true", "false"):
            raise self.error(f"{what} must be true or false, got {value!r}")
        return value == "true"

    def is_scalar(self) -> bool:
        return isinstance(self.node, yaml.ScalarNode) and not self.is_null()

    def is_null(self) -> bool:
        return isinstance(self.node, yaml.ScalarNode) and self.node.tag.endswith(":null")


def compose(text: str, source: str) -> YNode:
    """The root node of a YAML document; syntax errors become FlowError with the line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = int(mark.line) + 1 if mark is not None else 1
        raise FlowError(source, line, f"invalid YAML: {error.problem or error}") from None
    except yaml.YAMLError as error:
        raise FlowError(source, 1, f"invalid YAML: {error}") from None
    if root is None:
        raise FlowError(source, 1, "the flow file is empty")
    return YNode(root, source)
