"""Listings: produce that farmers offer (models arrive with the listings issue)."""
