"""Where a model backend finds its local weights, and how it says what is wrong when it cannot.

Every model-backed backend loads from a local folder only (no downloads): a path given as ``model_path`` (a CLI
flag) or else an environment variable. `LocalWeights` holds that rule once: the import check for the extra, the
folder check (a JSON file naming the right model class), the availability answer and the constructor's error.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .backends import BackendUnavailable


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (library errors run to pages), or its type's name."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def modules_missing(*modules: str) -> bool:
    """True when any of the dotted `modules` cannot be imported here (checked without importing them)."""
    for module in modules:
        try:
            if importlib.util.find_spec(module) is None:
                return True
        except ModuleNotFoundError:
            return True
    return False


@dataclass(frozen=True)
class LocalWeights:
    """A backend's weights folder rule.

    Attributes:
        label: how errors name the backend, e.g. "refiner 'sam2'".
        env_var: the environment variable naming the folder when no path is given.
        flag: the CLI flag that gives the path.
        manifest: the JSON file the folder must hold (``config.json``, ``model_index.json``).
        key: the field of that file that names the model (``model_type``, ``_class_name``).
        accepted: values of `key` this backend can load.
        kind: what the folder is, in words, e.g. "a transformers Sam2VideoModel folder".
        modules: modules the backend needs (dotted names).
        install: how to get them.
    """

    label: str
    env_var: str
    flag: str
    manifest: str
    key: str
    accepted: tuple[str, ...]
    kind: str
    modules: tuple[str, ...]
    install: str

    def missing(self) -> str:
        """"" when the needed modules import, else the reason with the fix."""
        return f"needs {', '.join(self.modules)}: {self.install}" if modules_missing(*self.modules) else ""

    def problem(self, path: Path) -> str:
        """"" when `path` looks like a loadable folder, else what is wrong with it."""
        if not path.is_dir():
            return f"{path}: no such folder"
        manifest = path / self.manifest
        if not manifest.is_file():
            return f"{path}: no {self.manifest} (expected {self.kind})"
        try:
            value = json.loads(manifest.read_text()).get(self.key)
        except (OSError, ValueError, AttributeError) as error:
            return f"{manifest}: unreadable ({first_line(error)})"
        if value not in self.accepted:
            return f"{manifest}: {self.key} is {value!r}; expected {self.kind}"
        return ""

    def availability(self, model_path: str | os.PathLike | None) -> tuple[bool, str]:
        """The ``Backend.availability`` answer for a folder given as `model_path`, else by the environment."""
        missing = self.missing()
        if missing:
            return False, missing
        path = model_path or os.environ.get(self.env_var)
        if not path:
            return False, f"no weights: set {self.env_var} or pass {self.flag} to {self.kind}"
        problem = self.problem(Path(path).expanduser())
        return (False, f"{problem}; set {self.env_var} or {self.flag}") if problem else (True, "")

    def resolve(self, model_path: str | os.PathLike | None) -> Path:
        """The weights folder, checked; raises `BackendUnavailable` with a one-line reason."""
        ok, reason = self.availability(model_path)
        if not ok:
            raise BackendUnavailable(f"{self.label}: {reason}")
        return Path(model_path or os.environ[self.env_var]).expanduser()

    def load_error(self, path: Path, error: BaseException) -> BackendUnavailable:
        """The error to raise when a checked folder still fails to load."""
        return BackendUnavailable(f"{self.label}: {path} cannot be loaded: {first_line(error)}")
