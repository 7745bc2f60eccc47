"""The planner's tokenizer: byte-pair encoding over words, with the plan grammar as whole tokens.

Tokenization (``tokenizers`` library, saved as ``tokenizer.json``, loaded as
``transformers.PreTrainedTokenizerFast``):

- normalizer: NFKC, lower case;
- pre-tokenizer: punctuation is isolated (``;`` ``:`` ``,`` ...), then words are split on
  spaces SentencePiece-style: a word that follows a space starts with ``▁`` ("▁put"),
  and so does the first word of every separately encoded piece (``prepend_scheme="first"``);
- model: BPE trained on the instruction + plan corpus. Every word of the plan grammar
  (verbs, prepositions, all colours and shapes in ``embodied.core.vocab`` including held-out
  ones, ``tray``, ``bin``, ``to``, location words, ``done``) is a single token ``▁word``,
  and ``;`` is a single token: the grammar is known a priori, so its words are fed to the
  trainer often enough to be merged whole (checked after training: ``TokenizerError``
  otherwise). Instruction words outside the grammar may be split into sub-words.
- decoder: ``▁`` back to spaces, so ``decode(encode(plan)) == plan``;
- special tokens: ``<pad>`` ``<bos>`` ``<eos>`` ``<unk>`` and the placeholders ``<image>``
  and ``<state>`` (one placeholder token per embedding position written by an encoder).

``plan_token_ids(tok)`` maps each grammar word (and ``;``, ``<eos>``) to its id, for the
grammar constraint in constrained decoding.
"""

from __future__ import annotations

from typing import Iterable

from embodied.core.errors import EmbodiedError
from embodied.core.plan import PUT_PREPOSITIONS, VERBS
from embodied.core.vocab import COLOURS, LOCATIONS, SHAPES

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
IMAGE, STATE = "<image>", "<state>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK, IMAGE, STATE)
WORD_PREFIX = "▁"
SEPARATOR = ";"
PROMPT_WORDS = "Instruction: Scene: Robot: Done so far: nothing Plan:"


class TokenizerError(EmbodiedError, ValueError):
    """The tokenizer cannot represent the plan grammar as required."""


def grammar_words() -> list[str]:
    """Every word the plan grammar can produce (without ``;``), sorted."""
    words: set[str] = set(VERBS) | set(COLOURS) | set(SHAPES) | {"tray", "bin", "to"}
    for phrase in list(PUT_PREPOSITIONS) + list(LOCATIONS):
        words.update(phrase.split())
    return sorted(words)


def build_tokenizer(texts: Iterable[str], vocab_size: int = 512):
    """Train a tokenizer on ``texts`` (instructions and plans); returns a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Punctuation(behavior="isolated"),
            pre_tokenizers.Metaspace(replacement=WORD_PREFIX, prepend_scheme="first", split=True),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement=WORD_PREFIX, prepend_scheme="first", split=True)
    words = grammar_words()
    # The grammar is known a priori: repeat it so every grammar word is merged whole.
    grammar_corpus = [" ".join(words) + " ; " + " ".join(reversed(words))] * 2000
    grammar_corpus += [PROMPT_WORDS] * 200  # the prompt template's own words
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        min_frequency=2,
        show_progress=False,
        initial_alphabet=list("abcdefghijklmnopqrstuvwxyz0123456789;:,.'-" + WORD_PREFIX),
    )
    tok.train_from_iterator(_chain(grammar_corpus, texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        additional_special_tokens=[IMAGE, STATE],
    )
    plan_token_ids(fast)  # raises TokenizerError if a grammar word is not a single token
    return fast


def _chain(*iterables: Iterable[str]):
    for it in iterables:
        yield from it


def load_tokenizer(path: str):
    """Load a tokenizer saved with ``save_pretrained`` (a directory) or a ``tokenizer.json`` file."""
    from pathlib import Path

    from transformers import PreTrainedTokenizerFast

    p = Path(path)
    if p.is_dir():
        return PreTrainedTokenizerFast.from_pretrained(str(p), local_files_only=True)
    if p.is_file():
        return PreTrainedTokenizerFast(
            tokenizer_file=str(p), pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK,
            additional_special_tokens=[IMAGE, STATE],
        )
    raise TokenizerError(f"no tokenizer at {path}; pass a directory holding tokenizer.json or the file itself")


def plan_token_ids(tok) -> dict[str, int]:
    """Grammar word (and ``;``, ``<eos>``) -> token id. Raises ``TokenizerError`` if not single tokens."""
    vocab = tok.get_vocab()
    out: dict[str, int] = {}
    missing = []
    for w in grammar_words():
        tid = vocab.get(WORD_PREFIX + w)
        if tid is None:
            missing.append(w)
        else:
            out[w] = tid
    for w in (SEPARATOR, EOS):
        if w not in vocab:
            missing.append(w)
        else:
            out[w] = vocab[w]
    if missing:
        raise TokenizerError(
            f"grammar words are not single tokens: {', '.join(missing)}; rebuild the tokenizer with build_tokenizer"
        )
    return out
