"""Merge: composing foreground layers into background videos: the `sm.compose` interface and its baselines, the
Composer model (``from splitmerge.merge import Composer``, diffusers-style) and its training."""

from .compose import ComposeInputs, Composite, compose, methods, register_method

_LAZY = {"Composer": "composer", "ComposerConfig": "composer"}

__all__ = ["ComposeInputs", "Composite", "Composer", "ComposerConfig", "compose", "methods", "register_method"]


def __getattr__(name: str):
    """The model names load torch and diffusers only when asked for."""
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
