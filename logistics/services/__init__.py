"""Writes of logistics, one module per concern: routing orders into shipments (routing),
the life of a shipment on the road (shipments)."""
