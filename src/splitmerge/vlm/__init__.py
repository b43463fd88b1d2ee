"""Vision-language models: an OpenAI-compatible chat client, a local transformers model, frames for both.

`ChatClient` (stdlib HTTP) and `LocalVLM` (transformers, imported on construction) both answer
``ask(prompt, images)``; the Split stage's "http" and "transformers" captioners and the VLM judge use them.
"""

from __future__ import annotations

from .frames import CAPTION_FRAMES, jpeg_data_url, sample_frames, sample_indices
from .http import ChatClient, VLMError, chat_endpoint, user_message
from .local import LocalVLM

__all__ = ["CAPTION_FRAMES", "ChatClient", "LocalVLM", "VLMError", "chat_endpoint", "jpeg_data_url",
           "sample_frames", "sample_indices", "user_message"]
