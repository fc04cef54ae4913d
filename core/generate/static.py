"""Static components: every file directly inside a directory, in name order, one YAML stream each."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .documents import load_documents
from .errors import GenerationError
from .paths import decode, read_capped


def static_documents(directory: Path, checkout: Path, limit: int, display: str) -> list[tuple[str, Any]]:
    """(source text, value) of every document; each must be a mapping (a Kubernetes object).
    Subdirectories are skipped (Fabrikate does not recurse); empty documents are dropped."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        raise GenerationError(f"{display}: static directory not found") from None
    documents = []
    for name in names:
        path = directory / name
        if path.is_dir():
            continue
        label = f"{display}{name}"
        data = read_capped(path, checkout, limit, label)
        if data is None:  # a dangling symlink
            raise GenerationError(f"{label}: file not found")
        for index, (text, value) in enumerate(load_documents(decode(data, label), label), start=1):
            if not isinstance(value, dict):
                raise GenerationError(f"{label}: document {index} is not a mapping (not a Kubernetes object)")
            documents.append((text, value))
    return documents
