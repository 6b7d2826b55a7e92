"""Labels that come as values or encoded in a string: JSON first, then a verifier's own format."""

import json
from collections.abc import Callable
from typing import Any


def decoded_label(label: Any, otherwise: Callable[[str], Any]) -> Any:
    """`label` itself unless it is a string; a string as JSON, or else as `otherwise` reads it."""
    if not isinstance(label, str):
        return label
    try:
        return json.loads(label)
    except json.JSONDecodeError:
        return otherwise(label)
