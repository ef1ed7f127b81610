"""CSDR Node discovery: the node's collections for catalogue harvesters (CSW, OAI-PMH)."""
