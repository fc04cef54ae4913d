import pytest

from core.model.images import ImageRef, ImageRefError, parse_image_ref, same_image, validate_digest, validate_tag

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, expected", [
    ("myacr.azurecr.io/team/app:1.2.3", ImageRef("myacr.azurecr.io", "team/app", "1.2.3", None)),
    ("nginx", ImageRef(None, "nginx", None, None)),
    ("library/nginx:1.25", ImageRef(None, "library/nginx", "1.25", None)),
    (f"app@{DIGEST}", ImageRef(None, "app", None, DIGEST)),
    ("host:5000/repo:tag", ImageRef("host:5000", "repo", "tag", None)),
    ("host:5000/repo", ImageRef("host:5000", "repo", None, None)),
    (f"myacr.azurecr.io/app:v1@{DIGEST}", ImageRef("myacr.azurecr.io", "app", "v1", DIGEST)),
    ("localhost/app:dev", ImageRef("localhost", "app", "dev", None)),
    ("localhost:5000/a/b/c", ImageRef("localhost:5000", "a/b/c", None, None)),
    ("MyACR.AzureCR.io/App_x/y-z:T_1", ImageRef("MyACR.AzureCR.io", "App_x/y-z", "T_1", None)),
    ("localhost", ImageRef(None, "localhost", None, None)),  # a lone part is a repository, never a host
    ("my.registry/app:master-20200405.3", ImageRef("my.registry", "app", "master-20200405.3", None)),
])
def test_parse_image_ref(text, expected):
    ref = parse_image_ref(text)
    assert ref == expected
    assert ref.format() == text


def test_name_joins_registry_and_repository():
    assert parse_image_ref("host:5000/team/app:1").name == "host:5000/team/app"
    assert parse_image_ref(f"app@{DIGEST}").name == "app"


@pytest.mark.parametrize("text", [
    "", ":tag", "app:", "app@", "app@sha256:xyz", "app@" + "ab" * 32, "UPPER..case", "a b", "app:t@g",
    "host:notaport/app", "app:" + "x" * 129, "/app", "app/", "a//b", "-app", "app:-tag", "my_host.io:80:80/app",
])
def test_parse_rejects_garbage(text):
    with pytest.raises(ImageRefError):
        parse_image_ref(text)


def test_parse_rejects_non_string():
    with pytest.raises(ImageRefError):
        parse_image_ref(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("a, b, same", [
    ("myacr.azurecr.io/app", "myacr.azurecr.io/app:1.0", True),
    ("MyACR.AzureCR.io/app", "myacr.azurecr.io/app", True),
    ("myacr.azurecr.io/App", "myacr.azurecr.io/app", False),
    ("myacr.azurecr.io/app", "otheracr.azurecr.io/app", False),
    ("myacr.azurecr.io/app", "myacr.azurecr.io/app2", False),
    (f"myacr.azurecr.io/app@{DIGEST}", "myacr.azurecr.io/app:9", True),
    ("app", "myacr.azurecr.io/app", False),
    ("docker.io/library/nginx", "nginx", False),
    ("host:5000/app", "HOST:5000/app", True),
])
def test_same_image(a, b, same):
    assert same_image(a, b) is same
    assert same_image(b, a) is same


def test_same_image_rejects_garbage():
    with pytest.raises(ImageRefError):
        same_image("app", "not an image")


def test_validate_tag_and_digest():
    assert validate_tag("20200212.1") == "20200212.1"
    assert validate_digest(DIGEST) == DIGEST
    for bad in ("", ".x", "a/b", "a:b"):
        with pytest.raises(ImageRefError):
            validate_tag(bad)
    with pytest.raises(ImageRefError):
        validate_digest("sha256:short")
