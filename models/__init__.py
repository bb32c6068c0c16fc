"""driftrec package."""
