"""olmorl."""
