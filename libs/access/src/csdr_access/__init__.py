"""CSDR Node access control: one rule, used by every service, decides who sees which collections."""

from csdr_access.access import AccessControl
from csdr_access.keys import api_key_from
from csdr_access.policies import Policy
from csdr_access.principals import ANONYMOUS, InvalidKey, Principal

__all__ = ["ANONYMOUS", "AccessControl", "InvalidKey", "Policy", "Principal", "api_key_from"]
