"""Emulation of vLLM-Omni's Higgs Audio v2 server (vllm-project/vllm-omni PR #3762), a test double.

The second real server of the model: ``vllm-omni serve <model> --omni --deploy-config <yaml>``, a
two-stage pipeline (stage 0 the talker, an autoregressive LLM; stage 1 code2wav, the codec decoder).
Its behaviour is specified row by row in ``docs/server-contract-omni.md`` (row IDs in comments);
``tests/contract/test_contract_omni.py`` drives this package as a real process.

Run: ``python -m higgs_sim.omni serve MODEL --omni [--deploy-config PATH] [--port 8000] ...``.

One concern per module: ``cli`` (command line), ``deploy`` (deploy YAML), ``startup`` (model and
codec checks), ``requests`` (body validation), ``pipeline`` (the two stages' timing), ``responses``
(encoders, SSE), ``voices`` (uploaded voices), ``metrics`` and ``api`` (routes). The engine, timing,
audio, arrival and trace modules of the Boson simulator are reused read-only.
"""

# vLLM-Omni's Docker image is built FROM vllm/vllm-openai:v0.25.0 (OS5, OS13): /version answers vLLM's.
EMULATED_VLLM_VERSION = "0.25.0"
EMULATES = "vLLM-Omni (vllm-project/vllm-omni, Higgs Audio v2 pipeline of PR #3762) on vLLM 0.25"
