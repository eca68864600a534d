"""`terraform-provider-egress`: the plugin executable Terraform starts."""

from egress_provider.framework.serve import serve


def _make_provider():
    # Imported after the magic-cookie check, so running the binary by hand fails fast.
    from egress_provider.provider import make_provider

    return make_provider()


def main() -> None:
    serve(_make_provider)


if __name__ == "__main__":
    main()
