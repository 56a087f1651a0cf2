"""AIPerf endpoint types for Higgs Audio (registered by plugins.yaml; runs inside AIPerf's venv).

`higgs_chat_audio`: the streamed chat (SSE) kind. Stock `chat` counts only text deltas as content,
and Boson's server streams audio with `"content": ""` (docs/server-contract.md CH6), so stock AIPerf
finds no first token; here an event counts as content when it carries `delta.audio.data`, so AIPerf's
TTFT is the time to the first audio event (TTFA), and its "tokens" are audio frames
(`wire.response_text`).
`higgs_speech`: `POST /v1/audio/speech`. AIPerf reads an `audio/*` body whole (one response stamped at
its end), so it gives request latency and throughput, no TTFA. It needs the `higgs_http` transport:
stock AIPerf 0.13.0 keeps the body's bytes in the record, and its workers then fail to send the
record as JSON (`UnicodeDecodeError: 'utf-8' codec can't decode byte ...`), so no request of a PCM
body is ever counted; `higgs_http` replaces the bytes by their count (`wire.body_summary`) and turns
an error the server appended to the audio (SP10) into a failed request.
Both send our load test's request bodies (`wire`), replacing AIPerf's chat payload (no
`stream_options`, no `max_completion_tokens`). `--extra-inputs` keys read here: `voice` (speech),
`system_prompt` (chat); no other key is merged into the body.
"""

from __future__ import annotations

from typing import Any

from aiperf.common.models import (
    BinaryResponse,
    ErrorDetails,
    InferenceServerResponse,
    ParsedResponse,
    RequestInfo,
    RequestRecord,
    TextResponse,
    TextResponseData,
)
from aiperf.endpoints.base_endpoint import BaseEndpoint
from aiperf.endpoints.openai_chat import ChatEndpoint
from aiperf.transports.aiohttp_transport import AioHttpTransport

from higgs_aiperf import wire


def _text(request_info: RequestInfo) -> str:
    if not request_info.turns or not request_info.turns[-1].texts:
        raise ValueError("a Higgs request needs one text turn")
    texts = request_info.turns[-1].texts[0].contents
    return " ".join(texts)


def _extra(request_info: RequestInfo) -> dict[str, Any]:
    return dict(request_info.model_endpoint.endpoint.extra or {})


def _model(request_info: RequestInfo) -> str:
    return request_info.turns[-1].model or request_info.model_endpoint.primary_model_name


class HiggsChatAudioEndpoint(ChatEndpoint):
    def format_payload(self, request_info: RequestInfo) -> dict[str, Any]:
        extra = _extra(request_info)
        system = extra.get("system_prompt", wire.SYSTEM_PROMPT)
        return wire.chat_body(_text(request_info), _model(request_info), system)

    def _parse_json_response(self, perf_ns: int, json_obj: Any) -> ParsedResponse | None:
        b64 = wire.event_audio(json_obj)
        if b64 is None:
            return None
        text = wire.response_text(wire.audio_seconds(b64))
        return ParsedResponse(perf_ns=perf_ns, data=TextResponseData(text=text))


class HiggsSpeechEndpoint(BaseEndpoint):
    def format_payload(self, request_info: RequestInfo) -> dict[str, Any]:
        voice = _extra(request_info).get("voice", "belinda")
        return wire.speech_body(_text(request_info), _model(request_info), str(voice))

    def parse_response(self, response: InferenceServerResponse) -> ParsedResponse | None:
        summary = wire.parse_body_summary(response.get_text())
        if summary is None or summary[0] == 0:
            return None
        seconds = summary[0] / (wire.SAMPLE_RATE * wire.BYTES_PER_SAMPLE)
        return ParsedResponse(
            perf_ns=response.perf_ns, data=TextResponseData(text=wire.response_text(seconds))
        )


class HiggsHttpTransport(AioHttpTransport):
    """AIPerf's HTTP transport, with binary bodies replaced by `wire.body_summary` text."""

    async def send_request(self, request_info: RequestInfo, payload: Any, **kwargs: Any) -> RequestRecord:
        record = await super().send_request(request_info, payload, **kwargs)
        for i, resp in enumerate(record.responses):
            if isinstance(resp, BinaryResponse):
                text = wire.body_summary(resp.raw_bytes)
                record.responses[i] = TextResponse(
                    perf_ns=resp.perf_ns, content_type="application/json", text=text
                )
                error = wire.speech_error(resp.raw_bytes)
                if error and record.error is None:
                    record.error = ErrorDetails(code=200, type="StreamError", message=error)
        return record
