"""Backends: each module registers one model family in evalsuite.registry.BACKENDS."""
