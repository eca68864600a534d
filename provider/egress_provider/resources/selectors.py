"""Label selector blocks (Kubernetes LabelSelector: `match_labels` + `match_expressions`), one definition for
every resource that selects by label: a policy's namespace and pod selectors, a gateway's node_selector."""

from __future__ import annotations

from typing import Optional

from tf.schema import Attribute, Block
from tf.types import String

from egress_api import models
from egress_provider.framework.blocks import SetNestedBlock, SingleNestedBlock
from egress_provider.framework.types import StringMapEmptyIsNull, StringSetEmptyIsNull


def selector_block(type_name: str, what: str, example: str) -> SingleNestedBlock:
    return SingleNestedBlock(
        type_name,
        Block(
            description=f"Selects {what} by label (a Kubernetes LabelSelector): `match_labels` and every "
            "`match_expressions` block must all hold. Omitted, or empty, it selects all of them.",
            attributes=[
                Attribute(
                    "match_labels",
                    StringMapEmptyIsNull(),
                    optional=True,
                    description=f"Labels {what} must all carry (key = value); keys and values follow Kubernetes "
                    f"label syntax, e.g. `{example}`.",
                )
            ],
            block_types=[expressions_block(what)],
        ),
    )


def expressions_block(what: str) -> SetNestedBlock:
    return SetNestedBlock(
        "match_expressions",
        Block(
            description=f"A requirement on one label of the {what} (Kubernetes `matchExpressions`); all must hold. "
            "A set: the order written never matters.",
            attributes=[
                Attribute("key", String(), required=True, description="The label key, e.g. `role`."),
                Attribute(
                    "operator",
                    String(),
                    required=True,
                    description="`In` (the label is one of `values`), `NotIn` (it is not, or it is unset), `Exists` "
                    "(it is set, to anything) or `DoesNotExist`.",
                ),
                Attribute(
                    "values",
                    StringSetEmptyIsNull(),
                    optional=True,
                    description="Label values: at least one for `In` and `NotIn`, none for `Exists` and "
                    "`DoesNotExist`.",
                ),
            ],
        ),
    )


def selector_to_state(sel: Optional[models.LabelSelector]) -> Optional[dict]:
    if sel is None:
        return None
    return {
        "match_labels": dict(sel.match_labels) or None,
        "match_expressions": [{"key": e.key, "operator": e.operator, "values": list(e.values) or None}
                              for e in sel.match_expressions],
    }
