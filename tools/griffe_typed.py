"""A griffe extension for the API reference: a method declared typed under ``if TYPE_CHECKING:``
and defined untyped under ``if not TYPE_CHECKING:`` (``DatabaseConnection.subscribe``, whose
runtime definition forwards ``**options`` to the twin's ``Publisher``) is shown with the typed
declaration's signature, which is what type checkers and users see, and the runtime definition's
docstring. griffe keeps the last definition it reads, the untyped one, otherwise.

mkdocs.yml loads it by path (``tools/griffe_typed.py:TypedDeclarations``).
"""

from __future__ import annotations

import ast
from typing import Any

import griffe


class TypedDeclarations(griffe.Extension):
    def __init__(self) -> None:
        super().__init__()
        self._declared: dict[tuple[str, str], griffe.Function] = {}

    def on_function_node(self, *, node: ast.AST | griffe.ObjectNode, agent: Any, **kwargs: Any) -> None:
        # Called before the runtime definition replaces the declaration among the members.
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return
        current: griffe.Object = agent.current
        declared = current.members.get(node.name)
        if isinstance(declared, griffe.Function) and not declared.runtime:
            self._declared[current.path, node.name] = declared

    def on_function_instance(
        self, *, node: ast.AST | griffe.ObjectNode, func: griffe.Function, agent: Any, **kwargs: Any
    ) -> None:
        if func.parent is None:
            return
        declared = self._declared.pop((func.parent.path, func.name), None)
        if declared is None or not func.runtime or _annotated(func):
            return
        func.parameters = declared.parameters
        func.returns = declared.returns
        if func.docstring is None:
            func.docstring = declared.docstring


def _annotated(func: griffe.Function) -> bool:
    return func.returns is not None or any(p.annotation is not None for p in func.parameters)
