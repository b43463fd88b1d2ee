"""A client for OpenAI-compatible chat endpoints (vLLM, SGLang, Ollama, LM Studio, llama.cpp server, OpenAI, ...).

HTTP through the standard library (urllib); OpenCV only to encode array images. One POST per question to the
endpoint's ``/chat/completions`` in the OpenAI chat format (text and ``image_url`` content parts); the text of the
first choice is returned.

Endpoint rule (`chat_endpoint`), for a `url` given as an argument or in ``SPLITMERGE_VLM_URL``:

- a URL ending in ``/chat/completions`` is used as it is;
- a URL with no path (``http://host:8000`` or ``http://host:8000/``) gets ``/v1/chat/completions``;
- any other URL (``http://host:8000/v1``, ``https://api.example.com/openai/v1beta``) gets ``/chat/completions``.

Failures: timeouts, connection errors, HTTP 429 and HTTP 5xx are retried with exponential backoff
(``backoff * 2**attempt`` seconds, or the server's ``Retry-After`` when it asks for at most a minute); other HTTP
errors and malformed answers are not. Every failure ends as one `VLMError` line naming the endpoint and the
problem. The API key is sent only in the ``Authorization`` header: it is never logged, cached, hashed or shown.

Cache: with `cache_dir` (or ``SPLITMERGE_VLM_CACHE``), each answer is stored under the SHA-256 of (endpoint,
model, messages, parameters), so asking the same question again costs nothing.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ..atomic import atomic_file
from ..errors import SplitMergeError

URL_ENV = "SPLITMERGE_VLM_URL"
MODEL_ENV = "SPLITMERGE_VLM_MODEL"
KEY_ENV = "SPLITMERGE_VLM_API_KEY"
CACHE_ENV = "SPLITMERGE_VLM_CACHE"

MAX_RETRY_AFTER = 60.0  # seconds; a longer Retry-After is ignored in favour of our own backoff
SNIPPET = 200           # characters of a server's error body quoted in a VLMError


class VLMError(SplitMergeError):
    """A vision-language model could not answer: unreachable, refused, timed out, malformed answer, bad folder."""


def chat_endpoint(url: str) -> str:
    """The full ``.../chat/completions`` URL for `url` (see the module docstring for the rule)."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise VLMError(f"VLM url {public_url(url)!r}: expected http(s)://host[:port][/v1]")
    path = parts.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        path += "/chat/completions" if path else "/v1/chat/completions"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def public_url(url: str) -> str:
    """`url` without user:password and query, which may hold credentials: safe to log and record."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def user_message(prompt: str, images=()) -> dict:
    """A user message: the `images` as ``image_url`` parts, then the `prompt` text. Each image is a data URL, an
    http(s) URL, or an (H, W, 3) uint8 RGB array (sent as a JPEG data URL)."""
    from .frames import jpeg_data_url

    urls = [image if isinstance(image, str) else jpeg_data_url(image) for image in images]
    content = [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    content.append({"type": "text", "text": prompt})
    return {"role": "user", "content": content}


def _one_line(text: str, limit: int = SNIPPET) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


class ChatClient:
    """Asks an OpenAI-compatible chat endpoint; see the module docstring for the URL rule, retries and cache.

    Args:
        url: the server (``http://host:8000``, ``.../v1`` or the full ``.../chat/completions``); default
            ``SPLITMERGE_VLM_URL``.
        model: the model name the server knows; default ``SPLITMERGE_VLM_MODEL``.
        api_key: sent as ``Authorization: Bearer``; default ``SPLITMERGE_VLM_API_KEY``; none when unset.
        timeout: seconds to wait on connecting and on each read.
        retries: further attempts after a failed first one (timeouts, connection errors, 429, 5xx).
        backoff: seconds before the first retry, doubled for each next one.
        cache_dir: folder of cached answers; default ``SPLITMERGE_VLM_CACHE``; no cache when unset.
    """

    def __init__(self, url: str | None = None, model: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0, retries: int = 3, backoff: float = 1.0,
                 cache_dir: str | os.PathLike | None = None):
        url = url or os.environ.get(URL_ENV)
        model = model or os.environ.get(MODEL_ENV)
        if not url:
            raise VLMError(f"no VLM endpoint: pass a url (--vlm-url) or set {URL_ENV}")
        if not model:
            raise VLMError(f"no VLM model name for {public_url(url)}: pass a model (--vlm-model) or set {MODEL_ENV}")
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise VLMError(f"VLM client: timeout must be > 0, retries and backoff >= 0 (got {timeout}, {retries}, "
                           f"{backoff})")
        self.url = url
        self.endpoint = chat_endpoint(url)
        self.public_endpoint = public_url(self.endpoint)  # what messages and records show
        self.model = model
        self._api_key = api_key or os.environ.get(KEY_ENV) or None
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        cache_dir = cache_dir or os.environ.get(CACHE_ENV)
        self.cache_dir = Path(cache_dir) if cache_dir else None

    def __repr__(self) -> str:
        key = "set" if self._api_key else "unset"
        return f"ChatClient(endpoint={self.public_endpoint!r}, model={self.model!r}, api_key={key})"

    def ask(self, prompt: str, images=(), system: str | None = None, **params) -> str:
        """The answer to one user turn: `images` (data URLs, http URLs or (H, W, 3) uint8 RGB arrays) then
        `prompt`, after an optional `system` message. `params` are extra request fields (``temperature``,
        ``max_tokens``, ``seed``, ...)."""
        messages = [{"role": "system", "content": system}] if system else []
        messages.append(user_message(prompt, images))
        return self.chat(messages, **params)

    def chat(self, messages: list[dict], **params) -> str:
        """The text of the first choice for `messages` (OpenAI chat format) with request fields `params`."""
        cached = self._cache_path(messages, params)
        if cached is not None and (text := _read_cache(cached)) is not None:
            return text
        raw = self._post({"model": self.model, "messages": messages, **params})
        text = self._first_choice_text(raw)
        if cached is not None:
            with atomic_file(cached) as temporary:
                record = {"endpoint": self.public_endpoint, "model": self.model, "text": text}
                temporary.write_text(json.dumps(record), encoding="utf-8")
        return text

    # ------------------------------------------------------------------------------------------------ internals

    def _cache_path(self, messages: list[dict], params: dict) -> Path | None:
        if self.cache_dir is None:
            return None
        identity = json.dumps({"endpoint": self.endpoint, "model": self.model, "messages": messages,
                               "params": params}, sort_keys=True, ensure_ascii=False)
        digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest}.json"

    def _post(self, body: dict) -> bytes:
        payload = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "splitmerge"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        attempts = self.retries + 1
        for attempt in range(attempts):
            request = urllib.request.Request(self.endpoint, data=payload, headers=headers, method="POST")
            wait = self.backoff * 2 ** attempt
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return response.read()
            except urllib.error.HTTPError as error:
                problem = f"HTTP {error.code} {error.reason}{self._body_of(error)}"
                retryable = error.code == 429 or error.code >= 500
                wait = _retry_after(error.headers, wait)
            except (OSError, http.client.HTTPException) as error:  # URLError, timeouts, resets are OSErrors
                problem = self._network_problem(error)
                retryable = True
            if not retryable or attempt == attempts - 1:
                tries = f" after {attempt + 1} attempts" if attempt else ""
                raise VLMError(self._mask(f"VLM request to {self.public_endpoint} failed{tries}: {problem}"))
            time.sleep(wait)
        raise AssertionError("unreachable")

    def _network_problem(self, error: BaseException) -> str:
        reason = getattr(error, "reason", error)  # URLError wraps the socket error in .reason
        if isinstance(reason, TimeoutError) or isinstance(error, TimeoutError):
            return f"no answer within {self.timeout:g} s"
        if isinstance(reason, ConnectionRefusedError):
            return "connection refused (is the server running?)"
        return _one_line(f"{type(reason).__name__}: {reason}")

    @staticmethod
    def _body_of(error: urllib.error.HTTPError) -> str:
        try:
            body = error.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException):
            return ""
        return f": {_one_line(body)}" if body.strip() else ""

    def _first_choice_text(self, raw: bytes) -> str:
        try:
            answer = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise VLMError(self._mask(f"VLM answer from {self.public_endpoint} is not JSON: "
                                      f"{_one_line(raw.decode('utf-8', 'replace'))!r}")) from None
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise VLMError(self._mask(f"VLM answer from {self.public_endpoint} has no choices[0].message."
                                      f"content: {_one_line(json.dumps(answer))}")) from None
        if isinstance(content, list):  # some servers answer with content parts
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if not isinstance(content, str):
            raise VLMError(f"VLM answer from {self.public_endpoint} has no text "
                           f"(content is {type(content).__name__})")
        return content

    def _mask(self, message: str) -> str:
        """`message` with the API key blanked, should a server ever echo it back."""
        return message.replace(self._api_key, "***") if self._api_key else message


def _retry_after(headers, default: float) -> float:
    """The server's ``Retry-After`` in seconds when it is a number no larger than `MAX_RETRY_AFTER`."""
    try:
        value = float(headers.get("Retry-After", ""))
    except (TypeError, ValueError, AttributeError):
        return default
    return value if 0 <= value <= MAX_RETRY_AFTER else default


def _read_cache(path: Path) -> str | None:
    """The cached answer at `path`, or None when absent or unreadable (then it is asked again)."""
    try:
        text = json.loads(path.read_text(encoding="utf-8"))["text"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return text if isinstance(text, str) else None
