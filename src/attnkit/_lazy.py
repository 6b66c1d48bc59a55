"""Lazy package exports (PEP 562): a package names what it offers, and imports it on first use.

The ``attnkit`` command line imports the command modules of its applications to
declare their options; with lazy package ``__init__`` files, ``attnkit qa --help``
imports no torch. A package writes::

    from .._lazy import lazy_exports

    __all__ = ["answer", "Answer"]
    __getattr__, __dir__ = lazy_exports(__name__, {"answer": ".core", "Answer": ".core"})

Example:
    >>> import attnkit.apps.qa as qa
    >>> "answer" in dir(qa)
    True
    >>> from attnkit.apps.qa.evaluate import evaluate   # the submodule shares the function's name
    >>> qa.evaluate is evaluate
    True
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: name -> the (relative) module that defines it.

    A name is imported on first access and cached in the package's namespace, so
    later accesses cost nothing. Where a submodule has the name of an export
    (``qa.evaluate`` the module, ``qa.evaluate`` the function), the export wins, as
    it did with eager ``from .evaluate import evaluate``: importing the submodule
    does not replace the package attribute.
    """
    sys.modules[package].__class__ = _ExportsWin

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__


class _ExportsWin(types.ModuleType):
    """A package module whose exported names are not overwritten by same-named submodules."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and value.__name__ == f"{self.__name__}.{name}":
            exports = getattr(self, "__all__", ())
            if name in exports:
                return  # the import system binding the submodule: keep the export (read lazily)
        super().__setattr__(name, value)
