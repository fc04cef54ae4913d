"""Every error class the project defines is Retryable or Permanent (one rooted hierarchy)."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import core
from core.errors import AutopilotError, Permanent, Retryable, is_permanent


# Roots of an adapter's family (every concrete member below them is classified).
_FAMILY_ROOTS = ("AzdoError", "GitError")


def _project_error_classes():
    for info in pkgutil.walk_packages(core.__path__, "core."):
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == module.__name__ and not obj.__name__.startswith("_"):
                yield obj


@pytest.mark.parametrize("cls", sorted(set(_project_error_classes()), key=lambda c: c.__qualname__),
                         ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_every_error_class_is_rooted_and_classified(cls):
    assert issubclass(cls, AutopilotError)
    if cls in (AutopilotError, Retryable, Permanent) or cls.__name__ in _FAMILY_ROOTS:
        return
    assert issubclass(cls, Retryable) != issubclass(cls, Permanent), f"{cls} must be exactly one of them"


def test_only_permanent_errors_skip_the_retries():
    from core.adapters.azdo import AzdoAuthError, AzdoTransientError
    from core.adapters.storage import StorageUnavailable

    assert is_permanent(AzdoAuthError("401"))
    assert not is_permanent(AzdoTransientError("503"))
    assert not is_permanent(StorageUnavailable("down"))
    assert not is_permanent(RuntimeError("unknown: retried, never silently poisoned"))
