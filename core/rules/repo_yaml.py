"""The one way to read YAML that comes from a repository: bounded size, bounded alias expansion, `file:line` errors.

Repository content is hostile input. A YAML "billion laughs" document is a few hundred bytes whose aliases expand to
10^9 nodes: loading it (or walking the loaded data, as the edit check does) ran for minutes and then exhausted
memory, blocking every other image. So every repo YAML document is first *composed* (parsed into its node graph,
where an alias is the very node object it names, so the graph is no bigger than the text), then the size of the
document *as expanded* is counted over that graph with memoised subtree sizes (linear in the number of distinct
nodes), and only a document whose aliases add at most `ALIAS_EXPANSION_BUDGET` nodes is constructed. A document
that contains itself (`a: &a [*a]`) is refused too.

Every refusal is a `RepoYamlError` (Permanent): `"<file>:<line>: <what is wrong>"`, one line, never the content.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode
from ruamel.yaml.scalarbool import ScalarBoolean

from core.errors import Permanent

MAX_REPO_YAML_BYTES = 1 << 20      # any YAML file of a repository (HLD configs, manifests, kustomizations)
ALIAS_EXPANSION_BUDGET = 100_000   # nodes aliases may add to a document beyond the nodes written in it

__all__ = ["ALIAS_EXPANSION_BUDGET", "MAX_REPO_YAML_BYTES", "RepoYamlError", "check_expansion", "check_size",
           "describe_value", "load_all", "load_one", "node_line", "read_repo_text"]


class RepoYamlError(Permanent, ValueError):
    """A repository YAML file refused: too large, an alias bomb, not YAML, a symlink, ..."""

    def __init__(self, file: str, line: int | None, problem: str) -> None:
        problem = " ".join(problem.split())
        self.file, self.line, self.problem = file, line, problem if len(problem) <= 300 else problem[:297] + "..."
        super().__init__(f"{file}:{line}: {self.problem}" if line else f"{file}: {self.problem}")


# ---------------------------------------------------------------------------------------------------- reading


def read_repo_text(root: Path, rel: str, *, limit: int = MAX_REPO_YAML_BYTES, file: str | None = None) -> str | None:
    """The UTF-8 text of the regular file `rel` inside the checkout `root`; None when there is no such file.

    Refused (RepoYamlError naming `file`, default `rel`): a symbolic link (the file itself or a directory on the
    way), anything resolving outside `root`, anything but a regular file, more than `limit` bytes (checked
    before reading; at most `limit + 1` bytes are ever read), text that is not UTF-8. The content is never put
    in a message.
    """
    file = file or rel
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
        raise RepoYamlError(file, None, "not a path inside the repository")
    root = Path(root)
    current = root
    for part in parts:
        current = current / part
        if os.path.islink(current):
            raise RepoYamlError(file, None, "is a symbolic link; it must be a regular file in the repository "
                                            "(a link could point anywhere on the service host)")
    try:
        status = os.lstat(current)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    if not stat.S_ISREG(status.st_mode):
        raise RepoYamlError(file, None, "is not a regular file")
    if not current.resolve().is_relative_to(root.resolve()):
        raise RepoYamlError(file, None, "resolves outside the checkout")
    check_size(status.st_size, file, limit)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(current, flags)
    except OSError as exc:
        raise RepoYamlError(file, None, f"cannot be read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # swapped since the lstat
            raise RepoYamlError(file, None, "is not a regular file")
        data = handle.read(limit + 1)
    check_size(len(data), file, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RepoYamlError(file, data[:exc.start].count(b"\n") + 1, "is not UTF-8 text") from None


def check_size(size: int | str | bytes, file: str, limit: int = MAX_REPO_YAML_BYTES) -> None:
    """Refuse more than `limit` bytes (a str counts in UTF-8)."""
    if isinstance(size, str):
        size = len(size) if len(size) * 4 <= limit else len(size.encode("utf-8", "surrogatepass"))
    elif isinstance(size, bytes):
        size = len(size)
    if size > limit:
        raise RepoYamlError(file, None, f"is {size:,} bytes, more than the {limit:,}-byte limit for repository YAML")


# ---------------------------------------------------------------------------------------------------- loading


def load_all(text: str, file: str, *, yaml: YAML | None = None, max_bytes: int | None = MAX_REPO_YAML_BYTES,
             budget: int = ALIAS_EXPANSION_BUDGET) -> list[Any]:
    """Every document of a YAML stream, each checked by `check_expansion` before it is constructed.

    `yaml` is the (not thread-safe) ruamel instance to use, round-trip by default; `max_bytes=None` leaves the
    size to the caller (one that already capped what it read).
    """
    return list(_documents(text, file, yaml, max_bytes, budget))


def load_one(text: str, file: str, *, yaml: YAML | None = None, max_bytes: int | None = MAX_REPO_YAML_BYTES,
             budget: int = ALIAS_EXPANSION_BUDGET) -> Any:
    """The single document of `text` (None when empty); more than one document is refused."""
    documents = load_all(text, file, yaml=yaml, max_bytes=max_bytes, budget=budget)
    if len(documents) > 1:
        raise RepoYamlError(file, None, f"holds {len(documents)} YAML documents; expected one")
    return documents[0] if documents else None


def _documents(text: str, file: str, yaml: YAML | None, max_bytes: int | None, budget: int) -> Iterator[Any]:
    if max_bytes is not None:
        check_size(text, file, max_bytes)
    yaml = yaml if yaml is not None else YAML(typ="rt")
    nodes = yaml.compose_all(text)
    node: Node | None = None
    try:
        for node in nodes:
            check_expansion(node, file, budget)
            yield yaml.constructor.construct_document(node)
    except RepoYamlError:
        raise
    except RecursionError:
        raise RepoYamlError(file, _line(None, node), "invalid YAML: nesting too deep") from None
    except Exception as exc:  # ruamel raises many unrelated classes; so do custom constructors
        raise RepoYamlError(file, _line(exc, node), f"invalid YAML: {_describe(exc)}") from None
    finally:
        nodes.close()


def _line(exc: BaseException | None, node: Node | None) -> int:
    mark = (getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)) if exc is not None else None
    if mark is None and node is not None:
        mark = node.start_mark
    return (mark.line + 1) if mark is not None else 1


def _describe(exc: BaseException) -> str:
    if isinstance(exc, YAMLError):
        parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
        message = "; ".join(str(p) for p in parts if p)
        if message:
            return message
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# ---------------------------------------------------------------------------------------------- alias budget


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def check_expansion(root: Node, file: str, budget: int = ALIAS_EXPANSION_BUDGET) -> None:
    """Refuse a composed document whose aliases add more than `budget` nodes once expanded, or that contains
    itself. Runs in time linear in the distinct nodes (each subtree's expanded size is computed once)."""
    size: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            active.discard(key)
            size[key] = 1 + sum(size[id(child)] for child in _children(node))
            continue
        if key in size:
            continue
        if key in active:  # popped again before it finished: it is its own descendant
            raise RepoYamlError(file, node.start_mark.line + 1,
                                "the document contains itself through a YAML alias (an infinite structure)")
        active.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in size)
    expanded = size[id(root)]
    if expanded - len(size) <= budget:
        return
    # Point at the innermost node that alone expands beyond the budget: where the multiplication happens.
    node = root
    while True:
        bigger = [child for child in _children(node) if size[id(child)] > budget]
        if not bigger:
            break
        node = max(bigger, key=lambda child: size[id(child)])
    raise RepoYamlError(file, node.start_mark.line + 1,
                        f"document expands to more than {len(size) + budget:,} nodes through YAML aliases "
                        f"({expanded:,} nodes from {len(size):,} written; an alias bomb?)")


def node_line(node: Any, key: Any = None) -> int:
    """1-based line of `node[key]` (a mapping key or a sequence index), else of `node` itself."""
    lc = getattr(node, "lc", None)
    if lc is None:
        return 1
    try:
        if isinstance(node, CommentedSeq) and key is not None:
            return lc.item(key)[0] + 1
        if key is not None:
            return lc.key(key)[0] + 1
    except (KeyError, IndexError, TypeError):
        pass  # keys pulled in by a YAML merge (<<) carry no position of their own
    return (lc.line or 0) + 1


def describe_value(value: Any) -> str:
    """What a YAML value is, for an error line: `string 'x'`, `number 3`, `a list`..."""
    if value is None:
        return "null"
    if isinstance(value, (bool, ScalarBoolean)):
        return f"boolean {bool(value)}".lower()
    if isinstance(value, str):
        return f"string {value!r}" if len(value) <= 60 else f"string {value[:57]!r}..."
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, CommentedSeq):
        return "a list"
    if isinstance(value, CommentedMap):
        return "a mapping"
    return type(value).__name__
