"""`egressctl apply -f FILE` and `egressctl edit KIND NAME`: objects from files, for operators outside Terraform.

Nothing is written unless every document is valid: each is parsed by the
models (`manifest.load`), then the rules across objects are checked against
what the agent stores plus the whole file, and a `resourceVersion` a document
names must still be the stored one. Only then are the objects written,
gateways first; each write carries the version it was checked against, so a
concurrent change made elsewhere fails with a conflict instead of being
overwritten.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from egress_api import allocation, errors, manifest, models
from egress_api.client import EgressClient


class EditError(Exception):
    pass


def apply_file(client: EgressClient, args) -> str:
    source = "<stdin>" if args.filename == "-" else args.filename
    try:
        text = sys.stdin.read() if args.filename == "-" else Path(args.filename).read_text()
    except OSError as err:
        raise manifest.ManifestError(f"cannot read {source}: {err.strerror}") from None
    return "\n".join(apply_documents(client, manifest.load(text, source)))


def apply_documents(client: EgressClient, docs: list[manifest.Document]) -> list[str]:
    """Create or update every document (all checked before any is written); one line per object."""
    stored = {
        "gateway": {v.obj.name: v for v in client.list_gateways()},
        "policy": {v.obj.name: v for v in client.list_policies()},
    }
    after = {kind: {name: v.obj for name, v in objs.items()} for kind, objs in stored.items()}
    for d in docs:
        after[d.kind][d.obj.name] = d.obj
    refused = []
    for d in docs:
        violations = models.check_references(d.obj, after["gateway"].values(), after["policy"].values())
        if violations:
            refused.append(f"{d.source}: {models.InvalidObject(d.kind, d.obj.name, violations)}")
    if refused:
        raise manifest.ManifestError("; ".join(refused) + "; nothing was changed")
    for d in docs:
        current = stored[d.kind].get(d.obj.name)
        if d.resource_version and (current is None or current.resource_version != d.resource_version):
            have = current.resource_version if current else "none (it does not exist)"
            raise errors.Conflict(
                f"{d.kind} {d.obj.name!r} in {d.source} names resourceVersion {d.resource_version}, the agent has "
                f"{have}: someone changed it since it was read; nothing was changed. Re-read it and apply again"
            )
    lines = []
    for d in manifest.ordered(docs):
        current = stored[d.kind].get(d.obj.name)
        if current is None:
            getattr(client, f"create_{d.kind}")(d.obj)
            lines.append(f"{d.kind} {d.obj.name!r} created")
        elif allocation.unchanged(current.obj, d.obj):  # an allocated source IP is kept
            lines.append(f"{d.kind} {d.obj.name!r} unchanged")
        else:
            getattr(client, f"update_{d.kind}")(d.obj, resource_version=d.resource_version or current.resource_version)
            lines.append(f"{d.kind} {d.obj.name!r} configured")
    return lines


HEADER = (
    "# Edit the object below and save to apply it; an unchanged file cancels the edit.\n"
    "# metadata.resourceVersion guards the write: if someone changed the object meanwhile, it is refused.\n"
)


def edit(client: EgressClient, args) -> str:
    kind, name = args.kind, args.name
    current = getattr(client, f"get_{kind}")(name)
    original = HEADER + manifest.render(kind, current.obj, current.resource_version)
    fd, path = tempfile.mkstemp(prefix=f"egressctl-edit-{kind}-{name}-", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        f.write(original)
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    try:
        rc = subprocess.call([*shlex.split(editor), path])
    except OSError as err:
        os.unlink(path)
        raise EditError(f"cannot run editor {editor!r} ($EDITOR): {err.strerror}; nothing was changed") from None
    if rc != 0:
        os.unlink(path)
        raise EditError(f"editor {editor!r} exited with status {rc}; nothing was changed")
    text = Path(path).read_text()
    if text == original:
        os.unlink(path)
        return "Edit cancelled, no changes made."
    kept = f"Your edit is kept in {path}: fix it and run `egressctl apply -f {path}`."
    try:
        docs = manifest.load(text, path)
        if len(docs) != 1 or docs[0].kind != kind or docs[0].obj.name != name:
            raise manifest.ManifestError(f"{path}: must hold exactly the {kind} {name!r} (no renames, no other objects)")
        doc = docs[0]
        if not doc.resource_version:  # the guard was deleted from the file: keep the version that was opened
            doc = manifest.Document(doc.kind, doc.obj, current.resource_version, doc.source)
        lines = apply_documents(client, [doc])
    except manifest.ManifestError as err:
        raise EditError(f"{err}. {kept}") from None
    except errors.ApiError as err:
        raise EditError(f"{' '.join(err.message.split())}. {kept}") from None
    os.unlink(path)
    return "\n".join(lines).replace("configured", "edited")
