"""A hostile `autopilot.yaml` (issue #16, items 4 and 5): a symlink out of the checkout, and an oversized file.

The policy file was read with `Path.read_text` wherever it pointed, and its content came back in error messages
(hence in the logs); a 30 MB comment-only file held the bump worker for minutes. It must be a regular file at
the checkout root, at most 256 KiB (checked before it is read), refused with a Permanent error naming the file.
"""
from __future__ import annotations

import logging
import os
import time

import pytest

from core.errors import Permanent
from core.rules.policy import MAX_POLICY_BYTES, PolicyError, load_policy, load_policy_from
from devkit.gitrepos import bare_repo, branches, git
from tests.test_bump import REGISTRY, make_service, push
from tests.fakes.records import records  # noqa: F401  (the fixture)

SECRET = "hunter2-TOKEN-do-not-log"
POD = f"kind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - image: {REGISTRY}/web:1.0.0\n"


def outside_secret(tmp_path):
    secret = tmp_path / "outside" / "credentials.txt"
    secret.parent.mkdir()
    secret.write_text(f"token: {SECRET}\n")  # valid YAML: a naive loader would quote it back in an error
    return secret


def test_policy_symlink_out_of_the_checkout_is_refused_without_its_content(tmp_path):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "autopilot.yaml").symlink_to(outside_secret(tmp_path))
    with pytest.raises(PolicyError) as raised:
        load_policy_from(checkout)
    assert isinstance(raised.value, Permanent)
    message = str(raised.value)
    assert message.startswith("autopilot.yaml: is a symbolic link")
    assert SECRET not in message and "token" not in message


def test_policy_symlink_inside_the_checkout_is_refused_too(tmp_path):
    (tmp_path / "real.yaml").write_text("paused: true\n")
    (tmp_path / "autopilot.yaml").symlink_to("real.yaml")
    with pytest.raises(PolicyError, match="autopilot.yaml: is a symbolic link"):
        load_policy_from(tmp_path)


def test_policy_that_is_not_a_regular_file_is_refused(tmp_path):
    (tmp_path / "autopilot.yaml").mkdir()
    with pytest.raises(PolicyError, match="autopilot.yaml: is not a regular file"):
        load_policy_from(tmp_path)
    os.rmdir(tmp_path / "autopilot.yaml")
    os.mkfifo(tmp_path / "autopilot.yaml")  # reading a FIFO would block the worker forever
    with pytest.raises(PolicyError, match="autopilot.yaml: is not a regular file"):
        load_policy_from(tmp_path)


@pytest.mark.timeout(60)
def test_oversized_policy_is_refused_before_it_is_parsed(tmp_path):
    with open(tmp_path / "autopilot.yaml", "w") as handle:
        for _ in range(30):
            handle.write(("#" * 1023 + "\n") * 1024)  # 30 MB of comments: minutes of parsing before
    started = time.perf_counter()
    with pytest.raises(PolicyError) as raised:
        load_policy_from(tmp_path)
    assert time.perf_counter() - started < 1.0
    assert isinstance(raised.value, Permanent)
    assert str(raised.value) == (f"autopilot.yaml: is {30 * 1024 * 1024:,} bytes, more than the "
                                 f"{MAX_POLICY_BYTES:,}-byte limit for repository YAML")


def test_policy_at_the_limit_loads_and_one_byte_more_does_not(tmp_path):
    body = "paused: true\n"
    text = body + "#" * (MAX_POLICY_BYTES - len(body) - 1) + "\n"
    (tmp_path / "autopilot.yaml").write_text(text)
    assert load_policy_from(tmp_path).paused is True
    assert load_policy(text).paused is True
    (tmp_path / "autopilot.yaml").write_text(text + "\n")
    with pytest.raises(PolicyError, match="more than the 262,144-byte limit"):
        load_policy_from(tmp_path)
    with pytest.raises(PolicyError, match="more than the 262,144-byte limit"):
        load_policy(text + "\n")  # the reviewer reads the text through the Azure DevOps API


def test_policy_that_is_not_utf8_is_a_policy_error(tmp_path):
    (tmp_path / "autopilot.yaml").write_bytes(b"paused: true\n# \xff\xfe\n")
    with pytest.raises(PolicyError, match="autopilot.yaml:2: is not UTF-8 text"):
        load_policy_from(tmp_path)


def test_bump_refuses_a_committed_policy_symlink_and_never_logs_the_target(tmp_path, records, caplog):
    secret = outside_secret(tmp_path)
    url = bare_repo(tmp_path, {"prod/web.yaml": POD}, name="m")
    work = tmp_path / "writer"
    git("clone", "--quiet", url, str(work))
    os.symlink(secret, work / "autopilot.yaml")  # git stores the link itself: any clone gets the same link
    git("add", "autopilot.yaml", cwd=work)
    git("commit", "--quiet", "-m", "policy as a link", cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    service = make_service(url, records, tmp_path, is_hld=False)
    head = branches(url)["main"]
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PolicyError, match="autopilot.yaml: is a symbolic link") as raised:
        service.process([push("web", "1.0.1")])
    assert isinstance(raised.value, Permanent)
    assert branches(url)["main"] == head
    assert SECRET not in caplog.text and SECRET not in str(raised.value)
