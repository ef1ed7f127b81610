"""Setting types the services share: lists an operator writes as `a,b` (or as a JSON list)."""

import json
from typing import Annotated

from pydantic import BeforeValidator
from pydantic_settings import NoDecode


def split_commas(value: object) -> object:
    """Accept `a,b` as well as a JSON list for list-typed variables (NoDecode turns off
    pydantic-settings' own JSON decoding, so both forms are read here)."""
    if not isinstance(value, str):
        return value
    if value.lstrip().startswith("["):
        return json.loads(value)
    return [v.strip() for v in value.split(",") if v.strip()]


CommaList = Annotated[list[str], BeforeValidator(split_commas), NoDecode]
IntList = Annotated[list[int], BeforeValidator(split_commas), NoDecode]
