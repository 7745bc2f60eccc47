"""PaLM-E-style planner: a causal LM reading frames, state vectors and text in one sequence.

Sequence assembly: each prompt becomes token ids ``<bos> text... <image>*P ... <state>*k ...``
(one placeholder token per encoder output position; text segments are tokenized one by one);
the LM's token embeddings are computed for all ids and the vision / state encoder outputs,
projected to the LM width, are written over the placeholder positions.

Batch convention (``embed`` and ``forward``): LEFT padding with ``<pad>``;
``attention_mask`` is 1 on real positions; position ids are ``cumsum(mask) - 1`` (clamped
at 0), so a prompt gets the same positions whatever it is batched with.

Training (``forward(prompts, targets)``): the target plan text plus ``<eos>`` follows the
prompt; the loss is next-token cross-entropy on the target tokens only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from embodied.core.errors import ConfigError, ObservationError
from embodied.core.observation import Observation
from embodied.core.plan import STEP_SEPARATOR, PlanStep, format_plan
from embodied.model.backbones import build_lm, load_pretrained_lm, load_pretrained_vision
from embodied.model.config import ModelConfig
from embodied.model.encoders import PretrainedVisionEncoder, StateEncoder, VisionEncoder, frames_to_tensor
from embodied.model.prompt import ImageSegment, MultimodalPrompt, StateSegment, TextSegment
from embodied.model.refs import ObjectRefs, add_ref_tokens, listed_refs, pointer_attention_loss, shuffled
from embodied.model.tokenizer import IMAGE, STATE

IGNORE = -100
FORMAT = "embodied-palme"
FORMAT_VERSION = 1


@dataclass
class PalmEOutput:
    logits: torch.Tensor  # (B, T, V)
    attention_mask: torch.Tensor  # (B, T)
    loss: Optional[torch.Tensor] = None  # scalar, mean over target tokens
    labels: Optional[torch.Tensor] = None  # (B, T), IGNORE outside targets (not shifted)
    target_tokens: int = 0


@dataclass
class PromptTokens:
    ids: list[int]
    images: list[np.ndarray]
    states: list[np.ndarray]
    prefix_length: int
    # object references of the ``Objects:`` list: (position of the reference token, the name's token ids)
    ref_names: list[tuple[int, list[int]]] = field(default_factory=list)


class PalmE(nn.Module):
    """The planner model. Build with ``PalmE.create(config, corpus)`` or ``PalmE.load(dir)``."""

    def __init__(self, config: ModelConfig, tokenizer, lm: nn.Module | None = None, vision: nn.Module | None = None):
        super().__init__()
        self.config = config.check()
        self.tokenizer = tokenizer
        self.lm = lm if lm is not None else build_lm(config, tokenizer)
        d = self.lm.get_input_embeddings().embedding_dim
        if vision is not None:
            self.vision = PretrainedVisionEncoder(vision, config.vision.image_size)
        else:
            self.vision = VisionEncoder(config.vision)
        self.vision_proj = nn.Sequential(nn.Linear(self.vision.out_dim, d), nn.GELU(), nn.Linear(d, d))
        self.state_encoder = StateEncoder(config.state_size, config.state_tokens, config.state_hidden, config.state_hidden)
        self.state_proj = nn.Linear(config.state_hidden, d)
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE)
        self.state_token_id = tokenizer.convert_tokens_to_ids(STATE)
        self._text_cache: dict[str, list[int]] = {}
        self._vocab_cache: dict[str, int] | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, config: ModelConfig, corpus: Sequence[str] = ()) -> "PalmE":
        """A fresh model; the tokenizer is trained on ``corpus`` (instructions and plans)."""
        from embodied.model.tokenizer import build_tokenizer

        lm = vision = None
        if config.lm.pretrained:
            lm, tok = load_pretrained_lm(config.lm.pretrained)
        else:
            tok = build_tokenizer(corpus, vocab_size=config.vocab_size)
        if config.object_refs:
            add_ref_tokens(tok)
            if lm is not None:
                lm.resize_token_embeddings(len(tok))
        if config.vision.pretrained:
            vision = load_pretrained_vision(config.vision.pretrained)
        return cls(config, tok, lm=lm, vision=vision)

    def enable_object_refs(self) -> None:
        """Switch a model trained with object names to object references (fine-tuning): new tokens, new rows."""
        if self.config.object_refs:
            return
        self.config.prompt_objects = self.config.object_refs = True
        self.config.check()
        n = add_ref_tokens(self.tokenizer)
        self.lm.resize_token_embeddings(len(self.tokenizer), mean_resizing=False)
        if n:
            # Distinct random rows at the old rows' scale (a mean-initialised row would make every
            # reference look alike), and each output row the same direction as its input row.
            with torch.no_grad():
                emb, head = self.lm.get_input_embeddings().weight, self.lm.get_output_embeddings().weight
                rows = torch.randn(n, emb.shape[1], dtype=emb.dtype, device=emb.device)
                rows /= rows.norm(dim=-1, keepdim=True)
                emb[-n:] = rows * emb[:-n].norm(dim=-1).mean()
                head[-n:] = rows * head[:-n].norm(dim=-1).mean()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def tokens_per_frame(self) -> int:
        return self.vision.tokens_per_frame

    # ------------------------------------------------------------------ prompts
    def build_prompt(self, observation: Observation, ablate: str | None = None) -> MultimodalPrompt:
        """``Instruction: <text> Scene: <img>... [Objects: <detections>] Robot: <state> Done so far: <history> Plan:``.

        ``Objects:`` (with ``config.prompt_objects``) lists what the robot's perception reports,
        each object followed by where it is with ``config.prompt_relations``
        (``red cube on blue cube``); ``ablate=frames`` clears it together with the frames.
        """
        obs = observation.ablated(ablate) if ablate not in (None, "", "none") else observation
        cams = list(self.config.cameras) or sorted(obs.frames)
        missing = [c for c in cams if c not in obs.frames]
        if missing:
            raise ObservationError(f"observation has no frame from camera(s) {missing}; it has {sorted(obs.frames)}")
        history = STEP_SEPARATOR.join(obs.history) if obs.history else "nothing"
        if self.config.prompt_relations:
            listing = ", ".join(f"{d} {obs.relations[d]}" if obs.relations.get(d) else d for d in obs.detections)
        else:
            listing = ", ".join(obs.detections)
        if self.config.object_refs:
            refs = ObjectRefs.from_detections(obs.detections)
            history, listing = refs.to_refs(history), refs.listing(obs.detections)
        segs = [TextSegment(f"Instruction: {obs.instruction}"), TextSegment("Scene:")]
        segs += [ImageSegment(np.asarray(obs.frames[c]), camera=c) for c in cams]
        if self.config.prompt_objects:
            segs.append(TextSegment(f"Objects: {listing or 'nothing'}"))
        segs += [
            TextSegment("Robot:"),
            StateSegment(np.asarray(obs.state, dtype=np.float32)),
            TextSegment(f"Done so far: {history}"),
            TextSegment("Plan:"),
        ]
        return MultimodalPrompt(segs, prefix_segments=2)

    def object_refs(self, observation: Observation) -> ObjectRefs | None:
        """The references of ``build_prompt(observation)`` (None without ``config.object_refs``)."""
        if not self.config.object_refs:
            return None
        return ObjectRefs.from_detections(observation.detections)

    def _vocab(self) -> dict[str, int]:
        """The tokenizer's vocabulary, rebuilt only when tokens were added."""
        if self._vocab_cache is None or len(self._vocab_cache) != len(self.tokenizer):
            self._vocab_cache = self.tokenizer.get_vocab()
        return self._vocab_cache

    def training_example(self, observation: Observation, target: str, rng) -> tuple[Observation, str]:
        """(observation, target) as the model learns them: with object references, the object list
        shuffled by ``rng`` (a ``random.Random``) and the target's object names replaced by references."""
        if not self.config.object_refs:
            return observation, target
        obs = shuffled(observation, rng)
        return obs, ObjectRefs.from_detections(obs.detections).to_refs(target)

    @staticmethod
    def plan_target(steps: Sequence[PlanStep | str]) -> str:
        """Plan text for training targets: steps joined by ``; ``, ending with ``done`` (EOS is added by ``forward``)."""
        parsed = [s if isinstance(s, PlanStep) else PlanStep.parse(s) for s in steps]
        if not parsed or not parsed[-1].is_done:
            parsed.append(PlanStep("done"))
        return format_plan(parsed)

    def encode_text(self, text: str) -> list[int]:
        ids = self._text_cache.get(text)
        if ids is None:
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            if len(self._text_cache) < 100_000:
                self._text_cache[text] = ids
        return list(ids)

    def tokenize(self, prompt: MultimodalPrompt) -> PromptTokens:
        """Token ids with placeholders, the frames and states in order, and the prefix length."""
        ids = [self.tokenizer.bos_token_id]
        images, states, ref_names = [], [], []
        prefix = 1
        for i, seg in enumerate(prompt.segments):
            if isinstance(seg, TextSegment):
                seg_ids = self.encode_text(seg.text)
                if self.config.object_refs and seg.text.startswith("Objects:"):
                    ref_names += listed_refs(seg_ids, self._vocab(), len(ids))
                ids += seg_ids
            elif isinstance(seg, ImageSegment):
                px = seg.pixels
                if not isinstance(px, np.ndarray) or px.dtype != np.uint8 or px.ndim != 3 or px.shape[2] != 3:
                    raise ObservationError(f"image segment must be HxWx3 uint8, got {getattr(px, 'shape', None)}")
                images.append(px)
                ids += [self.image_token_id] * self.tokens_per_frame
            elif isinstance(seg, StateSegment):
                v = np.asarray(seg.values, dtype=np.float32)
                if v.shape != (self.config.state_size,):
                    raise ObservationError(f"state segment must have shape ({self.config.state_size},), got {v.shape}")
                states.append(v)
                ids += [self.state_token_id] * self.config.state_tokens
            else:
                raise ObservationError(f"unknown prompt segment type {type(seg).__name__}")
            if i < prompt.prefix_segments:
                prefix = len(ids)
        return PromptTokens(ids, images, states, prefix, ref_names)

    def prefix_length(self, prompt: MultimodalPrompt) -> int:
        """Number of leading positions that depend only on the instruction (``<bos>`` included)."""
        return self.tokenize(prompt).prefix_length

    # ------------------------------------------------------------------ embedding
    def _assemble(
        self, token_lists: list[list[int]], images: list[np.ndarray], states: list[np.ndarray],
        ref_names: Sequence[list[tuple[int, list[int]]]] = (),
    ):
        """Left-pad ids, embed them and write encoder outputs over the placeholders.

        A reference token of the object list also gets its name's token embeddings added, so it
        carries what it stands for from the first layer on (``ref_names``, per sequence).
        """
        dev = self.device
        T = max(len(t) for t in token_lists)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(token_lists), T), pad, dtype=torch.long)
        mask = torch.zeros((len(token_lists), T), dtype=torch.long)
        for b, t in enumerate(token_lists):
            ids[b, T - len(t):] = torch.tensor(t, dtype=torch.long)
            mask[b, T - len(t):] = 1
        ids, mask = ids.to(dev), mask.to(dev)
        table = self.lm.get_input_embeddings()
        embeds = table(ids)  # (B, T, D)
        rows, cols, names = [], [], []
        for b, entries in enumerate(ref_names):
            for pos, name in entries:
                rows += [b] * len(name)
                cols += [T - len(token_lists[b]) + pos] * len(name)
                names += name
        if names:
            extra = torch.zeros_like(embeds).index_put(
                (torch.tensor(rows, device=dev), torch.tensor(cols, device=dev)),
                table(torch.tensor(names, device=dev)), accumulate=True,
            )  # (B, T, D): the name's embeddings summed at its reference's position
            embeds = embeds + extra
        if images:
            px = frames_to_tensor(images, self.config.vision.image_size, dev)  # (N, 3, S, S)
            img = self.vision_proj(self.vision(px))  # (N, P, D)
            sel = (ids == self.image_token_id).unsqueeze(-1)  # (B, T, 1)
            embeds = embeds.masked_scatter(sel, img.to(embeds.dtype))
        if states:
            st = torch.from_numpy(np.stack(states)).to(dev)  # (M, S)
            se = self.state_proj(self.state_encoder(st))  # (M, k, D)
            sel = (ids == self.state_token_id).unsqueeze(-1)
            embeds = embeds.masked_scatter(sel, se.to(embeds.dtype))
        return ids, embeds, mask

    def embed(self, prompts: Sequence[MultimodalPrompt]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts -> (inputs_embeds (B, T, D), attention_mask (B, T) long), left-padded."""
        toks = [self.tokenize(p) for p in prompts]
        _, embeds, mask = self._assemble(
            [t.ids for t in toks], [i for t in toks for i in t.images], [s for t in toks for s in t.states],
            [t.ref_names for t in toks],
        )
        return embeds, mask

    @staticmethod
    def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
        return (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)

    # ------------------------------------------------------------------ training forward
    def forward(
        self, prompts: Sequence[MultimodalPrompt], targets: Sequence[str] | None = None,
        input_targets: Sequence[str] | None = None, ref_attention: float = 0.0,
    ) -> PalmEOutput:
        """Logits for prompts (+ targets); with targets, the loss on the target tokens (and EOS) only.

        ``input_targets`` (training noise): what the model reads in place of each target while
        the labels stay ``targets``; used only where it has the same number of tokens.
        ``ref_attention`` (object references): weight of a loss that teaches the last layer's
        first head to attend, where the next target token is a reference, to that reference in
        the object list (``embodied.model.refs.pointer_attention_loss``).
        """
        toks = [self.tokenize(p) for p in prompts]
        seqs, label_lists = [], []
        for b, t in enumerate(toks):
            tgt = [] if targets is None else self.encode_text(targets[b]) + [self.tokenizer.eos_token_id]
            seen = tgt
            if input_targets is not None and targets is not None:
                noisy = self.encode_text(input_targets[b]) + [self.tokenizer.eos_token_id]
                seen = noisy if len(noisy) == len(tgt) else tgt
            seqs.append(t.ids + seen)
            label_lists.append([IGNORE] * len(t.ids) + tgt)
        ids, embeds, mask = self._assemble(
            seqs, [i for t in toks for i in t.images], [s for t in toks for s in t.states], [t.ref_names for t in toks]
        )
        T = ids.shape[1]
        pointers = []  # (row, query position, key position) in padded coordinates
        if ref_attention > 0 and targets is not None:
            for b, t in enumerate(toks):
                off = T - len(seqs[b])
                listed = {t.ids[p]: p for p, _ in t.ref_names}
                for j, tid in enumerate(label_lists[b][len(t.ids):]):
                    if tid in listed:
                        pointers.append((b, off + len(t.ids) + j - 1, off + listed[tid]))
        captured: dict = {}
        hook = None
        if pointers:
            def grab(module, args, kwargs):
                captured.update(kwargs)

            hook = self.lm.model.layers[-1].self_attn.register_forward_pre_hook(grab, with_kwargs=True)
        try:
            out = self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=self.position_ids(mask), use_cache=False)
        finally:
            if hook is not None:
                hook.remove()
        logits = out.logits  # (B, T, V)
        if targets is None:
            return PalmEOutput(logits=logits, attention_mask=mask)
        labels = torch.full_like(ids, IGNORE)
        for b, lab in enumerate(label_lists):
            labels[b, T - len(lab):] = torch.tensor(lab, dtype=torch.long, device=ids.device)
        shift_logits = logits[:, :-1].float()  # (B, T-1, V)
        shift_labels = labels[:, 1:]  # (B, T-1)
        n = int((shift_labels != IGNORE).sum())
        loss = F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=IGNORE)
        if pointers:
            loss = loss + ref_attention * pointer_attention_loss(self.lm.model.layers[-1].self_attn, captured, mask, pointers)
        return PalmEOutput(logits=logits, attention_mask=mask, loss=loss, labels=labels, target_tokens=n)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """One directory: model.safetensors, config.json, lm/config.json, tokenizer.json (+ tokenizer_config)."""
        from safetensors.torch import save_model

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": self.config.to_dict()}
        (d / "config.json").write_text(json.dumps(meta, indent=2))
        self.lm.config.save_pretrained(d / "lm")
        if isinstance(self.vision, PretrainedVisionEncoder):
            self.vision.model.config.save_pretrained(d / "vision")
        self.tokenizer.save_pretrained(str(d))
        save_model(self, str(d / "model.safetensors"))
        return d

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> "PalmE":
        """Load a directory written by ``save``. Raises ``ConfigError`` if it is not one."""
        from safetensors.torch import load_model
        from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, PreTrainedTokenizerFast

        d = Path(directory)
        if not (d / "config.json").is_file() or not (d / "model.safetensors").is_file():
            raise ConfigError(f"{d} is not a saved PalmE directory (needs config.json and model.safetensors); train one with `embodied train`")
        meta = json.loads((d / "config.json").read_text())
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise ConfigError(f"{d}/config.json: unsupported format {meta.get('format')!r} v{meta.get('format_version')}")
        config = ModelConfig.from_dict(meta["model"])
        tok = PreTrainedTokenizerFast.from_pretrained(str(d), local_files_only=True)
        lm = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(d / "lm"), local_files_only=True))
        vision = None
        if (d / "vision").is_dir():
            vision = AutoModel.from_config(AutoConfig.from_pretrained(str(d / "vision"), local_files_only=True))
            vision = getattr(vision, "vision_model", vision)
        model = cls(config, tok, lm=lm, vision=vision)
        load_model(model, str(d / "model.safetensors"), strict=True)
        return model.to(device).eval()
