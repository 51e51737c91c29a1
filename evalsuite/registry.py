"""One generic registry for everything looked up by name: tasks, backends, scorers.

Registration is a decorator (``@TASKS.register("docqa")``) or a lazy entry (``TASKS.lazy("docqa",
"evalsuite.tasks.docqa")``) that imports its module only when the name is first asked for, so ``list`` and a
run of one task do not import every model and media library. Duplicate names are an error; unknown
names end in one line with the nearest registered names as a suggestion.

Names may carry an argument after a colon (``replay:preds.jsonl``, ``hf:/models/qwen``): ``get``
looks up the part before the first colon unless the whole string is registered, and returns the
entry; ``split`` hands back the argument.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """An unknown name; its message is one line with a suggestion."""

    def __str__(self) -> str:  # KeyError quotes its message; a user should see it plain
        return str(self.args[0])


class UnavailableError(UnknownNameError):
    """A registered name whose module cannot be imported here: a package it needs is not installed."""


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._lazy: dict[str, str] = {}
        self._aliases: dict[str, str] = {}
        self._help: dict[str, str] = {}

    # ---- registration -------------------------------------------------------------------------
    def register(self, name: str, *, help: str = "") -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            if help:
                self._help[name] = help
            elif name not in self._help:
                doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
                self._help[name] = doc[0] if doc else ""
            return obj

        return deco

    def lazy(self, name: str, module: str, *, help: str = "") -> None:
        """Declare that importing ``module`` registers ``name``."""
        if name in self._lazy or name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._lazy[name] = module
        self._help[name] = help

    def alias(self, name: str, target: str, *, help: str = "") -> None:
        if name in self._aliases or name in self._items or name in self._lazy:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._aliases[name] = target
        self._help[name] = help or f"= {target}"

    # ---- lookup -------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(set(self._items) | set(self._lazy) | set(self._aliases))

    def help(self, name: str) -> str:
        return self._help.get(name, "")

    def resolve(self, name: str) -> str:
        """Expand aliases (``fp4`` → ``reference:fp4``)."""
        seen = set()
        while name in self._aliases and name not in seen:
            seen.add(name)
            name = self._aliases[name]
        return name

    def split(self, name: str) -> tuple[str, str | None]:
        """``'replay:x.jsonl'`` → ``('replay', 'x.jsonl')``; registered full names are kept whole."""
        name = self.resolve(name)
        if name in self._items or name in self._lazy:
            return name, None
        if ":" in name:
            head, arg = name.split(":", 1)
            return head, arg
        return name, None

    def get(self, name: str) -> T:
        key, _ = self.split(name)
        if key not in self._items and key in self._lazy:
            module = self._lazy[key]
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as e:  # a third-party package it imports is missing: say which
                missing = (e.name or "").split(".")[0]
                if not missing or missing == module.split(".")[0]:
                    raise
                raise UnavailableError(f"{self.kind} {key!r} needs the Python package {missing!r}, which is not "
                                       f"installed (evalsuite's 'dev' extra installs every optional one)") from None
            if key not in self._items:
                raise RuntimeError(f"importing {self._lazy[key]} did not register {self.kind} {key!r}")
        if key not in self._items:
            raise UnknownNameError(self._unknown_message(name))
        return self._items[key]

    def __contains__(self, name: str) -> bool:
        key, _ = self.split(name)
        return key in self._items or key in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def unknown(self, name: str, *, groups: Iterable[str] = ()) -> UnknownNameError:
        """The error for an unknown ``name``; ``groups``: names that stand for several entries where
        the name was given (``--tasks accuracy``), suggested and listed beside the entries."""
        return UnknownNameError(self._unknown_message(name, list(groups)))

    def _unknown_message(self, name: str, groups: list[str] | None = None) -> str:
        options = self.names()
        close = difflib.get_close_matches(name.split(":", 1)[0], options + (groups or []), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        also = f"; groups: {', '.join(groups)}" if groups else ""
        return f"unknown {self.kind} {name!r}{hint} (known: {', '.join(options)}{also})"


TASKS: Registry = Registry("task")
BACKENDS: Registry = Registry("model")
SCORERS: Registry = Registry("scorer")
