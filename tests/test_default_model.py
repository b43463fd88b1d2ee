"""The bundled default Composer: it ships inside the package, loads offline, and is the model its card says."""

from __future__ import annotations

import hashlib
import re

from splitmerge.merge.composer import Composer
from splitmerge.merge.stm import DEFAULT_MODEL

WEIGHTS = DEFAULT_MODEL / "transformer" / "diffusion_pytorch_model.safetensors"


def test_the_shipped_weights_load_and_match_the_model_card():
    card = (DEFAULT_MODEL / "README.md").read_text()
    stated = re.search(r"sha256: `([0-9a-f]{64})`", card)
    assert stated, "the model card states the weights' sha256"
    assert hashlib.sha256(WEIGHTS.read_bytes()).hexdigest() == stated.group(1)
    assert WEIGHTS.stat().st_size <= 50 * 2 ** 20
    model = Composer.from_pretrained(DEFAULT_MODEL)
    assert model.config.output == "warp" and model.config.sample_frames == 16
    assert list(model.config.sample_size) == [64, 96]
    parameters = sum(p.numel() for p in model.parameters())
    assert f"{parameters / 1e6:.1f} M parameters" in card
