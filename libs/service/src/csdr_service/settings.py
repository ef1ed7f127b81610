"""What the services' settings share: the fields every service has (`ServiceSettings`, each
service adding its own and its `CSDR_<SERVICE>_` prefix), and lists an operator writes as `a,b`
(or as a JSON list)."""

import json
from typing import Annotated

from pydantic import BeforeValidator
from pydantic_settings import BaseSettings, NoDecode


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


class ServiceSettings(BaseSettings):
    """The settings of every service (read under the service's own prefix)."""

    access_ttl_s: float = 2.0
    """How long a key check or a visibility list is reused: revocations apply within this time."""
    max_body_bytes: int = 4 * 1024 * 1024
    """Largest request body accepted; a larger one is answered 413 before it is read."""
    request_timeout_s: float = 30.0
    """A request not answered within this time gets a 503 (0: no limit)."""
    readiness_timeout_s: float = 1.0
    """How long /readyz waits for the database before answering 503."""
