"""``ModelPlanner``: the PaLM-E-style model as a ``Planner``, decoding through the streaming engine.

Every step is grammar-constrained (``embodied.engine.constrained``) to the objects the robot
perceives (``Observation.detections``; the full vocabulary when it perceives nothing, e.g.
under ``ablate=frames``), streamed as soon as its text is complete, parsed and validated.
A model with ``object_refs`` names an object by its reference into the prompt's object
list and then its name (``<o2> purple triangle``); the constraint allows exactly the listed
references, each followed by its own name, and the reference is dropped before the step is
parsed.

Objects the checkpoint never saw in training (not in its ``known_objects``) are planned for
under a known name of the same colour and renamed back in every step
(``embodied.model.aliases``); ``object_aliases=False`` switches that off.

``use_engine=False`` decodes with the ``transformers`` model itself (same constraint, one
forward per token): the reference path, used by tests and as a fallback.
"""

from __future__ import annotations

from typing import Iterator, Optional

import torch

from embodied.core.errors import EngineError
from embodied.core.observation import Observation
from embodied.core.plan import PlanStep, parse_step, validate_step
from embodied.engine.constrained import build_constraint, constraint_for_detections, scene_vocabulary
from embodied.model.aliases import ObjectAliases


def _unfinished(max_new: int) -> None:
    import warnings

    warnings.warn(
        f"ModelPlanner: the plan did not reach 'done' within {max_new} tokens; the steps so far were "
        "streamed (the closed loop re-plans after each step). Raise max_new_tokens if plans are longer.",
        stacklevel=3,
    )


class ModelPlanner:
    """``plan(observation)`` streams ``PlanStep``s; ``reset()`` between episodes."""

    name = "model"

    def __init__(
        self,
        model_dir="checkpoints/default",
        device: str = "cpu",
        use_engine: bool = True,
        ablate: Optional[str] = None,
        keep_patches: Optional[int] = None,
        patch_score: str = "norm",
        max_new_tokens: int = 96,
        engine_config=None,
        max_batch: int = 1,
        cpu_compile: bool = False,
        object_aliases: bool = True,
    ):
        from embodied.model import PalmE

        if isinstance(model_dir, PalmE):
            self.model = model_dir.to(device).eval()
        else:
            self.model = PalmE.load(model_dir, device=device)
        self.device = torch.device(device)
        self.tokenizer = self.model.tokenizer
        self.use_engine = use_engine
        self.ablate = ablate
        self.keep_patches = int(keep_patches) if keep_patches else None
        self.patch_score = patch_score
        self.max_new_tokens = max_new_tokens
        self._engine_config = engine_config
        self.cpu_compile = cpu_compile  # CPU: inductor-compile the engine's decode step
        self.object_aliases = object_aliases  # plan for unknown objects under known names of their colour
        self.max_batch = max(1, int(max_batch))  # >1: plans of several robots decode in one batch
        self._engine = None
        self._session = f"model-planner-{id(self)}"
        self.vocab_size = self.model.lm.config.vocab_size
        self.last_ticket = None  # the engine's record of the last request (tokens, timings, reused prefix)

    # ------------------------------------------------------------------ Planner protocol
    def reset(self) -> None:
        """Forget the cached instruction prefix (a new episode may have a new instruction)."""
        if self._engine is not None:
            self._engine.forget(self._session)

    def plan(self, observation: Observation) -> Iterator[PlanStep]:
        observation.validate()
        obs = observation.ablated(self.ablate) if self.ablate not in (None, "", "none") else observation
        objects, containers = scene_vocabulary(obs.detections)  # real names: every step is checked against them
        aliases = ObjectAliases.build(self.model.config.known_objects if self.object_aliases else (), obs)
        obs = aliases.apply(obs)  # what the model reads; its steps get the real names back
        refs = self.model.object_refs(obs)
        if refs is not None and refs.objects:
            constraint = build_constraint(self.tokenizer, refs.choices, containers, self.vocab_size)
        else:
            constraint = constraint_for_detections(self.tokenizer, obs.detections, self.vocab_size)
        with torch.no_grad():
            embeds, prefix_len = self._embed(obs)  # (T, D)
        steps = self._engine_steps if self.use_engine else self._reference_steps
        for ids in steps(embeds, prefix_len, constraint):
            step = aliases.restore(self._to_step(ids, refs))
            validate_step(step, objects, containers)
            yield step
            if step.is_done:
                return

    # ------------------------------------------------------------------ internals
    def _embed(self, observation: Observation) -> tuple[torch.Tensor, int]:
        """Prompt embeddings of an observation that is already ablated, and the prefix length."""
        m = self.model
        prompt = m.build_prompt(observation)
        toks = m.tokenize(prompt)
        embeds, _ = m.embed([prompt])  # (1, T, D), no padding for one prompt
        embeds = embeds[0]  # (T, D)
        if self.keep_patches:
            from embodied.engine.reduce import keep_top_patches

            ids = torch.tensor(toks.ids, device=embeds.device)
            where = (ids == m.image_token_id).nonzero().squeeze(1)  # (N*P,)
            groups = list(where.split(m.tokens_per_frame)) if where.numel() else []
            decoder = self._get_engine().decoder if self.patch_score == "attention" else None
            embeds, _ = keep_top_patches(embeds, groups, self.keep_patches, toks.prefix_length, self.patch_score, decoder)
        return embeds, toks.prefix_length

    def _get_engine(self):
        if self._engine is None:
            from embodied.engine.core import Engine
            from embodied.engine.records import EngineConfig

            cfg = self._engine_config or EngineConfig(
                max_batch=self.max_batch,
                max_len=int(self.model.lm.config.max_position_embeddings),
                max_new_tokens=self.max_new_tokens,
                max_states=constraint_for_detections(self.tokenizer, [], self.vocab_size).num_states,
                cpu_compile=self.cpu_compile,
            )
            self._engine = Engine(self.model.lm, self.device, cfg, eos_token_id=self.tokenizer.eos_token_id)
        return self._engine

    def _max_new(self, T: int, max_len: int) -> int:
        n = min(self.max_new_tokens, max_len - T)
        if n < 2:
            raise EngineError(f"the prompt has {T} positions, leaving no room to decode within {max_len}; use keep_patches or fewer cameras")
        return n

    def _engine_steps(self, embeds, prefix_len, constraint) -> Iterator[list[int]]:
        from embodied.engine.records import Request

        eng = self._get_engine()
        req = Request(
            embeds, constraint, session=self._session_for(embeds, prefix_len), prefix_len=prefix_len,
            max_new_tokens=self._max_new(embeds.shape[0], eng.config.max_len),
        )
        ticket = eng.submit(req)
        self.last_ticket = ticket
        sent = 0
        try:
            while True:
                while sent < len(ticket.steps):
                    sent += 1
                    yield ticket.steps[sent - 1]
                if ticket.finished:
                    break
                eng.step()
        finally:
            eng.cancel(ticket)  # no-op when finished; frees the slot if the caller stopped early
        if not ticket.states or ticket.states[-1] != constraint.end:
            _unfinished(req.max_new_tokens)

    def _session_for(self, embeds, prefix_len: int) -> str | None:
        """The engine session whose cached prefix this request may reuse.

        One plan at a time (``max_batch=1``): one session. Several plans interleaved (the
        server's ``concurrent_plans``): one session per instruction prefix, so robots working on
        the same instruction share its KV; None while that session's slot is still decoding.
        """
        if self.max_batch == 1:
            return self._session
        key = f"{self._session}:{hash(embeds[:prefix_len].cpu().numpy().tobytes())}"
        eng = self._engine
        held = eng.sessions.get(key)
        return None if held is not None and eng.slots[held[0]] is not None else key

    def _reference_steps(self, embeds, prefix_len, constraint) -> Iterator[list[int]]:
        """One transformers forward per token, the same constraint applied on the host."""
        lm = self.model.lm
        c = constraint.to(embeds.device)
        max_new = self._max_new(embeds.shape[0], int(lm.config.max_position_embeddings))
        with torch.no_grad():  # per call: a generator must not leave grad mode changed across yields
            out = lm(inputs_embeds=embeds[None], use_cache=True)
        state, current = c.start, []
        for _ in range(max_new):
            logits = out.logits[:, -1].float()  # (1, V)
            tok = int(c.apply(logits, torch.tensor([state], device=logits.device))[0])
            state = int(c.next_state[state, tok])
            current.append(tok)
            if c.step_done(state):
                yield current
                current = []
                if state == c.end:
                    return
            with torch.no_grad():
                out = lm(input_ids=torch.tensor([[tok]], device=embeds.device), cache=out.cache, use_cache=True)
        _unfinished(max_new)

    def _to_step(self, ids: list[int], refs=None) -> PlanStep:
        text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
        if text.endswith(";"):
            text = text[:-1].strip()
        return parse_step(refs.to_names(text) if refs is not None else text)
