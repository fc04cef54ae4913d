"""A no-op regeneration of a 300-component HLD in two environments stays well under a second (bound loosened
for shared CI machines)."""
from __future__ import annotations

import time

from core.generate import generate, write_generation
from tests.test_generate_helpers import bedrock_hld, component, write

SOURCE_HOSTS = ("dev.azure.com",)  # the git sources of the generated HLD


def test_regenerating_300_components_in_two_environments_is_fast(tmp_path):
    services = 75  # each: service, ring, chart and static components
    root = write(tmp_path / "hld", {
        "component.yaml": component("root", *[{"name": f"svc{index}", "path": f"svc{index}"}
                                              for index in range(services)])})
    for index in range(services):
        bedrock_hld(tmp_path / "ring", image_tag=f"dev-{index}")
        ring = tmp_path / "ring/fabrikam-project/fabrikam"
        ring.rename(root / f"svc{index}")
        write(root, {f"svc{index}/component.yaml": component(f"svc{index}", {"name": "dev", "path": "./dev"})})
    out = tmp_path / "out"
    write_generation(generate(root, ["prod", "dev"], helm_mode="helmrelease", allowed_sources=SOURCE_HOSTS), out)

    started = time.perf_counter()
    generation = generate(root, ["prod", "dev"], helm_mode="helmrelease", allowed_sources=SOURCE_HOSTS)
    changed = write_generation(generation, out)
    elapsed = time.perf_counter() - started
    assert changed == [] and len(generation.files) == 2 * (1 + 4 * services)
    assert elapsed < 3.0, f"no-op regeneration took {elapsed:.2f} s"
