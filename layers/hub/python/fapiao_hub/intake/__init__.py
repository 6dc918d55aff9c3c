"""Intake shapes: what business systems send, mapped to the canonical model."""
