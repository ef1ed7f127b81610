"""CSDR Node orders: quotas, orders, production of offline scenes, delivery and usage."""
