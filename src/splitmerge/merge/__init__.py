"""Merge: composing foreground layers into background videos (the `sm.compose` interface and its baselines; the
Composer model and its training land here too)."""

from .compose import ComposeInputs, Composite, compose, methods, register_method

__all__ = ["ComposeInputs", "Composite", "compose", "methods", "register_method"]
