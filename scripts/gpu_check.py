"""Signet's watermark processor on a CUDA GPU, next to the same code on the CPU.

Run by scripts/gpu-check.sh on a GPU host that has CUDA PyTorch and transformers but no vLLM,
no network and no package registry. vLLM is replaced by a stand-in for the few names the
processor imports, so the processor itself, not a copy, runs on both devices.

1. Same marks: for every scheme, random logits of a batch go through the processor on the CPU
   and on the GPU; the green lists (kgw, kgw-lefthash: which logits got the bias) must be
   identical, and the tokens gumbel picks must agree except in near-ties.
2. randperm: CUDA's torch.randperm is not CPU's, so kgw-lefthash text made by transformers or
   TGI on a GPU has other green lists than any CPU reimplementation computes. Measured here.
3. Cost per decode step for batch 1-256 and a 150k vocabulary, next to a bare forward pass of a
   small model (random weights) on the same batch.
4. A transformers generation on the GPU through the same processor; the generated tokens'
   green share must sit far above gamma.
5. Model Runner V2's processor (engine/logits_processors_v2.py) on the GPU against the V1
   processor on the CPU, same logits and histories, and its cost per step at batch 1-256. For
   kgw and unigram, which gather their contexts on the device, a step runs once more with
   CUDA's sync debug mode set to raise: any copy back to the host fails the check.

Writes a JSON report to --out (default: gpu-check.json) and prints a summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "service"))

KEYS = {
    "default_key_id": "kgw",
    "keys": [
        {"key_id": "kgw", "secret": "gpu-check-secret-0123456789", "scheme": "kgw", "gamma": 0.25, "delta": 2.0},
        {"key_id": "kgw4", "secret": "gpu-check-secret-9876543210", "scheme": "kgw", "context_width": 4},
        {"key_id": "lefthash", "scheme": "kgw-lefthash", "hashing_key": 15485863, "gamma": 0.25, "delta": 2.0},
        {"key_id": "gumbel", "scheme": "gumbel", "key": 42, "context_width": 4},
        {"key_id": "unigram", "scheme": "unigram", "secret": "gpu-check-secret-unigram-01"},
    ],
}


def install_vllm_stand_in() -> None:
    """The names engine/logits_processors.py imports from vLLM; used even where vLLM is
    installed, so that the check runs the same code everywhere."""

    class SamplingParams:
        def __init__(self, extra_args: dict | None = None, temperature: float = 1.0) -> None:
            self.extra_args, self.temperature = extra_args, temperature

    class MoveDirectionality(enum.Enum):
        UNIDIRECTIONAL = 0
        SWAP = 1

    class LogitsProcessor:  # vLLM's base class has no behaviour the processor relies on
        pass

    class BatchUpdate:
        def __init__(self, added=(), removed=(), moved=()) -> None:
            self.added, self.removed, self.moved = list(added), list(removed), list(moved)

    modules = {name: types.ModuleType(name) for name in ("vllm", "vllm.v1", "vllm.v1.sample")}
    modules.update(v2_stand_in())
    modules["vllm.v1.sample.logits_processor"] = types.ModuleType("vllm.v1.sample.logits_processor")
    modules["vllm"].SamplingParams = SamplingParams
    stand_in = modules["vllm.v1.sample.logits_processor"]
    stand_in.LogitsProcessor, stand_in.BatchUpdate, stand_in.MoveDirectionality = (
        LogitsProcessor,
        BatchUpdate,
        MoveDirectionality,
    )
    sys.modules.update(modules)


def v2_stand_in() -> dict[str, types.ModuleType]:
    """Model Runner V2's names: its interface types (plain dataclasses in vLLM too) and a
    staging pool that copies through pinned memory, as vLLM's ``UvaBufferPool`` does."""

    @dataclasses.dataclass(frozen=True)
    class LogitsProcRequestState:
        device: torch.device
        max_num_reqs: int
        vocab_size: int
        all_token_ids: object
        prompt_len: object
        prefill_len: object
        total_len: object

    @dataclasses.dataclass(frozen=True)
    class LogitsContext:
        expanded_idx_mapping: torch.Tensor
        idx_mapping: torch.Tensor
        idx_mapping_np: np.ndarray
        expanded_local_pos: torch.Tensor
        input_ids: torch.Tensor
        pos: torch.Tensor
        seq_lens_upper_bound_np: np.ndarray

    class UvaBufferPool:
        def __init__(self, size: int, dtype: torch.dtype) -> None:
            self.dtype = dtype

        def copy_to_gpu(self, array: np.ndarray) -> torch.Tensor:
            host = torch.from_numpy(array).pin_memory()  # the caching host allocator keeps it until the copy ends
            return host.to("cuda", non_blocking=True)

    names = [
        "vllm.v1.worker",
        "vllm.v1.worker.gpu",
        "vllm.v1.worker.gpu.sample",
        "vllm.v1.worker.gpu.sample.logits_processor",
        "vllm.v1.worker.gpu.sample.logits_processor.interface",
        "vllm.v1.worker.gpu.buffer_utils",
    ]
    modules = {name: types.ModuleType(name) for name in names}
    interface = modules["vllm.v1.worker.gpu.sample.logits_processor.interface"]
    interface.LogitsProcessor = type("LogitsProcessor", (), {})
    interface.LogitsProcRequestState, interface.LogitsContext = LogitsProcRequestState, LogitsContext
    modules["vllm.v1.worker.gpu.buffer_utils"].UvaBufferPool = UvaBufferPool
    return modules


class V2Batch:
    """A Model Runner V2 batch on ``device``: one request per slot, all watermarked with one key."""

    def __init__(self, keys_file: Path, vocabulary: int, device: torch.device, key_id: str, rows: list[list[int]]):
        from vllm import SamplingParams
        from vllm.v1.worker.gpu.sample.logits_processor.interface import LogitsProcRequestState

        from signet.engine.logits_processors_v2 import WatermarkLogitsProcessorV2
        from signet.engine.watermark_requests import WATERMARK_KEY_ID_ARG

        self.device, self.lengths = device, np.array([len(row) for row in rows], dtype=np.int32)
        self.tokens = torch.zeros(len(rows), max(self.lengths) + 4096, dtype=torch.int32)
        for slot, row in enumerate(rows):
            self.tokens[slot, : len(row)] = torch.tensor(row, dtype=torch.int32)
        self.tokens = self.tokens.to(device)
        prompt = np.full(len(rows), 8, dtype=np.int32)
        state = LogitsProcRequestState(
            device, len(rows), vocabulary, types.SimpleNamespace(gpu=self.tokens), types.SimpleNamespace(np=prompt),
            None, None,
        )  # fmt: skip
        config = types.SimpleNamespace(
            additional_config={"signet_keys_file": str(keys_file)},
            model_config=types.SimpleNamespace(get_vocab_size=lambda: vocabulary),
            speculative_config=None,
        )
        self.processor = WatermarkLogitsProcessorV2(config, state)
        params = SamplingParams(extra_args={WATERMARK_KEY_ID_ARG: key_id}, temperature=1.0)
        for slot in range(len(rows)):
            self.processor.add_request(slot, params)

    def context(self):
        """This step's LogitsContext, built as the runner builds it (uploads included)."""
        from vllm.v1.worker.gpu.sample.logits_processor.interface import LogitsContext

        slots = np.arange(len(self.lengths), dtype=np.int32)
        on_device = torch.arange(len(slots), device=self.device)
        last = torch.from_numpy(self.lengths.astype(np.int64) - 1).to(self.device)
        return LogitsContext(
            on_device, on_device, slots, torch.zeros_like(on_device), self.tokens[on_device, last].long(), last,
            self.lengths,
        )  # fmt: skip

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        return self.processor.apply(logits, self.context())

    def append(self, tokens: torch.Tensor) -> None:
        """Commit one token per request on the device, as the runner does after sampling."""
        slots = torch.arange(len(self.lengths), device=self.device)
        self.tokens[slots, torch.from_numpy(self.lengths.astype(np.int64)).to(self.device)] = tokens.int()
        self.lengths = self.lengths + 1


def v2_same_marks(keys_file: Path, device: torch.device, vocabulary: int, batch: int) -> dict:
    """Model Runner V2's processor on the device against the V1 processor on the CPU."""
    results = {}
    for key_id in ("kgw", "kgw4", "unigram", "lefthash", "gumbel"):
        rows = histories(batch, vocabulary, 24, seed=7)
        logits = torch.randn(batch, vocabulary, generator=torch.Generator().manual_seed(3))
        try:
            v1, _ = with_rows(processor(keys_file, vocabulary, torch.device("cpu")), key_id, rows)
            expected = v1.apply(logits.clone())
            got = V2Batch(keys_file, vocabulary, device, key_id, rows).apply(logits.clone().to(device)).cpu()
        except ImportError as error:  # numba, for the gumbel noise
            results[key_id] = {"skipped": f"{error}"}
            continue
        if key_id == "gumbel":
            same = (expected.argmax(dim=1) == got.argmax(dim=1)).float().mean().item()
            results[key_id] = {"rows": batch, "same_token_share": same}
        else:
            results[key_id] = {
                "rows": batch,
                "identical_green_lists": bool(torch.equal((expected - logits) != 0, (got - logits) != 0)),
                "identical_logits": bool(torch.equal(expected, got)),
            }
    return results


def v2_step_costs(keys_file: Path, device: torch.device, vocabulary: int, batches: list[int], repeats: int) -> list:
    """Model Runner V2's processor per decode step; for kgw and unigram, whether a step ever
    waits for the device (CUDA's sync debug mode turned to errors)."""
    rows = []
    for batch in batches:
        row: dict = {"batch": batch}
        logits = torch.randn(batch, vocabulary, device=device)
        for key_id in ("kgw", "unigram", "lefthash", "gumbel"):
            try:
                runner = V2Batch(keys_file, vocabulary, device, key_id, histories(batch, vocabulary, 24, 1))
                tokens = iter(range(10**9))

                def one_step(runner=runner, tokens=tokens, logits=logits, batch=batch) -> None:
                    runner.apply(logits.clone())
                    runner.append(torch.tensor([next(tokens) % vocabulary for _ in range(batch)]).to(device))

                row[f"{key_id}_ms"] = timed(one_step, repeats, device) * 1e3
                if device.type == "cuda" and key_id in ("kgw", "unigram"):
                    context, step_logits = runner.context(), logits.clone()  # the runner's uploads, not the processor's
                    torch.cuda.synchronize()
                    torch.cuda.set_sync_debug_mode("error")
                    try:
                        runner.processor.apply(step_logits, context)
                        row[f"{key_id}_host_sync"] = "none"
                    except RuntimeError as error:
                        row[f"{key_id}_host_sync"] = str(error)[:200]
                    finally:
                        torch.cuda.set_sync_debug_mode("default")
            except ImportError as error:
                row[f"{key_id}_ms"] = f"skipped: {error}"
        rows.append(row)
    return rows


def processor(keys_file: Path, vocabulary: int, device: torch.device):
    from signet.engine.logits_processors import WatermarkLogitsProcessor

    config = types.SimpleNamespace(
        additional_config={"signet_keys_file": str(keys_file)},
        model_config=types.SimpleNamespace(get_vocab_size=lambda: vocabulary),
    )
    return WatermarkLogitsProcessor(config, device, False)


def with_rows(proc, key_id: str, histories: list[list[int]], temperature: float = 1.0):
    """Give the processor one watermarked row per history (prompt of 8 tokens, the rest output).

    Returns the processor and each row's output list, which the processor reads live as vLLM's."""
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor import BatchUpdate

    from signet.engine.watermark_requests import WATERMARK_KEY_ID_ARG

    params = SamplingParams(extra_args={WATERMARK_KEY_ID_ARG: key_id}, temperature=temperature)
    outputs = [history[8:] for history in histories]
    added = [(index, params, history[:8], outputs[index]) for index, history in enumerate(histories)]
    proc.update_state(BatchUpdate(added=added))
    return proc, outputs


def histories(batch: int, vocabulary: int, length: int, seed: int) -> list[list[int]]:
    generator = np.random.default_rng(seed)
    return [generator.integers(0, vocabulary, size=length).tolist() for _ in range(batch)]


def same_marks(keys_file: Path, device: torch.device, vocabulary: int, batch: int) -> dict:
    results = {}
    for key_id in ("kgw", "kgw4", "lefthash", "gumbel"):
        rows = histories(batch, vocabulary, 24, seed=7)
        logits = torch.randn(batch, vocabulary, generator=torch.Generator().manual_seed(3))
        try:
            outputs = {}
            for where in (torch.device("cpu"), device):
                proc, _ = with_rows(processor(keys_file, vocabulary, where), key_id, rows)
                outputs[where.type] = proc.apply(logits.clone().to(where)).float().cpu()
        except ImportError as error:  # numba, for the gumbel noise
            results[key_id] = {"skipped": f"{error}"}
            continue
        cpu, other = outputs["cpu"], outputs[device.type]
        if key_id == "gumbel":
            agree = (cpu.argmax(dim=1) == other.argmax(dim=1)).float().mean().item()
            results[key_id] = {"rows": batch, "same_token_share": agree}
        else:
            cpu_green, other_green = (cpu - logits) != 0, (other - logits) != 0
            results[key_id] = {
                "rows": batch,
                "identical_green_lists": bool(torch.equal(cpu_green, other_green)),
                "green_share": cpu_green.float().mean().item(),
            }
    return results


def randperm_agreement(device: torch.device, vocabulary: int) -> dict:
    """transformers' lefthash seeds torch.randperm with a generator on the model's device."""
    seed = 15485863 * 1234
    cpu = torch.randperm(vocabulary, generator=torch.Generator().manual_seed(seed))
    if device.type == "cpu":
        return {"device": "cpu", "note": "no accelerator: nothing to compare"}
    other = torch.randperm(vocabulary, device=device, generator=torch.Generator(device=device).manual_seed(seed))
    same = (cpu == other.cpu()).float().mean().item()
    return {"device": device.type, "same_position_share": same, "identical": same == 1.0}


def timed(step, repeats: int, device: torch.device) -> float:
    """Median seconds of ``step()`` over ``repeats`` runs after two warm-ups."""
    times = []
    for attempt in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if attempt >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_costs(keys_file: Path, device: torch.device, vocabulary: int, batches: list[int], repeats: int) -> list:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocabulary,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
    )  # SmolLM2-135M's shape with a 150k vocabulary
    model = LlamaForCausalLM(config).to(device).eval()
    rows = []
    for batch in batches:
        logits = torch.randn(batch, vocabulary, device=device)
        tokens = torch.randint(0, vocabulary, (batch, 1), device=device)
        with torch.inference_mode():
            forward = timed(lambda tokens=tokens: model(tokens), repeats, device)
        row = {"batch": batch, "forward_ms": forward * 1e3}
        for key_id in ("kgw", "lefthash", "gumbel"):
            try:
                row_histories = histories(batch, vocabulary, 24, 1)
                proc, outputs = with_rows(processor(keys_file, vocabulary, device), key_id, row_histories)
                # Fresh contexts each step, as in decoding (kgw would otherwise hit its mask cache).
                contexts = iter(range(10**9))

                def one_step(proc=proc, outputs=outputs, contexts=contexts, logits=logits) -> None:
                    for output_ids in outputs:
                        output_ids.append(next(contexts) % vocabulary)
                    proc.apply(logits.clone())

                row[f"{key_id}_ms"] = timed(one_step, repeats, device) * 1e3
            except ImportError as error:
                row[f"{key_id}_ms"] = f"skipped: {error}"
        rows.append(row)
    return rows


def generation(keys_file: Path, device: torch.device, vocabulary: int, tokens: int) -> dict:
    """transformers generate() on the device, biased by the same processor via an adapter."""
    from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocabulary,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    model = LlamaForCausalLM(config).to(device).eval()
    prompt = torch.randint(0, vocabulary, (4, 8), device=device)
    proc, outputs = with_rows(processor(keys_file, vocabulary, device), "kgw", [row.tolist() for row in prompt.cpu()])

    def adapter(input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for index, row in enumerate(input_ids.tolist()):  # vLLM keeps output_ids live; here we copy
            outputs[index][:] = row[8:]
        return proc.apply(scores)

    with torch.inference_mode():
        generated = model.generate(
            prompt,
            max_new_tokens=tokens,
            do_sample=True,
            top_k=0,  # transformers' default top-k of 50 would leave a random model only green tokens
            logits_processor=LogitsProcessorList([adapter]),
            pad_token_id=0,
        )
    # Score each generated token's green membership (repeats included) with the detector's code.
    from signet.keys import KeyRegistry

    scheme = KeyRegistry.load(keys_file, vocabulary).scheme("kgw")
    green, total = 0, 0
    for row in generated.cpu().tolist():
        evidence = scheme.evidence(row[7:], ignore_repeated_ngrams=False)  # the last prompt token is the first context
        green += round(evidence.score_sum)
        total += evidence.num_scored_tokens
    share = green / total
    z = (green - 0.25 * total) / (0.25 * 0.75 * total) ** 0.5
    return {"device": device.type, "tokens": total, "green_share": share, "z": z}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-check.json"))
    parser.add_argument("--vocabulary", type=int, default=150_000)
    parser.add_argument("--batches", default="1,4,16,64,256")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=64)
    arguments = parser.parse_args()
    install_vllm_stand_in()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batches = [int(batch) for batch in arguments.batches.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        keys_file = Path(folder) / "keys.json"
        keys_file.write_text(
            json.dumps(
                {
                    **KEYS,
                    "keys": [
                        {**key, "vocab_size": arguments.vocabulary} if key["scheme"] == "kgw-lefthash" else key
                        for key in KEYS["keys"]
                    ],
                }
            )
        )
        report = {
            "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu (no CUDA device)",
            "torch": torch.__version__,
            "vocabulary": arguments.vocabulary,
            "same_marks": same_marks(keys_file, device, arguments.vocabulary, batch=64),
            "randperm": randperm_agreement(device, arguments.vocabulary),
            "step_costs": step_costs(keys_file, device, arguments.vocabulary, batches, arguments.repeats),
            "generation": generation(keys_file, device, arguments.vocabulary, arguments.tokens),
            "v2_same_marks": v2_same_marks(keys_file, device, arguments.vocabulary, batch=64),
            "v2_step_costs": v2_step_costs(keys_file, device, arguments.vocabulary, batches, arguments.repeats),
        }
    arguments.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    failures = [
        f"{check}: {key}"
        for check in ("same_marks", "v2_same_marks")
        for key, result in report[check].items()
        if result.get("identical_green_lists") is False or result.get("same_token_share", 1.0) < 0.99
    ]
    failures += [
        f"v2 {name} at batch {row['batch']}"
        for row in report["v2_step_costs"]
        for name, value in row.items()
        if name.endswith("_host_sync") and value != "none"
    ]
    if report["generation"]["z"] < 4:
        failures.append("generation z < 4")
    if failures:
        raise SystemExit(f"gpu-check: FAILED: {failures}")


if __name__ == "__main__":
    main()
