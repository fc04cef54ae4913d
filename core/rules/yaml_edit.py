"""Byte-preserving edits of image fields, and the parsed-data diff that proves a change touches only image fields.

An edit locates the targeted scalar with the YAML event index (exact character span) and splices the new value
into the original text; every other byte stays. The result is re-parsed and must differ from the original in the
targeted fields only, else `EditError` and nothing is written. Files are read and loaded through `core.rules.repo_yaml`:
at most `MAX_REPO_YAML_BYTES`, and a document whose aliases expand beyond the budget (a YAML bomb) is refused
before anything is expanded.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Sequence

from ruamel.yaml import YAML
from ruamel.yaml.comments import TaggedScalar

from core.errors import Permanent
from core.model.images import ImageRefError, parse_image_ref, same_image, validate_digest, validate_tag
from core.rules.repo_yaml import RepoYamlError, check_size, load_all, read_repo_text
from core.rules.targets import (
    FABRIKATE_IMAGE_FIELDS,
    ImageFields,
    KUSTOMIZATION_NAMES,
    is_container_image_path,
    LocatorError,
    Target,
    YamlIndex,
    YamlIndexError,
    YamlNode,
    YamlPath,
    format_locator,
    index_yaml,
    resolves_to,
)


class EditError(Permanent, ValueError):
    """An edit that cannot be made exactly as asked; nothing was written."""


@dataclass(frozen=True)
class FieldChange:
    file: str
    locator: str
    old: str | None
    new: str


@dataclass(frozen=True)
class EditResult:
    text: str
    changes: tuple[FieldChange, ...]  # empty => text unchanged


@dataclass(frozen=True)
class ImageDiff:
    only_image_fields: bool
    changes: tuple[FieldChange, ...]
    other_differences: tuple[str, ...]


@dataclass(frozen=True)
class _FieldEdit:
    path: YamlPath  # index path of the scalar to set
    value: str
    old: str | None
    after: tuple[str, ...]  # sibling keys to add the key after, in order of preference, when it is missing
    locator: str


_PLAIN_SAFE = re.compile(r"[A-Za-z0-9_./][A-Za-z0-9_./@:+-]*")


def render_scalar(value: str, style: str | None = None) -> str:
    """YAML text for a string: in the given quoting style, or plain when it reads back as the same string under
    YAML 1.1 and 1.2 (Helm's go-yaml reads `1.10`, `y`, `on` as non-strings), else double-quoted."""
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style != '"' and _PLAIN_SAFE.fullmatch(value) and not value.endswith(":") and all(
            resolves_to(value, version) == "str" for version in ((1, 1), (1, 2))):
        return value
    return json.dumps(value, ensure_ascii=False)


# ------------------------------------------------------------------------------------------------------- set_image


def set_image(text: str, target: Target, new_tag: str, new_digest: str | None = None,
              new_repository: str | None = None) -> EditResult:
    """Set the tag (and digest / repository when given) of the image field `target` names in `text`.

    Raises EditError when the field no longer holds the target's image, when a digest-pinned field would get a
    new tag without a new digest, or when the re-parsed result differs in anything but the edited fields.
    """
    where = f"{target.file}#{target.locator}"
    try:
        validate_tag(new_tag)
        if new_digest is not None:
            validate_digest(new_digest)
        if new_repository is not None and parse_image_ref(new_repository).name != new_repository:
            raise EditError(f"{where}: new repository {new_repository!r} must not carry a tag or digest")
    except ImageRefError as exc:
        raise EditError(f"{where}: {exc}") from None
    index = _index(text, target.file)
    try:
        base = target.index_path()
    except LocatorError as exc:
        raise EditError(f"{where}: {exc}") from None
    planners = {"fabrikate": _plan_fabrikate, "manifest": _plan_manifest, "kustomize": _plan_kustomize}
    if target.kind not in planners:
        raise EditError(f"{where}: unknown target kind {target.kind!r}")
    edits = planners[target.kind](index, target, base, new_tag, new_digest, new_repository)
    new_text = text
    for edit in edits:
        new_text = _write_field(new_text, edit, target.file)
    if not edits:
        return EditResult(text, ())
    _verify(text, new_text, target.file, {edit.path: edit.value for edit in edits})
    return EditResult(new_text, tuple(FieldChange(target.file, edit.locator, edit.old, edit.value) for edit in edits))


def _index(text: str, file: str) -> YamlIndex:
    try:
        check_size(text, file)
        return index_yaml(text)
    except RepoYamlError as exc:
        raise EditError(str(exc)) from None
    except YamlIndexError as exc:
        raise EditError(f"{file}: does not parse: {exc}") from None


def _stale(target: Target, found: object) -> EditError:
    return EditError(f"{target.file}#{target.locator}: holds {found!r}, not image {target.repository!r}; "
                     "the target is stale")


def _scalar(index: YamlIndex, path: YamlPath, target: Target) -> str | None:
    node = index.get(path)
    if node is not None and node.kind in ("mapping", "sequence"):
        raise EditError(f"{target.file}#{format_locator(path[1:])}: is a {node.kind}, not a scalar")
    return node.text() if node else None


def _tag_and_digest_edits(target: Target, mapping: YamlPath, tag_key: str, after_tag: tuple[str, ...],
                          current_tag: str | None, current_digest: str | None,
                          new_tag: str, new_digest: str | None) -> list[_FieldEdit]:
    """Edits of the tag and digest keys of an image map. A digest-only pin stays digest-only."""
    if new_digest is None:
        if current_digest is not None and current_tag != new_tag:
            raise EditError(f"{target.file}#{target.locator}: pinned by digest {current_digest}; "
                            "changing the tag needs the new digest too")
        wanted = [(tag_key, new_tag, current_tag, after_tag)]
    else:
        wanted = [("digest", new_digest, current_digest, (tag_key,) + after_tag)]
        if not (current_digest is not None and current_tag is None):
            wanted.insert(0, (tag_key, new_tag, current_tag, after_tag))
    return [_FieldEdit(mapping + (key,), value, old, after, f"{target.locator}.{key}")
            for key, value, old, after in wanted if old != value]


def _plan_fabrikate(index: YamlIndex, target: Target, base: YamlPath, new_tag: str, new_digest: str | None,
                    new_repository: str | None) -> list[_FieldEdit]:
    shape = target.shape
    if shape.is_string:  # `image: host/repo:tag` in a values map: edited like a container image
        return _plan_manifest(index, target, base, new_tag, new_digest, new_repository)
    node = index.get(base)
    if node is None or node.kind != "mapping":
        raise _stale(target, node.kind if node else None)
    parts = [_scalar(index, base + (key,), target) for key in shape.repository]
    repository = "/".join(parts) if all(parts) else None
    tag_only = not any(parts) and target.repository_from is not None  # e.g. `fab set --environment DEV`
    if not tag_only and not _names_image(repository, target.repository):
        raise _stale(target, repository)
    tag_keys = [key for key in (shape.tag, shape.digest) if key]
    if tag_only and all(index.get(base + (key,)) is None for key in tag_keys):
        raise _stale(target, "a map without tag, digest or repository")
    current_digest = _scalar(index, base + (shape.digest,), target) if shape.digest else None
    edits = _tag_and_digest_edits(target, base, shape.tag, tuple(reversed(shape.repository)),
                                  _scalar(index, base + (shape.tag,), target), current_digest, new_tag,
                                  new_digest if shape.digest else None)
    if new_repository is not None and new_repository != repository and not tag_only:
        if len(shape.repository) != 1:
            raise EditError(f"{target.file}#{target.locator}: the image name is split over "
                            f"{', '.join(shape.repository)}; a new repository is not written there")
        key = shape.repository[0]
        edits.append(_FieldEdit(base + (key,), new_repository, repository, (), f"{target.locator}.{key}"))
    return edits


def _plan_kustomize(index: YamlIndex, target: Target, base: YamlPath, new_tag: str, new_digest: str | None,
                    new_repository: str | None) -> list[_FieldEdit]:
    node = index.get(base)
    if node is None or node.kind != "mapping":
        raise _stale(target, node.kind if node else None)
    name = _scalar(index, base + ("name",), target)
    new_name = _scalar(index, base + ("newName",), target)
    if not _names_image(new_name or name, target.repository):
        raise _stale(target, new_name or name)
    edits = _tag_and_digest_edits(target, base, "newTag", ("newName", "name"),
                                  _scalar(index, base + ("newTag",), target),
                                  _scalar(index, base + ("digest",), target), new_tag, new_digest)
    if new_repository is not None and new_repository != (new_name or name):
        edits.append(_FieldEdit(base + ("newName",), new_repository, new_name, ("name",),
                                f"{target.locator}.newName"))
    return edits


def _plan_manifest(index: YamlIndex, target: Target, base: YamlPath, new_tag: str, new_digest: str | None,
                   new_repository: str | None) -> list[_FieldEdit]:
    current = _scalar(index, base, target)
    if not _names_image(current, target.repository):
        raise _stale(target, current)
    ref = parse_image_ref(current)
    name = new_repository or ref.name
    if new_digest is not None:
        image = f"{name}@{new_digest}" if ref.digest and ref.tag is None else f"{name}:{new_tag}@{new_digest}"
    elif ref.digest is not None:
        if ref.tag != new_tag:
            raise EditError(f"{target.file}#{target.locator}: {current} is pinned by digest; "
                            "changing the tag needs the new digest too")
        image = f"{name}:{ref.tag}@{ref.digest}" if ref.tag else f"{name}@{ref.digest}"
    else:
        image = f"{name}:{new_tag}"
    return [] if image == current else [_FieldEdit(base, image, current, (), target.locator)]


def _names_image(text: str | None, repository: str) -> bool:
    try:
        return text is not None and same_image(text, repository)
    except ImageRefError:
        return False


# ---------------------------------------------------------------------------------------------- text splicing


def _write_field(text: str, edit: _FieldEdit, file: str) -> str:
    index = _index(text, file)
    node = index.get(edit.path)
    if node is None:
        return _insert_key(text, index, edit, file)
    if node.kind == "scalar" and node.style in ("|", ">"):
        raise EditError(f"{file}#{edit.locator}: block scalar values are not edited")
    start = _value_start(text, node)
    style = node.style if node.kind == "scalar" else None
    return text[:start] + render_scalar(edit.value, style) + text[node.end.index:]


def _value_start(text: str, node: YamlNode) -> int:
    """Where the value itself starts, after an anchor (`&a`) or explicit tag (`!!str`) written before it."""
    pos = node.start.index
    if node.kind == "scalar":
        while pos < len(text) and text[pos] in "&!":
            while pos < len(text) and not text[pos].isspace():
                pos += 1
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
    return pos


def _insert_key(text: str, index: YamlIndex, edit: _FieldEdit, file: str) -> str:
    mapping_path, key = edit.path[:-1], str(edit.path[-1])
    mapping = index.get(mapping_path)
    if mapping is None or mapping.kind != "mapping":
        raise EditError(f"{file}#{edit.locator}: the enclosing field is not a mapping")
    entry = f"{key}: {render_scalar(edit.value)}"
    for sibling_key in edit.after:
        sibling = index.get(mapping_path + (sibling_key,))
        if sibling is None or sibling.kind not in ("scalar", "alias"):
            continue
        if mapping.flow:
            return text[:sibling.end.index] + ", " + entry + text[sibling.end.index:]
        if sibling.start.line != sibling.end.line or sibling.key_start is None:
            continue
        line_end = text.find("\n", sibling.end.index)
        if line_end == -1:
            line_end, newline = len(text), ("\r\n" if "\r\n" in text else "\n")
        elif line_end > 0 and text[line_end - 1] == "\r":
            line_end, newline = line_end - 1, "\r\n"
        else:
            newline = "\n"
        return text[:line_end] + newline + " " * sibling.key_start.column + entry + text[line_end:]
    raise EditError(f"{file}#{edit.locator}: cannot add {key!r}: no single-line {' or '.join(edit.after)} "
                    "to place it after")


# ------------------------------------------------------------------------------------------- parsed-data diff

_MISSING = object()


def _load_plain(text: str, file: str) -> list[Any]:
    """All documents as plain Python data (aliases and merge keys resolved, comments and styles gone).
    Raises RepoYamlError (`file:line: ...`) for text that is not YAML, too large, or an alias bomb."""
    documents = load_all(text, file, yaml=YAML(typ="rt"))
    try:
        return [_plain(doc) for doc in documents]
    except RecursionError:
        raise RepoYamlError(file, None, "YAML nesting too deep") from None


def _plain(value: Any) -> Any:
    if isinstance(value, TaggedScalar):  # ruamel keeps `!!str x` as a TaggedScalar too
        return str(value.value) if str(value.tag) == "tag:yaml.org,2002:str" else (str(value.tag), str(value.value))
    if isinstance(value, dict):
        return {_plain_key(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    for kind in (bool, str, int, float, datetime, date, bytes):
        if isinstance(value, kind):
            return kind(value) if kind not in (datetime, date) else value
    return value


def _plain_key(key: Any) -> Any:
    plain = _plain(key)
    return json.dumps(plain, default=str) if isinstance(plain, (dict, list)) else plain


def _same_leaf(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    return a == b or (isinstance(a, float) and a != a and b != b)


def _diff(old: Any, new: Any, path: tuple) -> Iterator[tuple[tuple, Any, Any]]:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in old:
            yield from _diff(old[key], new[key], path + (key,)) if key in new else [(path + (key,), old[key], _MISSING)]
        for key in new:
            if key not in old:
                yield path + (key,), _MISSING, new[key]
    elif isinstance(old, list) and isinstance(new, list):
        for i in range(max(len(old), len(new))):
            yield from _diff(old[i] if i < len(old) else _MISSING, new[i] if i < len(new) else _MISSING, path + (i,))
    elif not _same_leaf(old, new):
        yield path, old, new


def _verify(old_text: str, new_text: str, file: str, expected: dict[YamlPath, str]) -> None:
    try:
        old_docs = _load_plain(old_text, file)
    except RepoYamlError as exc:
        raise EditError(str(exc)) from None
    try:
        new_docs = _load_plain(new_text, file)
    except RepoYamlError as exc:
        raise EditError(f"edited text does not load: {exc}") from None
    differences = {path: new for path, _, new in _diff(old_docs, new_docs, ())}
    if differences != expected or not all(type(value) is str for value in differences.values()):
        described = ", ".join(f"{format_locator(('doc',) + path)}={value!r}" for path, value in differences.items())
        raise EditError(f"{file}: the edit would change {described or 'nothing'}, "
                        f"not only {', '.join(format_locator(('doc',) + path) for path in expected)}")


def diff_image_fields(old_text: str, new_text: str, file: str, fields: Sequence[ImageFields] = ()) -> ImageDiff:
    """Whether two versions of a file differ only in image tag/repository/digest values (`fields`: the policy's
    extra image shapes, `Policy.image_fields`)."""
    try:
        old_docs = _load_plain(old_text, file)
    except RepoYamlError as exc:
        return ImageDiff(False, (), (f"old version does not parse: {exc}",))
    try:
        new_docs = _load_plain(new_text, file)
    except RepoYamlError as exc:
        return ImageDiff(False, (), (f"new version does not parse: {exc}",))
    kustomization = PurePosixPath(file).name in KUSTOMIZATION_NAMES
    multi_doc = len(old_docs) != 1 or len(new_docs) != 1
    changes, others = [], []
    for path, old, new in _diff(old_docs, new_docs, ()):
        locator = _image_field_locator(path, old_docs, new_docs, kustomization, tuple(fields))
        if locator and type(new) is str and (old is _MISSING or not isinstance(old, (dict, list))):
            changes.append(FieldChange(file, locator, None if old in (_MISSING, None) else str(old), new))
            continue
        k8s_doc = not kustomization and any(_kind(docs, path[0]) for docs in (old_docs, new_docs))
        shown = format_locator(("doc",) + path) if multi_doc or k8s_doc else format_locator(path[1:])
        others.append(f"{shown or 'document'}: {_show(old)} -> {_show(new)}")
    return ImageDiff(not others, tuple(changes), tuple(others))


def _kind(docs: list[Any], i: int) -> str | None:
    doc = docs[i] if i < len(docs) else None
    kind = doc.get("kind") if isinstance(doc, dict) else None
    return kind if isinstance(kind, str) else None


def _image_field_locator(path: tuple, old_docs: list, new_docs: list, kustomization: bool,
                         fields: tuple[ImageFields, ...] = ()) -> str | None:
    doc, rest = path[0], path[1:]
    if not rest:
        return None
    if kustomization:
        if (doc == 0 and len(rest) == 3 and rest[0] == "images" and isinstance(rest[1], int)
                and rest[2] in ("newTag", "newName", "digest")):
            return format_locator(rest)
        return None
    kinds = {_kind(old_docs, doc), _kind(new_docs, doc)}
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    if kind is not None:
        return format_locator(("doc", doc) + rest) if is_container_image_path(rest) else None
    return format_locator(rest) if doc == 0 and _is_fabrikate_image_field(rest, fields) else None


def _is_fabrikate_image_field(rest: tuple, fields: tuple[ImageFields, ...] = ()) -> bool:
    """`(subcomponents, <name>)* config ...` then `image.<repository|registry|name|tag|digest>`, an `image` string, or
    an `imageTag` (the shapes core.rules.targets finds without a policy `fields` rule)."""
    i = 0
    while i + 1 < len(rest) and rest[i] == "subcomponents" and isinstance(rest[i + 1], str):
        i += 2
    if not (i < len(rest) and rest[i] == "config" and len(rest) >= i + 2):
        return False
    for rule in fields:
        parent = rest[len(rest) - 1 - len(rule.parent):-1]
        if len(rest) >= i + 2 + len(rule.parent) and parent == rule.parent and rest[-1] in (rule.repository, rule.tag):
            return True
    return (rest[-1] in ("image", "imageTag")
            or (len(rest) >= i + 3 and rest[-2] == "image" and rest[-1] in (*FABRIKATE_IMAGE_FIELDS, "registry", "name")))


def _show(value: Any) -> str:
    if value is _MISSING:
        return "<missing>"
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------------- tree writes


def apply_to_tree(root: Path, edits: list[tuple[Target, str, str | None]]) -> list[FieldChange]:
    """Apply (target, new tag, new digest) edits to the files under root. Every file is edited in memory first;
    files are written (atomically, one by one) only when all edits succeeded."""
    root = Path(root)
    by_file: dict[str, list[tuple[Target, str, str | None]]] = {}
    for edit in edits:
        by_file.setdefault(edit[0].file, []).append(edit)
    changes: list[FieldChange] = []
    writes: dict[Path, str] = {}
    for file, file_edits in sorted(by_file.items()):
        path = _inside(root, file)
        try:
            original = text = read_repo_text(root, file)
        except RepoYamlError as exc:
            raise EditError(str(exc)) from None
        if text is None:
            raise EditError(f"{file}: cannot read: the file does not exist")
        for target, new_tag, new_digest in file_edits:
            result = set_image(text, target, new_tag, new_digest)
            text = result.text
            changes.extend(result.changes)
        if text != original:
            writes[path] = text
    for path, text in writes.items():
        _write_atomically(path, text)
    return changes


def _inside(root: Path, file: str) -> Path:
    rel = PurePosixPath(file)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise EditError(f"{file}: not a path inside the repository")
    return root.joinpath(*rel.parts)


def _write_atomically(path: Path, text: str) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
        os.chmod(temp, path.stat().st_mode & 0o7777)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
