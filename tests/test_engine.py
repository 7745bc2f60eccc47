"""The streaming engine: exact greedy equality with generate(), prefix reuse, batching, streaming."""

from __future__ import annotations

import shutil
import sysconfig
import threading
from pathlib import Path

import pytest
import torch

from embodied.core.errors import EngineError
from embodied.engine.constrained import build_constraint, full_vocabulary
from embodied.engine.core import Engine
from embodied.engine.decoder import Decoder
from embodied.engine.records import EngineConfig, Request
from embodied.engine.reduce import keep_top_patches
from embodied.engine.scheduler import BatchScheduler

D = 64


def _lm(vocab=96, kv_heads=2, seed=0, **kw):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=D, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=kv_heads, max_position_embeddings=256, eos_token_id=None, **kw,
    )
    return LlamaForCausalLM(cfg).eval()


def _generate(lm, x, n, **kw):
    with torch.no_grad():
        out = lm.generate(inputs_embeds=x[None], do_sample=False, max_new_tokens=n, min_new_tokens=n if not kw else 0,
                          pad_token_id=0, **kw)
    return out[0].tolist()


@pytest.fixture(scope="module")
def tiny_tokenizer():
    from embodied.model.tokenizer import build_tokenizer

    return build_tokenizer(["put red cube on blue cube; done", "stack the red cube"], vocab_size=256)


@pytest.fixture(scope="module")
def lm():
    return _lm()


def test_decoder_prefill_logits_match_transformers(lm):
    dec = Decoder.from_hf(lm, 64)
    x = torch.randn(2, 17, D)
    cache = dec.new_cache(2, 64)
    with torch.no_grad():
        ours = dec(x, torch.arange(17).expand(2, 17), cache, 0, 64)
        ref = lm(inputs_embeds=x).logits[:, -1]
    assert torch.allclose(ours, ref, atol=1e-5)


@pytest.mark.parametrize("kv_heads,rope", [(2, None), (4, {"rope_type": "linear", "factor": 2.0, "rope_theta": 500.0})])
def test_greedy_tokens_equal_generate_token_for_token(kv_heads, rope):
    lm = _lm(kv_heads=kv_heads, seed=1, **({"rope_parameters": rope} if rope else {}))
    eng = Engine(lm, config=EngineConfig(max_batch=4, max_len=96, max_new_tokens=16, stop_at_eos=False))
    for seed in range(2):
        g = torch.Generator().manual_seed(seed)
        xs = [torch.randn(T, D, generator=g) for T in (30, 7)]
        ours = eng.generate([Request(x) for x in xs])  # batched, different lengths
        for x, toks in zip(xs, ours):
            assert toks == _generate(lm, x, 16)


def test_constrained_engine_equals_generate_with_logits_processor(tiny_tokenizer):
    tok = tiny_tokenizer
    lm = _lm(vocab=len(tok), seed=2)
    c = build_constraint(tok, ["red cube", "blue cube", "green cylinder"], ["tray"])
    eng = Engine(lm, config=EngineConfig(max_batch=2, max_len=128, max_new_tokens=40), eos_token_id=tok.eos_token_id)
    for seed in range(2):
        x = torch.randn(20, D, generator=torch.Generator().manual_seed(seed))
        (ours,) = eng.generate([Request(x, c)])
        ref = _generate(lm, x, 40, logits_processor=[c.logits_processor()], eos_token_id=tok.eos_token_id)
        assert ours == ref


@pytest.mark.skipif(
    not (shutil.which("g++") and Path(sysconfig.get_paths()["include"], "Python.h").is_file()),
    reason="inductor's CPU backend with its C++ wrapper needs g++ and the Python headers",
)
def test_compiled_cpu_step_equals_generate_token_for_token(tiny_tokenizer):
    tok = tiny_tokenizer
    lm = _lm(vocab=len(tok), seed=2)
    c = build_constraint(tok, ["red cube", "blue cube", "green cylinder"], ["tray"])
    cfg = EngineConfig(max_batch=1, max_len=128, max_new_tokens=18, max_states=c.num_states, cpu_compile=True)
    eng = Engine(lm, config=cfg, eos_token_id=tok.eos_token_id)
    g = torch.Generator().manual_seed(7)
    prefix = torch.randn(10, D, generator=g)
    for T in (30, 7, 12):  # one compiled graph serves every prompt length (static cache, mask)
        x = torch.cat([prefix, torch.randn(T, D, generator=g)])
        t = eng.submit(Request(x, session="robot-1", prefix_len=10, max_new_tokens=18))
        eng.run()
        assert t.tokens == _generate(lm, x, 18, eos_token_id=tok.eos_token_id)
    assert eng.compiled and t.reused_prefix == 10
    lengths = []
    for seed in range(2):  # constrained
        x = torch.randn(20, D, generator=torch.Generator().manual_seed(seed))
        (ours,) = eng.generate([Request(x, c, max_new_tokens=40)])
        assert ours == _generate(lm, x, 40, logits_processor=[c.logits_processor()], eos_token_id=tok.eos_token_id)
        lengths.append(len(ours))
    assert min(lengths) % 4 != 1  # one plan ended inside a 4-step chunk: its remaining steps were dropped


def test_compiled_cpu_step_falls_back_to_eager_when_compilation_fails(lm):
    eng = Engine(lm, config=EngineConfig(max_batch=1, max_len=96, max_new_tokens=8, stop_at_eos=False, cpu_compile=True))

    def no_compiler(*args):
        raise RuntimeError("C++ compiler not found")

    eng._compiled_decode = eng._compiled_prefill = no_compiler  # what inductor raises without a compiler
    x = torch.randn(20, D)
    with pytest.warns(UserWarning, match="compiling for the CPU failed"):
        (toks,) = eng.generate([Request(x)])
    assert not eng.compiled and toks == _generate(lm, x, 8)


def test_decode_step_is_lean_and_never_copies_the_kv_cache():
    """A decode step is a short, fixed list of ops (on CUDA, each one kernel of the captured graph):
    per layer one RMSNorm op each (not the eight written-out ops in bf16), residual adds inside the
    GEMMs, GQA attending to the cache in place (no repeated K/V), the mask built once per step."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls = []  # (op, sizes of the freshly allocated tensors it returned), views left out

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if not func.is_view:
                seen = {a.untyped_storage().data_ptr() for a in torch.utils._pytree.tree_leaves((args, kwargs))
                        if isinstance(a, torch.Tensor)}
                outs = out if isinstance(out, (tuple, list)) else (out,)
                new = [o.numel() for o in outs if isinstance(o, torch.Tensor) and o.untyped_storage().data_ptr() not in seen]
                self.calls.append((func.overloadpacket.__name__, new))
            return out

    def decode_ops(layers):
        eng = Engine(_lm_layers(layers), config=EngineConfig(max_batch=2, max_len=96, max_new_tokens=8, dtype="bfloat16",
                                                              stop_at_eos=False))
        eng.submit(Request(torch.randn(30, D)))
        eng._host_pos = eng.pos.tolist()
        with Ops() as ops:
            eng._decode_impl(1)
        return eng, ops.calls

    eng, calls = decode_ops(2)
    _, calls3 = decode_ops(3)
    per_layer = len(calls3) - len(calls)
    assert per_layer <= 14, [name for name, _ in calls3]  # was 27 with the written-out RMSNorm in bf16
    row = eng.cache.k[0][0].numel()  # one row of one layer's K cache
    assert [c for c in calls3 if any(n >= row for n in c[1])] == [], "the decode step copied the KV cache"
    assert sum(name in ("le", "where", "masked_fill", "masked_fill_") for name, _ in calls3) <= 2  # the mask, once


def _lm_layers(layers):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=96, hidden_size=D, intermediate_size=128, num_hidden_layers=layers, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=256, eos_token_id=None)
    return LlamaForCausalLM(cfg).eval()


def _flash_contract(q, k_cache, v_cache, cache_seqlens, ignore_lens=False):
    """``flash_attn_with_kvcache``'s documented decode contract in plain torch: the CPU stand-in for
    the CUDA kernel, so the engine's use of it (layout, lengths, GQA order) is tested here."""
    B, _, H, hd = q.shape
    rep = H // k_cache.shape[2]
    out = []
    for b in range(B):
        n = k_cache.shape[1] if ignore_lens else int(cache_seqlens[b])
        k = k_cache[b, :n].transpose(0, 1).repeat_interleave(rep, 0)  # (H, n, hd)
        v = v_cache[b, :n].transpose(0, 1).repeat_interleave(rep, 0)  # (H, n, hd)
        out.append(((q[b, 0, :, None] @ k.transpose(1, 2)) / hd**0.5).softmax(-1) @ v)  # (H, 1, hd)
    return torch.stack(out).transpose(1, 2)  # (B, 1, H, hd)


def test_flash_decode_path_equals_generate_and_a_wrong_kernel_is_refused():
    from embodied.engine.decoder import check_flash_decode

    lm = _lm(kv_heads=2, seed=3)
    eng = Engine(lm, config=EngineConfig(max_batch=4, max_len=96, max_new_tokens=12, stop_at_eos=False))
    calls = []

    def flash(*a, **kw):
        calls.append(kw["cache_seqlens"].clone())
        return _flash_contract(*a, **kw)

    assert check_flash_decode(flash, eng.decoder.shape, torch.float32, "cpu") is None
    wrong = check_flash_decode(lambda *a, **kw: _flash_contract(*a, **kw, ignore_lens=True), eng.decoder.shape, torch.float32, "cpu")
    assert wrong is not None and "SDPA" in wrong
    calls.clear()
    eng.decoder.flash_decode = flash  # what the engine sets on CUDA when flash-attn is installed
    xs = [torch.randn(T, D, generator=torch.Generator().manual_seed(T)) for T in (25, 9)]
    ours = eng.generate([Request(x) for x in xs])  # batched rows at different positions
    assert [t == _generate(lm, x, 12) for x, t in zip(xs, ours)] == [True, True]
    assert calls and calls[0].tolist()[:2] == [26, 10]  # each row attends to its own prompt + the new token


def test_prefix_reuse_equals_full_recompute(lm):
    eng = Engine(lm, config=EngineConfig(max_batch=2, max_len=128, max_new_tokens=12, stop_at_eos=False))
    fresh = Engine(lm, config=EngineConfig(max_batch=1, max_len=128, max_new_tokens=12, stop_at_eos=False))
    prefix = torch.randn(10, D)
    for step in range(3):
        x = torch.cat([prefix, torch.randn(15 + step, D)])  # same instruction, new observation
        t = eng.submit(Request(x, session="robot-1", prefix_len=10))
        eng.run()
        assert t.reused_prefix == (0 if step == 0 else 10)
        assert t.tokens == fresh.generate([Request(x)])[0]
    # a different prefix is recomputed, not reused
    x = torch.cat([torch.randn(10, D), torch.randn(15, D)])
    t = eng.submit(Request(x, session="robot-1", prefix_len=10))
    eng.run()
    assert t.reused_prefix == 0 and t.tokens == fresh.generate([Request(x)])[0]


def test_steps_stream_before_the_plan_is_finished(tiny_tokenizer):
    tok = tiny_tokenizer
    lm = _lm(vocab=len(tok), seed=3)
    objects, containers = full_vocabulary()
    c = build_constraint(tok, objects, containers)
    eng = Engine(lm, config=EngineConfig(max_batch=1, max_len=128, max_new_tokens=40), eos_token_id=tok.eos_token_id)
    t = eng.submit(Request(torch.randn(12, D), c))
    first_step_at = None
    while not t.finished:
        eng.step()
        if t.steps and first_step_at is None:
            first_step_at = len(t.tokens)
    assert first_step_at is not None and len(t.steps) >= 2
    assert first_step_at < len(t.tokens)  # step 1 was available while later tokens were still decoding
    assert sum(len(s) for s in t.steps) <= len(t.tokens)


def test_requests_join_and_leave_between_steps(lm):
    cfg = EngineConfig(max_batch=4, max_len=96, max_new_tokens=16, stop_at_eos=False)
    solo = Engine(lm, config=cfg)
    xs = [torch.randn(T, D) for T in (12, 20, 9)]
    want = [solo.generate([Request(x, max_new_tokens=n)])[0] for x, n in zip(xs, (16, 6, 16))]
    eng = Engine(lm, config=cfg)
    a = eng.submit(Request(xs[0]))
    for _ in range(3):
        eng.step()
    b = eng.submit(Request(xs[1], max_new_tokens=6))  # joins while a decodes, leaves early
    for _ in range(7):
        eng.step()
    assert b.finished and not a.finished
    c = eng.submit(Request(xs[2]))  # takes b's slot
    assert c.slot == b.slot
    eng.run()
    assert [a.tokens, b.tokens, c.tokens] == want


def test_scheduler_batches_concurrent_robots(lm):
    cfg = EngineConfig(max_batch=4, max_len=96, max_new_tokens=20, stop_at_eos=False)
    xs = [torch.randn(10 + i, D) for i in range(6)]
    solo = Engine(lm, config=cfg)
    want = [solo.generate([Request(x)])[0] for x in xs]
    got: dict[int, list[int]] = {}
    with BatchScheduler(Engine(lm, config=cfg)) as sched:
        def robot(i):
            got[i] = list(sched.stream(Request(xs[i], session=f"r{i}"), tokens=True))

        threads = [threading.Thread(target=robot, args=(i,)) for i in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=60)
        assert sched.max_concurrent >= 2  # decoded together, not one after another
    assert [got[i] for i in range(6)] == want  # 6 robots through 4 slots: some joined as others left


def test_bad_requests_get_named_errors(lm):
    eng = Engine(lm, config=EngineConfig(max_batch=1, max_len=32, max_new_tokens=8))
    with pytest.raises(EngineError, match="max_len"):
        eng.submit(Request(torch.randn(30, D)))
    with pytest.raises(EngineError, match="embeds must be"):
        eng.submit(Request(torch.randn(5, D + 1)))
    eng.submit(Request(torch.randn(5, D)))
    with pytest.raises(EngineError, match="busy"):
        eng.submit(Request(torch.randn(5, D)))


def test_keep_top_patches_keeps_k_per_frame_in_order():
    x = torch.randn(20, 8)
    x[4:8] *= 10  # frame 1: positions 4..11; the big ones must survive
    groups = [torch.arange(4, 12), torch.arange(12, 18)]
    out, kept = keep_top_patches(x, groups, k=4, prefix_len=3)
    assert kept.tolist() == [0, 1, 2, 3, 4, 5, 6, 7] + sorted(kept[8:-2].tolist()) + [18, 19]
    assert out.shape == (20 - 4 - 2, 8) and torch.equal(out, x[kept])
    assert len([p for p in kept.tolist() if 12 <= p < 18]) == 4


@pytest.mark.gpu
def test_cuda_graph_engine_matches_eager_on_gpu():  # pragma: no cover - needs a GPU
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    lm = _lm(seed=4).cuda()
    x = torch.randn(40, D, device="cuda")
    eager = Engine(lm, "cuda", EngineConfig(max_batch=2, max_len=96, max_new_tokens=16, dtype="float32",
                                           cuda_graphs=False, compile=False, stop_at_eos=False))
    graph = Engine(lm, "cuda", EngineConfig(max_batch=2, max_len=96, max_new_tokens=16, dtype="float32", stop_at_eos=False))
    ref = eager.generate([Request(x)])[0]
    assert ref == _generate(lm, x, 16)
    for _ in range(3):  # first call captures, later calls replay
        assert graph.generate([Request(x)])[0] == ref


def test_bench_writes_the_documented_rows(tmp_path):
    import json

    from omegaconf import OmegaConf

    from embodied.commands.bench_engine import main

    cfg = OmegaConf.create({"models": "default", "device": "cpu", "batch": [1, 2], "repeats": 1, "warmup": 0,
                            "prompt_tokens": 16, "new_tokens": 6, "first_step_tokens": 3, "out": str(tmp_path),
                            "checkpoint": str(tmp_path / "none"), "cpu_compile": False})
    main(cfg)
    rows = json.loads((tmp_path / "engine.json").read_text())
    assert [r["batch"] for r in rows] == [1, 2]
    for r in rows:
        assert {"model", "device", "device_name", "batch", "prompt_tokens", "new_tokens", "ours", "baseline", "speedup_plan_p50"} <= set(r)
        assert r["model"] == "default" and r["prompt_tokens"] == 16 and r["new_tokens"] == 6
        o = r["ours"]
        assert 0 < o["first_step_ms"]["p50"] <= o["plan_ms"]["p50"] and r["baseline"]["plan_ms"]["p50"] > 0
        assert r["speedup_plan_p50"] > 0


def test_bench_rejects_bad_options():
    from omegaconf import OmegaConf

    from embodied.commands.bench_engine import main
    from embodied.core.errors import ConfigError

    for bad in ({"models": "huge"}, {"device": "tpu"}, {"batch": "x"}, {"first_step_tokens": 99}):
        with pytest.raises(ConfigError):
            main(OmegaConf.create(bad))

