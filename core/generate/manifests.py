"""Turning documents into the bytes of one generated file: `---\\n<document>\\n` each."""
from __future__ import annotations

from typing import Any, Iterable

from .emitter import dump


def with_namespace(document: dict, namespace: str) -> dict | None:
    """A copy of `document` with metadata.namespace set, or None when it already has one."""
    metadata = document.get("metadata")
    if metadata is None:
        return {**document, "metadata": {"namespace": namespace}}
    if not isinstance(metadata, dict) or metadata.get("namespace"):
        return None
    return {**document, "metadata": {**metadata, "namespace": namespace}}


def join_documents(documents: Iterable[tuple[str, Any]], inject_namespace: str | None, *, budget: int,
                   label: str) -> str:
    """Documents as written, except those that get a namespace injected, which are re-serialised."""
    parts = []
    for text, value in documents:
        injected = with_namespace(value, inject_namespace) if inject_namespace else None
        if injected is not None:
            text = dump(injected, budget=budget, label=label).rstrip("\n")
        budget -= len(text) + 5
        parts.append(f"---\n{text}\n")
    return "".join(parts)


def dump_documents(documents: Iterable[dict], *, budget: int, label: str) -> str:
    parts = []
    for document in documents:
        text = dump(document, budget=budget, label=label)
        budget -= len(text) + 4
        parts.append(f"---\n{text}")
    return "".join(parts)
