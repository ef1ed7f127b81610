"""CSDR Node access control: one rule, used by every service, decides who sees which collections."""

from csdr_access.keys import api_key_from
from csdr_access.policies import Policy, visible_collections
from csdr_access.principals import ANONYMOUS, Authenticator, InvalidKey, Principal

__all__ = [
    "ANONYMOUS",
    "Authenticator",
    "InvalidKey",
    "Policy",
    "Principal",
    "api_key_from",
    "visible_collections",
]
