"""`egressctl audit`: the agent's audit log (--audit-log), as a table or JSON lines, filtered.

    egressctl audit --file /var/log/egress/audit.jsonl [--method CreatePolicy] [--role viewer]
                    [--object policy/frontend] [--outcome PERMISSION_DENIED] [-o json]

Reads the file the agent writes (one JSON object per line, egress_agent.server.audit); a line
that is not JSON (a torn last line after a crash) is skipped with a note on stderr.
"""

from __future__ import annotations

import json
import sys

from egress_agent.cmd.tables import format_table

_COLUMNS = ("time", "identity", "role", "method", "object", "outcome", "resource_version")


def add_parser(sub) -> None:
    p = sub.add_parser("audit", help="show the agent's audit log (who changed what)")
    p.add_argument("--file", required=True, help="the agent's --audit-log file")
    p.add_argument("--method", help="only this method, e.g. CreatePolicy")
    p.add_argument("--role", help="only callers with this role")
    p.add_argument("--object", help="only this object, e.g. policy/frontend")
    p.add_argument("--outcome", help="only this outcome, e.g. OK or PERMISSION_DENIED")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")


def command(args) -> int:
    try:
        with open(args.file, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError as err:
        print(f"egressctl: audit: {args.file}: {err.strerror}", file=sys.stderr)
        return 1
    wanted = {k: getattr(args, k) for k in ("method", "role", "object", "outcome") if getattr(args, k)}
    entries = []
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except ValueError:
            print(f"egressctl: audit: {args.file}:{number}: not a JSON line, skipped", file=sys.stderr)
            continue
        if all(str(entry.get(k)) == v for k, v in wanted.items()):
            entries.append(entry)
    if args.output == "json":
        sys.stdout.writelines(json.dumps(e, sort_keys=True) + "\n" for e in entries)
        return 0
    rows = [[str(e.get(c) if e.get(c) is not None else "-") for c in _COLUMNS] for e in entries]
    print(format_table([c.upper().replace("_", " ") for c in _COLUMNS], rows) if rows else "No audit entries.")
    return 0
