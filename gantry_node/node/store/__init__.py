"""The node's durable state: the only code that touches SQLite."""

from gantry_node.node.store.db import STATES, Delivery, Instance, Store, StoreError

__all__ = ["STATES", "Delivery", "Instance", "Store", "StoreError"]
