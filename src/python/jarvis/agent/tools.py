"""The tool registry: typed Python callables whose input is validated before the audited call starts.

A tool is a function taking one pydantic model and returning JSON. Validating
first means a malformed request never reaches the audit trail as if the tool
had been attempted; what is recorded as input is the validated model's JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from jarvis.config import ExitCode, JarvisError

ModelT = TypeVar("ModelT", bound=BaseModel)


class UnknownToolError(JarvisError, LookupError):
    """No tool of that name is registered."""

    exit_code = ExitCode.BAD_INPUT


class ToolInputError(JarvisError, ValueError):
    """A tool's input failed validation; nothing was run or recorded."""

    exit_code = ExitCode.BAD_INPUT


@dataclass(frozen=True)
class Tool(Generic[ModelT]):
    name: str
    input_model: type[ModelT]
    function: Callable[[ModelT], Any]
    description: str

    def validate(self, raw: Any) -> ModelT:
        """The tool's input model built from `raw` (None: no arguments); ToolInputError names every bad field."""
        try:
            return self.input_model.model_validate(raw if raw is not None else {})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'input'}: {error['msg']}" for error in exc.errors()
            )
            raise ToolInputError(f"input for tool {self.name!r} is invalid: {problems}") from None


class ToolRegistry:
    def __init__(self) -> None:
        self._tools: dict[str, Tool[Any]] = {}

    def register(
        self, name: str, input_model: type[ModelT], function: Callable[[ModelT], Any], description: str = ""
    ) -> None:
        """Make a tool callable by name; its description defaults to the function's docstring."""
        if name in self._tools:
            raise ValueError(f"a tool named {name!r} is already registered")
        self._tools[name] = Tool(name, input_model, function, description or (function.__doc__ or "").strip())

    def get(self, name: str) -> Tool[Any]:
        """The tool called `name`; UnknownToolError lists the known ones."""
        try:
            return self._tools[name]
        except KeyError:
            raise UnknownToolError(f"unknown tool {name!r}; known tools: {', '.join(sorted(self._tools))}") from None

    def names(self) -> list[str]:
        """Every registered tool name, sorted (what a plan may use)."""
        return sorted(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools
