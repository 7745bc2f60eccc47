"""The planner tokenizer: round trips, grammar words as single tokens, placeholders."""

import pytest

from embodied.core.plan import format_plan, parse_plan, valid_steps
from embodied.core.vocab import COLOURS, LOCATIONS, SHAPES, UNSEEN_COLOURS, UNSEEN_SHAPES
from embodied.model.tokenizer import (
    EOS,
    IMAGE,
    STATE,
    TokenizerError,
    build_tokenizer,
    grammar_words,
    load_tokenizer,
    plan_token_ids,
)

CORPUS = ["put all the red things in the tray", "stack the blue cube on the green cylinder",
          "put red cube in tray; put red triangle in tray; done"]


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer(CORPUS, vocab_size=300)


def test_every_grammar_word_is_one_token_including_held_out(tok):
    ids = plan_token_ids(tok)
    words = set(grammar_words())
    assert set(UNSEEN_COLOURS) | set(UNSEEN_SHAPES) <= words
    assert set(COLOURS) | set(SHAPES) | {"tray", "bin", "done", "put", "move", "to"} <= words
    for w in words:
        assert len(tok.encode(w, add_special_tokens=False)) == 1, w
        assert ids[w] == tok.encode(w, add_special_tokens=False)[0]
    assert ids[";"] == tok.convert_tokens_to_ids(";") and ids[EOS] == tok.eos_token_id
    assert len(set(ids.values())) == len(ids)


def test_every_valid_step_tokenizes_word_by_word_and_round_trips(tok):
    objects = ["pink hexagon", "cyan pentagon", "red cube"]
    steps = valid_steps(objects, ["tray", "cyan bin"])
    plan = format_plan(parse_plan("; ".join(steps)))
    ids = tok.encode(plan, add_special_tokens=False)
    assert len(ids) == len(plan.replace(";", " ;").split())
    assert tok.decode(ids) == plan
    assert all(loc.split()[0] in grammar_words() for loc in LOCATIONS)


def test_instructions_round_trip_lower_cased(tok):
    text = "Put all the RED things, please: in the tray."
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text.lower()


def test_special_tokens_and_save_load(tok, tmp_path):
    for t in (IMAGE, STATE, tok.pad_token, tok.bos_token, tok.eos_token):
        assert len(tok.encode(t, add_special_tokens=False)) == 1
    tok.save_pretrained(str(tmp_path))
    assert (tmp_path / "tokenizer.json").is_file()
    again = load_tokenizer(str(tmp_path))
    assert again.encode("put pink hexagon in tray; done") == tok.encode("put pink hexagon in tray; done")
    from_file = load_tokenizer(str(tmp_path / "tokenizer.json"))
    assert from_file.convert_tokens_to_ids(IMAGE) == tok.convert_tokens_to_ids(IMAGE)


def test_missing_tokenizer_is_a_named_error(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer"):
        load_tokenizer(str(tmp_path / "nope"))
