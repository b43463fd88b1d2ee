"""The scene reader of a warp Composer: a small convolutional network that reads each frame of the conditions (the
transformed subject, the background and the matte, at latent resolution) and votes one value per output channel
of the warp map (`merge.warp`), added to every cell of the backbone's raw output.

Why a second reader beside the transformer: the map's placement (which way the subject faces, its size, its
height in the frame) is a function of the clean inputs alone, and the facts it rests on are local patterns
compared across the frame (the side a subject is lit from against the side props cast their shadows; its height
against the props' at the same depth). A throwaway probe (docs/training.md) found a conv net reads the mirror off
one frame at 73% held out where the transformer's softmax-pooled head, which also sees the noisy draft, stayed at
the training prior. The reader sees no noise and no timestep: it gives the same votes at every sampling step.

Adding a constant to every cell of a channel adds exactly that constant to its softmax-pooled value (the pool
weights sum to 1; the pool channel itself is left alone), so the reader needs nothing downstream changed. Its
last layer starts at zero: a fresh reader is the identity.

Beside its votes the reader gives one more value per frame, its *cue*: trained to regress the shift the
unmirrored map would need whatever the flip (`merge.warp.inverse_targets`' b_x for every sample), a target that
depends on the flip and so shapes features that see it. Measured (docs/training.md): trained on the votes' own
targets alone (each side's shift only where that side is right, the flip by its cross-entropy) the reader's
mirror stayed at chance on held-out scenes; with the cue, 78-81%.

A *symmetric* reader (`ComposerConfig.reader_symmetric`) also reads the same inputs with the subject layer and
its matte mirrored (the background as it is) and votes on the mirror with half the difference of its two raw
mirror votes. Mirroring the input layer exactly swaps the right answer (a subject that needs mirroring back
needs none once mirrored), so the vote is odd by construction: each sample teaches both views, and no prior over
flips (training's p 0.7, a benchmark's 0.5) can be learnt by the reader; the transformer's own vote still can.
With `reader_light_weight` it reads the whole scene mirrored too (subject, matte and background), for the light
of a drawn Composer: mirroring the scene mirrors its light, so the shadow's lean and the lit side across the subject
(`merge.warp`'s SHADOW_SHEAR, LIGHT_X) are voted by half the difference of the two views' and the light's other
values (length, darkness, softness, the vertical lit side) by their mean. Measured (docs/training.md): read from
one view, the lean collapsed to one side for every scene (a long shadow leaning one way is the safest guess) and
stayed at chance; odd by construction it cannot (on test scenes it then read the side every time).

With `light_reader_width` the light is a second reader's alone (`voted`: the light channels; it reads the scene
and the scene mirrored), and the first votes the map and the mirror only (it reads no mirrored scene). Measured
(docs/training.md): one reader with one set of features gave the mirror or the light, each at the other's cost;
two keep the mirror where it was.

Shapes: conditions (B, K, t, h, w) -> votes (B, out_channels, t, 1, 1), K = 2C + 1 with the matte channel;
cue (B, t).
"""

from __future__ import annotations

import torch
from torch import nn

from .warp import FLIP, LIGHT_X, LIGHT_Y, POOL, SHADOW_BLUR, SHADOW_DARK, SHADOW_SHEAR, SHADOW_SQUASH

ODD_LIGHT = (SHADOW_SHEAR, LIGHT_X)                                  # mirror with the scene
EVEN_LIGHT = (SHADOW_SQUASH, SHADOW_DARK, SHADOW_BLUR, LIGHT_Y)      # unchanged by it


class SceneReader(nn.Module):
    """Conv layers over each latent frame (with two coordinate channels, so a vote can depend on where things
    are), mean and max pooled over the frame, then a two-layer perceptron votes per output channel (the pooled
    features must be combined non-linearly: a mirror is "the subject lit from the left XOR the scene's light
    from the left").

    Args:
        in_channels: K, the conditions' channels; out_channels: the warp map's channels.
        width: the first layer's channels (later layers 2x and 4x).
        voted: the map channels it votes on (the others get 0); default all but the pool channel.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int = 32, voted: tuple[int, ...] | None = None):
        super().__init__()
        self.out_channels = out_channels
        keep = torch.zeros(out_channels)
        keep[list(voted) if voted is not None else [c for c in range(out_channels) if c != POOL]] = 1
        self.register_buffer("keep", keep, persistent=False)
        w = int(width)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels + 2, w, 3, padding=1), nn.GELU(),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.GELU(),
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.GELU(),
            nn.Conv2d(4 * w, 4 * w, 3, stride=2, padding=1), nn.GELU())
        self.combine = nn.Sequential(nn.Linear(8 * w, 4 * w), nn.GELU())
        self.vote = nn.Linear(4 * w, out_channels + 1)  # the votes and the cue
        nn.init.zeros_(self.vote.weight)
        nn.init.zeros_(self.vote.bias)

    def forward(self, conditions: torch.Tensor, mirrored: torch.Tensor | None = None,
                scene: torch.Tensor | None = None) -> torch.Tensor:
        """The votes of `read`."""
        return self.read(conditions, mirrored, scene)[0]

    def read(self, conditions: torch.Tensor, mirrored: torch.Tensor | None = None,
             scene: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """conditions (B, K, t, h, w) -> (votes (B, out_channels, t, 1, 1), 0 on the pool channel; cue (B, t)).
        With `mirrored` (the conditions of the mirrored subject over the same background, same shape), the
        mirror vote is half the difference of the two views'; with `scene` (those of the whole scene mirrored)
        and the light's channels, the light is voted odd and even under the scene's mirror (module docstring).
        The rest are the first view's."""
        views = [view for view in (conditions, mirrored, scene) if view is not None]
        votes, cue = self._read(torch.cat(views))
        votes, cue = votes.chunk(len(views)), cue.chunk(len(views))[0]
        ours = votes[0].clone()
        if mirrored is not None:
            ours[:, FLIP] = (votes[0][:, FLIP] - votes[1][:, FLIP]) / 2
        if scene is not None and self.out_channels > max(ODD_LIGHT + EVEN_LIGHT):
            theirs = votes[-1]
            ours[:, ODD_LIGHT] = (votes[0][:, ODD_LIGHT] - theirs[:, ODD_LIGHT]) / 2
            ours[:, EVEN_LIGHT] = (votes[0][:, EVEN_LIGHT] + theirs[:, EVEN_LIGHT]) / 2
        return ours, cue

    def _read(self, conditions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, k, t, h, w = conditions.shape
        frames = conditions.transpose(1, 2).reshape(b * t, k, h, w).to(self.vote.weight.dtype)
        ys = torch.linspace(-1, 1, h, device=frames.device, dtype=frames.dtype).view(1, 1, h, 1).expand(b * t, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=frames.device, dtype=frames.dtype).view(1, 1, 1, w).expand(b * t, 1, h, w)
        features = self.body(torch.cat([frames, ys, xs], dim=1))
        votes = self.vote(self.combine(torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)))
        votes, cue = votes[:, :-1], votes[:, -1]
        votes = (votes * self.keep.to(votes.dtype)).reshape(b, t, self.out_channels).transpose(1, 2)
        return votes[..., None, None], cue.reshape(b, t)
