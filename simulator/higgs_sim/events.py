"""The bytes of chat completion responses, as vLLM renders them (``serving_chat.py``).

Streamed events are ``ChatCompletionStreamResponse.model_dump_json(exclude_unset=True)``: compact
JSON, keys in field order, only the fields the server set. A stream sends one event per generated
token, so the constant parts of one response's events are rendered once and reused: a token without
audio costs a bytes copy, not a ``json.dumps``.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from higgs_sim.protocol import error_body

DONE = b"data: [DONE]\n\n"
_EVENT_END = b"}\n\n"


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def audio_object(pcm: bytes) -> bytes:
    """ChatCompletionAudio of one streamed chunk (utils.py lines 100-107): a fresh id per chunk."""
    data = base64.b64encode(pcm)
    return (
        b'{"id":"audio-'
        + uuid.uuid4().hex.encode()
        + b'","data":"'
        + data
        + b'","expires_at":0,"transcript":""}'
    )


class ChatEvents:
    """The SSE events of one streamed chat completion."""

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        self._head = (
            b'data: {"id":'
            + _dumps(completion_id)
            + b',"object":"chat.completion.chunk","created":'
            + str(created).encode()
            + b',"model":'
            + _dumps(model)
            + b',"choices":'
        )
        self.role = self._choice(
            b'{"role":"assistant","content":""}', b',"logprobs":null,"finish_reason":null'
        )
        self.empty = self._choice(b'{"content":"","audio":null}', b',"logprobs":null,"finish_reason":null')

    def _choice(self, delta: bytes, rest: bytes) -> bytes:
        return self._head + b'[{"index":0,"delta":' + delta + rest + b"}]" + _EVENT_END

    def audio(self, pcm: bytes) -> bytes:
        """A token whose step completed a chunk."""
        delta = b'{"content":"","audio":' + audio_object(pcm) + b"}"
        return self._choice(delta, b',"logprobs":null,"finish_reason":null')

    def finish(self, reason: str, pcm: bytes | None) -> bytes:
        """The last token's event: it carries ``finish_reason`` and ``stop_reason`` (set, so dumped)."""
        audio = b"null" if pcm is None else audio_object(pcm)
        rest = b',"logprobs":null,"finish_reason":' + _dumps(reason) + b',"stop_reason":null'
        return self._choice(b'{"content":"","audio":' + audio + b"}", rest)

    def after_finish(self, pcm: bytes) -> bytes:
        """Audio decoded after the last step (serving_chat.py lines 709-735): only the fields it sets."""
        return self._choice(b'{"audio":' + audio_object(pcm) + b"}", b',"finish_reason":null')

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        """stream_options.include_usage: empty choices, then UsageInfo (exclude_none)."""
        usage = {
            "prompt_tokens": prompt_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens": completion_tokens,
        }
        return self._head + b'[],"usage":' + _dumps(usage) + _EVENT_END

    @staticmethod
    def error(message: str, err_type: str = "BadRequestError", code: int = 400) -> bytes:
        """A mid-stream error event (serving_chat.py lines 766-772)."""
        return b"data: " + stream_error_text(message, err_type, code).encode() + b"\n\n"


def stream_error_text(message: str, err_type: str = "BadRequestError", code: int = 400) -> str:
    """``create_streaming_error_response``: ``json.dumps`` with its default separators."""
    return json.dumps({"error": error_body(message, err_type, code)})


def chat_completion(
    completion_id: str,
    created: int,
    model: str,
    audio: str,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    """A non-streamed ChatCompletionResponse, ``model_dump()`` (every field)."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "reasoning_content": None,
                    "content": "",
                    "tool_calls": [],
                    "audio": {
                        "id": f"audio-{uuid.uuid4().hex}",
                        "data": audio,
                        "expires_at": 0,
                        "transcript": "",
                    },
                },
                "logprobs": None,
                "finish_reason": finish_reason,
                "stop_reason": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens": completion_tokens,
            "prompt_tokens_details": None,
        },
        "prompt_logprobs": None,
    }
