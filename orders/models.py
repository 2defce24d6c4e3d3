"""Orders: what buyers buy, its lines, events and payments (models arrive with the orders issue)."""
