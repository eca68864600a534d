"""The house layer over the `tf` package (tf 1.2.0): one module per protocol concern.

`tf` gives the tfplugin6 servicer, schema and types; this package closes its
gaps (see docs/architecture.md) by subclassing and wrapping, never copying.
"""
