"""Vision-language models: frames, the OpenAI-compatible client against a local fake server, the "http" and
"transformers" captioners (the latter with a tiny randomly initialised LLaVA saved to a temporary folder)."""

from __future__ import annotations

import base64
import json
import socket
import time

import cv2
import numpy as np
import pytest

from splitmerge.decompose.backends import BackendUnavailable, SplitClip, describe_backends, get_backend
from splitmerge.decompose.vlm_caption import HTTPCaptioner, TransformersCaptioner
from splitmerge.vlm import ChatClient, VLMError, chat_endpoint, sample_frames, sample_indices
from splitmerge.vlm.frames import downscale

from conftest import moving_subject_clip
from fake_vlm import ANSWER, FakeServer

ENV = ("SPLITMERGE_VLM_URL", "SPLITMERGE_VLM_MODEL", "SPLITMERGE_VLM_API_KEY", "SPLITMERGE_VLM_CACHE",
       "SPLITMERGE_CAPTION_MODEL")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


# ------------------------------------------------------------------------------------------------ fake server


@pytest.fixture
def server():
    with FakeServer() as fake:
        yield fake


def client(server, **options) -> ChatClient:
    return ChatClient(server.url, "tiny-vlm", **{"backoff": 0.01, **options})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ----------------------------------------------------------------------------------------------------- frames


def test_sample_indices_are_even_and_cover_the_clip():
    indices = sample_indices(24, 12)
    assert len(indices) == 12 and indices[0] == 0 and indices[-1] == 23
    assert (np.diff(indices) > 0).all()
    assert sample_indices(5, 12) == [0, 1, 2, 3, 4] and sample_indices(0, 12) == []


def test_sample_frames_downscales_to_max_side():
    frames = np.zeros((10, 60, 200, 3), np.uint8)
    sampled = sample_frames(frames, 4, max_side=100)
    assert len(sampled) == 4 and sampled[0].shape == (30, 100, 3) and sampled[0].dtype == np.uint8
    frame = frames[0]
    assert downscale(frame, None) is frame and downscale(frame, 500) is frame


# ------------------------------------------------------------------------------------------------ chat client


@pytest.mark.parametrize(("url", "endpoint"), [
    ("http://host:8000", "http://host:8000/v1/chat/completions"),
    ("http://host:8000/", "http://host:8000/v1/chat/completions"),
    ("http://host:8000/v1", "http://host:8000/v1/chat/completions"),
    ("http://host:8000/v1/", "http://host:8000/v1/chat/completions"),
    ("https://api.example.com/openai/v1beta", "https://api.example.com/openai/v1beta/chat/completions"),
    ("http://host/v1/chat/completions", "http://host/v1/chat/completions"),
])
def test_chat_endpoint_rule(url, endpoint):
    assert chat_endpoint(url) == endpoint


def test_client_sends_openai_chat_request(server):
    image = np.full((8, 12, 3), (200, 30, 40), np.uint8)
    answer = client(server, api_key="sk-secret").ask("What is shown?", [image, "data:image/png;base64,AAAA"],
                                                     system="Be brief.", temperature=0.0, max_tokens=32)
    assert answer == ANSWER
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-secret"
    body = request["body"]
    assert body["model"] == "tiny-vlm" and body["temperature"] == 0.0 and body["max_tokens"] == 32
    system, user = body["messages"]
    assert system == {"role": "system", "content": "Be brief."}
    parts = user["content"]
    assert [part["type"] for part in parts] == ["image_url", "image_url", "text"]
    assert parts[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert parts[1]["image_url"]["url"] == "data:image/png;base64,AAAA"
    assert parts[2]["text"] == "What is shown?"


def test_client_reads_env_and_hides_the_key(server, monkeypatch):
    monkeypatch.setenv("SPLITMERGE_VLM_URL", server.url.removesuffix("/v1"))
    monkeypatch.setenv("SPLITMERGE_VLM_MODEL", "env-model")
    monkeypatch.setenv("SPLITMERGE_VLM_API_KEY", "sk-from-env")
    chat = ChatClient(backoff=0.01)
    assert "sk-from-env" not in repr(chat)
    assert chat.ask("hi") == ANSWER
    assert server.requests[0]["body"]["model"] == "env-model"
    assert server.requests[0]["headers"]["Authorization"] == "Bearer sk-from-env"
    server.plan.append(("status", 401, '{"error": "key sk-from-env is invalid"}'))
    with pytest.raises(VLMError) as error:
        chat.ask("hi")
    assert "sk-from-env" not in str(error.value) and "HTTP 401" in str(error.value)
    assert len(server.requests) == 2  # a 401 is not retried


def test_client_needs_url_and_model():
    with pytest.raises(VLMError, match="SPLITMERGE_VLM_URL"):
        ChatClient()
    with pytest.raises(VLMError, match="SPLITMERGE_VLM_MODEL"):
        ChatClient("http://127.0.0.1:9")
    with pytest.raises(VLMError, match="expected http"):
        ChatClient("localhost:8000", "m")


def test_client_retries_503_and_429(server):
    server.plan += [("status", 503, "overloaded"), ("status", 429, "slow down", {"Retry-After": "0"})]
    assert client(server).ask("hi") == ANSWER
    assert len(server.requests) == 3


def test_client_does_not_retry_400(server):
    server.plan.append(("status", 400, '{"error": {"message": "image too large"}}'))
    with pytest.raises(VLMError) as error:
        client(server).ask("hi")
    message = str(error.value)
    assert "\n" not in message and "HTTP 400" in message and "image too large" in message
    assert "127.0.0.1" in message and "/v1/chat/completions" in message
    assert len(server.requests) == 1


def test_client_gives_up_after_retries(server):
    server.plan += [("status", 502, "bad gateway")] * 3
    with pytest.raises(VLMError, match="after 3 attempts: HTTP 502"):
        client(server, retries=2).ask("hi")
    assert len(server.requests) == 3


def test_client_times_out(server):
    server.plan += [("sleep", 1.0), ("sleep", 1.0)]
    started = time.perf_counter()
    with pytest.raises(VLMError, match=r"after 2 attempts: no answer within 0\.2 s"):
        client(server, timeout=0.2, retries=1).ask("hi")
    assert time.perf_counter() - started < 0.9
    assert len(server.requests) == 2


def test_client_reports_a_refused_connection():
    chat = ChatClient(f"http://127.0.0.1:{free_port()}", "m", retries=1, backoff=0.0)
    with pytest.raises(VLMError, match="after 2 attempts: connection refused"):
        chat.ask("hi")


@pytest.mark.parametrize(("answer", "problem"), [
    (("raw", b"<html>gateway</html>"), "is not JSON"),
    (("raw", b'{"choices": []}'), "has no choices"),
    (("raw", b'{"choices": [{"message": {"content": null}}]}'), "has no text"),
])
def test_client_rejects_malformed_answers(server, answer, problem):
    server.plan.append(answer)
    with pytest.raises(VLMError, match=problem):
        client(server).ask("hi")
    assert len(server.requests) == 1


def test_client_accepts_content_parts(server):
    server.plan.append(("raw", json.dumps({"choices": [{"message": {"content": [
        {"type": "text", "text": "two "}, {"type": "text", "text": "parts"}]}}]}).encode()))
    assert client(server).ask("hi") == "two parts"


def test_client_cache_answers_reruns_without_the_server(server, tmp_path):
    cache = tmp_path / "cache"
    first = client(server, cache_dir=cache, api_key="sk-secret")
    assert first.ask("hi", temperature=0.0) == ANSWER
    assert first.ask("hi", temperature=0.0) == ANSWER
    assert len(server.requests) == 1
    second = client(server, cache_dir=cache)  # a rerun: a new client, the same question
    assert second.ask("hi", temperature=0.0) == ANSWER
    assert len(server.requests) == 1
    second.ask("hi", temperature=0.5)  # other parameters: another question
    second.ask("hello", temperature=0.0)
    assert len(server.requests) == 3
    files = sorted(cache.rglob("*.json"))
    assert len(files) == 3 and not list(cache.rglob("*.partial*"))
    assert all("sk-secret" not in path.read_text() for path in files)


# -------------------------------------------------------------------------------------------- http captioner


@pytest.fixture(scope="module")
def clip():
    frames, alpha, _ = moving_subject_clip()
    return SplitClip(frames, 25), alpha


def test_http_captioner_end_to_end(server, clip, monkeypatch):
    # get_backend checks availability() without the options, so the endpoint must be in the environment too.
    monkeypatch.setenv("SPLITMERGE_VLM_URL", server.url)
    captioner = get_backend("captioner", "http", url=server.url, model="tiny-vlm", api_key="sk-secret")
    caption = captioner.describe(*clip)
    assert caption == "A striped disc rolls to the right."
    body = server.requests[0]["body"]
    assert body["model"] == "tiny-vlm" and body["temperature"] == 0.0
    parts = body["messages"][0]["content"]
    images = [part["image_url"]["url"] for part in parts if part["type"] == "image_url"]
    assert len(images) == 12 and parts[-1] == {"type": "text", "text": "Describe the video in detail."}
    jpeg = base64.b64decode(images[0].removeprefix("data:image/jpeg;base64,"))
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == clip[0].frames.shape[1:]
    config = captioner.describe_config()
    assert config == {"name": "http", "frames": 12, "prompt": "Describe the video in detail.", "max_side": 512,
                      "model": "tiny-vlm", "url": server.url + "/chat/completions", "max_tokens": 512}
    assert "sk-secret" not in json.dumps(config)


def test_http_captioner_options_and_empty_answer(server, clip):
    captioner = HTTPCaptioner(url=server.url, model="tiny-vlm", frames=4, prompt="What moves?", max_side=54)
    server.plan.append(("answer", " \n "))
    with pytest.raises(VLMError, match="empty caption"):
        captioner.describe(*clip)
    captioner.describe(*clip)
    parts = server.requests[-1]["body"]["messages"][0]["content"]
    assert len(parts) == 5 and parts[-1]["text"] == "What moves?"


def test_vlm_captioners_unavailable_without_configuration(tmp_path):
    ok, reason = HTTPCaptioner.availability()
    assert not ok and "SPLITMERGE_VLM_URL" in reason and "--vlm-url" in reason
    assert HTTPCaptioner.availability(url="http://127.0.0.1:8000") == (True, "")
    rows = {row["name"]: row for row in describe_backends() if row["kind"] == "captioner"}
    assert not rows["http"]["available"] and "SPLITMERGE_VLM_URL" in rows["http"]["reason"]
    with pytest.raises(BackendUnavailable, match="SPLITMERGE_VLM_URL"):
        get_backend("captioner", "http")
    with pytest.raises(BackendUnavailable, match="SPLITMERGE_VLM_URL"):
        HTTPCaptioner(model="m")
    with pytest.raises(BackendUnavailable, match="SPLITMERGE_VLM_MODEL"):
        HTTPCaptioner(url="http://127.0.0.1:8000")

    ok, reason = TransformersCaptioner.availability()
    assert not ok and "SPLITMERGE_CAPTION_MODEL" in reason and "--caption-model" in reason
    ok, reason = TransformersCaptioner.availability(model_path=tmp_path / "missing")
    assert not ok and "does not exist" in reason
    with pytest.raises(BackendUnavailable, match="SPLITMERGE_CAPTION_MODEL"):
        TransformersCaptioner()


# ------------------------------------------------------------------------------------- transformers captioner


def save_tiny_llava(folder):
    """A randomly initialised LLaVA (1-layer CLIP vision tower, 1-layer Llama) and its processor, built offline:
    a word-level tokenizer over a few words, a CLIP image processor working at 28x28 (4 patches per image)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor, PreTrainedTokenizerFast)
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    special = ["<pad>", "<s>", "</s>", "<image>"]
    words = "[UNK] a the video shows cat dog runs across grass red ball USER: ASSISTANT: Describe in detail.".split()
    vocab = {word: index for index, word in enumerate(special + words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece()  # joins words with spaces
    backend.add_special_tokens(special)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", bos_token="<s>",
                                        eos_token="</s>", pad_token="<pad>")
    template = ("{% for message in messages %}{{ message['role'].upper() }}: {% for part in message['content'] %}"
                "{% if part['type'] == 'image' %}<image> {% else %}{{ part['text'] }}{% endif %}{% endfor %}\n"
                "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}")
    images = CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    processor = LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=14,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=template)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=28, patch_size=14),
        text_config=LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                                bos_token_id=1, eos_token_id=2, pad_token_id=0),
        image_token_id=vocab["<image>"], vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    pytest.importorskip("transformers")
    return save_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


def test_local_vlm_answers_only_new_tokens(tiny_vlm):
    from splitmerge.vlm import LocalVLM

    model = LocalVLM(tiny_vlm, max_new_tokens=5)
    images = [np.full((40, 60, 3), value, np.uint8) for value in (0, 128, 255)]
    answer = model.ask("Describe the video in detail.", images)
    assert isinstance(answer, str)
    assert len(answer.split()) <= 5  # the prompt alone has more words: it is not echoed
    assert model.ask("Describe the video in detail.", images) == answer
    assert str(model.device) == "cpu"


def test_local_vlm_rejects_a_folder_without_a_model(tmp_path):
    from splitmerge.vlm import LocalVLM

    with pytest.raises(VLMError, match="no config.json"):
        LocalVLM(tmp_path)


def test_transformers_captioner_is_deterministic(tiny_vlm, clip, monkeypatch):
    # get_backend checks availability() without the options, so the folder must be in the environment too.
    monkeypatch.setenv("SPLITMERGE_CAPTION_MODEL", str(tiny_vlm))
    captioner = get_backend("captioner", "transformers", model_path=str(tiny_vlm), max_new_tokens=8)
    first = captioner.describe(*clip)
    assert isinstance(first, str) and first == " ".join(first.split()) and first
    assert captioner.describe(*clip) == first
    assert captioner.describe_config() == {"name": "transformers", "frames": 12,
                                           "prompt": "Describe the video in detail.", "max_side": 512,
                                           "model": str(tiny_vlm), "max_new_tokens": 8}
