"""Optional GRPO rollouts with vLLM (``bielik train grpo sampler=vllm``): a GPU machine with vLLM installed.

On a GPU, sampling G long completions is what a GRPO step spends most of its time on, and vLLM's
paged attention and continuous batching do it several times faster than an HF-style decode loop.
:class:`VLLMSampler` keeps a vLLM engine in the training process (colocated, sharing the GPU:
``gpu_memory_utilization`` bounds its share) and, before every rollout, loads the policy's current
weights into it, so the completions are on-policy. Its completions have the shape of
:func:`bielik.model.generation.sample`'s (token ids including the stop token, text, finish reason),
so rewards, advantages and rows are built exactly as with bielik's sampler; the RNG of a rollout is
derived from the rollout's generator, so a resumed run samples the same prompts (vLLM's kernels are
not bit-reproducible across runs, so resumed completions may differ in rare tokens).

Not exercised on the CPU machines bielik is tested on (there is no vLLM there): the CPU path is
:func:`bielik.model.generation.sample`. Under FSDP2 each rank would need the full weights; use it
with a single process or DDP.
"""

from __future__ import annotations

from bielik.errors import BielikError


class VLLMSampler:
    def __init__(self, model_dir: str, tokenizer, seed: int = 0, gpu_memory_utilization: float = 0.3):
        try:
            import vllm
        except ModuleNotFoundError:
            raise BielikError(
                "sampler=vllm needs vLLM (pip install vllm, on a machine with a CUDA GPU); "
                "sampler=bielik samples with bielik's own KV-cache sampler"
            ) from None
        import torch

        if not torch.cuda.is_available():
            raise BielikError("sampler=vllm needs a CUDA GPU; use sampler=bielik on this machine")
        self.vllm = vllm
        self.tok = tokenizer
        self.llm = vllm.LLM(
            model=str(model_dir), seed=seed, gpu_memory_utilization=gpu_memory_utilization, enable_prefix_caching=True
        )

    def load_weights(self, model) -> None:
        """Copy the policy's current weights into the vLLM engine (names of the HF checkpoint)."""
        runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
        runner.model.load_weights(model.state_dict().items())

    def __call__(self, policy_call, prompt_ids: list[list[int]], params, generator):
        import torch

        from bielik.model.generation import Completion

        policy_call(self.load_weights)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        sp = self.vllm.SamplingParams(
            n=1,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k or -1,
            max_tokens=params.max_new_tokens,
            stop_token_ids=sorted(params.stop_token_ids),
            seed=seed,
        )
        outs = self.llm.generate([{"prompt_token_ids": p} for p in prompt_ids], sp, use_tqdm=False)
        result = []
        for o in outs:
            c = o.outputs[0]
            ids = list(c.token_ids)
            stopped = bool(ids) and ids[-1] in params.stop_token_ids
            text = self.tok.decode(ids[:-1] if stopped else ids, skip_special_tokens=True)
            result.append(Completion(ids, text, "eos" if stopped else "length"))
        return result
