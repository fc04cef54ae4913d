"""An independent statement of the OCI distribution name grammar, for tests to check the service against.

Written from distribution/reference (reference.go grammar comment, regexp.go): the tag is `[\\w][\\w.-]{0,127}`
with Go's ASCII `\\w`; a repository is path components `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*` joined by `/`,
255 characters at most (RepositoryNameTotalLengthMax). Deliberately not shared with core.model.images.
"""
from __future__ import annotations

import re

_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*")


def valid_tag(text: str) -> bool:
    return _TAG.fullmatch(text) is not None


def valid_repository(text: str) -> bool:
    return 0 < len(text) <= 255 and all(_COMPONENT.fullmatch(part) for part in text.split("/"))


# Values no registry accepts as a tag nor as a repository: line breaks (YAML and log injection), NUL, YAML
# indicators (`: `, `#`, `{`, `&`, `!`, `*`), globs, path traversal, option injection (leading `-`), shell
# metacharacters, white space, non-ASCII look-alikes, and the length bound (129 for a tag is added per field).
HOSTILE = [
    "1.0\n",                  # a trailing newline: what re.match(...$) lets through
    "1.0\nevil: true",        # a second YAML line
    "1.0\r\nx",
    "a\x00b",                 # NUL
    "1.0: x",                 # YAML mapping indicator
    "1.0 #comment",           # YAML comment
    "#",
    "{a: b}",                 # YAML flow mapping
    "[a]",                    # YAML flow sequence, and a glob class
    "*",                      # glob, YAML alias
    "*alias",
    "1.?",                    # glob
    "**/x",
    "&anchor",
    "!!python/object",
    "..",
    "../../etc/passwd",
    "-rf",                    # option injection
    "--upload-pack=touch /tmp/x",
    " ",
    " 1.0",
    "1.0\t",
    "$(reboot)",
    "`id`",
    "a;b",
    "a|b",
    "a'b",
    'a"b',
    "%2e%2e",
    "a\\b",
    "~user",
    "é",                      # non-ASCII letter (Python's \w would take it)
    "\uff11",                 # fullwidth digit one (Python's \d and \w would take it)
    "a\u2028b",               # Unicode line separator
    "a\u0085b",               # NEL, a line break to str.splitlines
]
