"""Who reads the feed or the peers' status: an API key (Bearer, X-API-Key or `?api_key=`).

The feed serves a key only what csdr_access's rule lets its organisation see; the peers' status
needs the admin scope.
"""

from typing import Annotated

from fastapi import Depends, Request

from csdr_access import AccessControl, Principal
from csdr_access.dependencies import key_required


def get_access(request: Request) -> AccessControl:
    """The service's key checker (its cache lives for `access_ttl_s`)."""
    return request.app.state.access


get_principal = key_required("federation", "read")
PrincipalDep = Annotated[Principal, Depends(get_principal)]
get_admin = key_required("federation", "admin")
AdminDep = Annotated[Principal, Depends(get_admin)]
