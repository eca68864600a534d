"""docs/ is generated from the schema (scripts/gen-docs) and must match it; every attribute is described."""

from __future__ import annotations

import subprocess
from pathlib import Path

from egress_provider import docs
from egress_provider.provider import EgressProvider, provider_schema

REPO = Path(__file__).resolve().parents[2]
GEN_DOCS = REPO / "scripts" / "gen-docs"


def test_committed_docs_match_the_schema():
    res = subprocess.run([str(GEN_DOCS), "--check"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_check_fails_when_docs_drift(tmp_path):
    assert subprocess.run([str(GEN_DOCS), "--root", str(tmp_path)], capture_output=True, timeout=60).returncode == 0
    page = tmp_path / "docs" / "resources" / "egress_gateway.md"
    page.write_text(page.read_text().replace("floating_ips", "floating_addresses"))
    res = subprocess.run([str(GEN_DOCS), "--check", "--root", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "docs/resources/egress_gateway.md" in res.stdout


def _walk(attributes, blocks, path):
    for a in attributes:
        yield ".".join(path + [a.name]), a.description
    for b in blocks:
        yield ".".join(path + [b.type_name]), b.block.description
        yield from _walk(b.block.attributes, b.block.block_types, path + [b.type_name])


def test_every_attribute_and_block_is_described_and_versioned():
    provider = EgressProvider()
    schemas = {"provider": provider_schema()}
    schemas.update({f"egress_{c.get_name()}": c.get_schema() for c in provider.get_resources() + provider.get_data_sources()})
    for name, schema in schemas.items():
        assert schema.version is not None, name  # None makes every plan warn "Using default upgrade"
        assert schema.description, name
        for path, description in _walk(schema.attributes, schema.block_types, [name]):
            assert description and len(description) > 10, f"{path} has no description"


def test_registry_layout():
    pages = docs.render()
    assert set(pages) == {
        "docs/index.md",
        "docs/resources/egress_gateway.md",
        "docs/resources/egress_nat_policy.md",
        "docs/data-sources/egress_gateway_status.md",
        "docs/data-sources/egress_policy_status.md",
        "docs/data-sources/egress_node.md",
        "docs/data-sources/egress_effective_ip.md",
    }
    for rel, text in pages.items():
        assert text.startswith("---\npage_title: "), rel
        assert "## Example Usage" in text and "## Schema" in text, rel
    assert "## Import" in pages["docs/resources/egress_nat_policy.md"]
    assert "terraform import egress_gateway.default default" in pages["docs/resources/egress_gateway.md"]
