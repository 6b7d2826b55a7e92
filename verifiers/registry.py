"""Finds the verifier class a row's `dataset` names, and builds it from user options.

Built-in verifiers register themselves when their module is imported; third-party packages declare
an entry point in the `olmorl.verifiers` group, loaded the first time its name is asked for.
A built-in wins over an entry point of the same name.
"""

import importlib
import threading
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any, Protocol, TypeVar

from verifiers.base import Verifier
from verifiers.options import build_config, did_you_mean

ENTRY_POINT_GROUP = "olmorl.verifiers"
_BUILTIN_MODULES = (
    "verifiers.code",
    "verifiers.coin",
    "verifiers.contains",
    "verifiers.ifeval",
    "verifiers.judge",
    "verifiers.math",
)

V = TypeVar("V", bound=type[Verifier])


class UnknownVerifierError(ValueError):
    """A verifier name that is neither built in nor declared by an installed package."""


class VerifierLoadError(ImportError):
    """An `olmorl.verifiers` entry point that could not be loaded."""


class _EntryPoint(Protocol):
    """The part of `importlib.metadata.EntryPoint` used here."""

    name: str
    value: str

    def load(self) -> Any: ...


_classes: dict[str, type[Verifier]] = {}
_plugins: dict[str, _EntryPoint] | None = None
# Lookups may come from several reward threads. Re-entrant: loading a plugin runs its @register.
_lock = threading.RLock()


def register(name: str) -> Callable[[V], V]:
    """Class decorator: rows whose `dataset` is `name` are scored by this verifier."""

    def decorator(cls: V) -> V:
        if not (isinstance(cls, type) and issubclass(cls, Verifier)):
            raise TypeError(f"@register({name!r}) needs a Verifier subclass, got {cls!r}")
        with _lock:
            existing = _classes.get(name)
            if existing is not None and existing is not cls:
                raise ValueError(
                    f"verifier name {name!r} is taken by {_qualname(existing)}; "
                    f"cannot register {_qualname(cls)}"
                )
            cls.name = name
            _classes[name] = cls
        return cls

    return decorator


def available_verifiers() -> list[str]:
    """Every name a row may use: built-ins and installed entry points (not loaded)."""
    _import_builtins()
    with _lock:
        return sorted(set(_classes) | set(_plugin_table()))


def get_verifier_class(name: str) -> type[Verifier]:
    """The class registered as `name`; raises UnknownVerifierError with the closest name."""
    _import_builtins()
    with _lock:
        if name in _classes:
            return _classes[name]
        plugin = _plugin_table().get(name)
        if plugin is None:
            known = available_verifiers()
            raise UnknownVerifierError(
                f"unknown verifier {name!r} (known: {', '.join(known)}){did_you_mean(name, known)}"
            )
        return _load_plugin(plugin)


def build_verifier(name: str, options: Mapping[str, Any] | None = None) -> Verifier:
    """An instance of verifier `name`, its `Config` built from `options` and checked."""
    cls = get_verifier_class(name)
    return cls(build_config(cls.Config, options, owner=name))


def _import_builtins() -> None:
    # Imported on first use rather than at the top: the built-in modules import `register` from here.
    # Not under _lock: a thread importing one of them directly would wait for the lock in
    # `register` while holding the import lock this thread needs.
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def _plugin_table() -> dict[str, _EntryPoint]:
    global _plugins
    if _plugins is None:
        _plugins = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return _plugins


def _load_plugin(plugin: _EntryPoint) -> type[Verifier]:
    try:
        cls = plugin.load()
    except Exception as e:
        raise VerifierLoadError(
            f"verifier entry point {plugin.name!r} ({plugin.value}) failed to load: "
            f"{type(e).__name__}: {e}"
        ) from e
    if not (isinstance(cls, type) and issubclass(cls, Verifier)):
        raise VerifierLoadError(
            f"verifier entry point {plugin.name!r} ({plugin.value}) is not a Verifier subclass"
        )
    if cls in _classes.values():
        # Decorated with @register under another name: reachable by both, keep its own name.
        _classes[plugin.name] = cls
        return cls
    return register(plugin.name)(cls)


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
