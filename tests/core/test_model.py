"""The model: attention back ends agree, causality is exact, cached decoding equals the full pass."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from meloformer_core.encoding import DEFAULT_VOCAB, encode
from meloformer_core.encoding.vocab import TokenType
from meloformer_core.generation.cache import ContextFull, DecodingCache, DecodingGroup, feed_run, step_together
from meloformer_core.midi_io import read_midi
from meloformer_core.model.config import SIZES, ConfigError, ModelConfig, named_config
from meloformer_core.model.masks import build_layout, dense_mask, dense_update_mask, update_mask_mod
from meloformer_core.model.transformer import MeloFormer
from tests.conftest import FIXTURES
from tests.core.strategies import random_song

VOCAB = DEFAULT_VOCAB


@pytest.fixture(scope="module")
def model() -> MeloFormer:
    torch.manual_seed(0)
    return MeloFormer(named_config("debug", len(VOCAB), max_seq_len=1024)).eval()


def sequences(seed: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        encode(random_song(rng, bars=int(rng.integers(2, 7)), tracks=int(rng.integers(1, 5)))) for _ in range(count)
    ]


@pytest.mark.parametrize(("seed", "batch"), [(0, 1), (1, 3), (2, 4)])
def test_flex_and_dense_paths_agree_per_sequence(model: MeloFormer, seed: int, batch: int) -> None:
    rows = sequences(seed, batch)
    rows = [row[: len(row) - i * 7] for i, row in enumerate(rows)]  # different lengths: padding
    layout = build_layout(rows, VOCAB)
    with torch.no_grad():
        dense, dense_s = model(layout, "dense", return_summaries=True)
        flex, flex_s = model(layout, "flex", return_summaries=True)
    valid = ~layout.is_pad
    assert torch.allclose(dense[valid], flex[valid], atol=1e-5)
    assert torch.allclose(dense_s[layout.seg_valid], flex_s[layout.seg_valid], atol=1e-5)
    # each sequence alone gives what it gives in the batch: masks are built per sequence
    for index, row in enumerate(rows):
        with torch.no_grad():
            alone = model(build_layout([row], VOCAB), "dense")[0]
        assert torch.allclose(alone, dense[index, : len(row)], atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**16), st.integers(1, 3), st.booleans(), st.sampled_from([(1, 2, 4, 8), (1,), (2, 3)]))
def test_the_dense_update_mask_built_per_group_equals_the_predicate(
    seed: int, batch: int, infill: bool, offsets: tuple[int, ...]
) -> None:
    """The training path's update mask (`dense_update_mask`, decided per pair of token
    groups) is the predicate `update_mask_mod` itself, key by key: packed documents,
    padding, infilling layouts (later bars before the middle) and other related bars."""
    from training.data import fill_in_the_middle

    rng = np.random.default_rng(seed)
    rows = []
    for index, tokens in enumerate(sequences(seed, batch)):
        if infill:
            tokens = fill_in_the_middle(tokens, VOCAB, rng, max_gap=2, max_suffix=2)
        rows.append([tokens, sequences(seed + 1, 1)[0]] if index == 0 else tokens[: len(tokens) - 5 * index])
    layout = build_layout(rows, VOCAB)
    batch_size, length, summaries = layout.shape
    expected = dense_mask(update_mask_mod(layout, offsets), batch_size, length, length + summaries, "cpu")
    assert torch.equal(dense_update_mask(layout, offsets), expected)


def test_dense_attention_in_chunks_of_the_keys_they_see_equals_one_call(model: MeloFormer) -> None:
    """The dense attentions run a chunk of queries at a time over only the keys its queries
    see (`key_chunks`): the logits and the gradients are those of one call over every key,
    on packed documents with padding, and chunks do leave keys out."""
    from meloformer_core.model import transformer
    from meloformer_core.model.masks import key_chunks, summarise_mask_mod

    rows = [np.concatenate(sequences(seed, 3)) for seed in (5, 6)]
    rows = [rows[0][:900], rows[1][:640]]
    layout = build_layout(rows, VOCAB)
    batch, length, summaries = layout.shape
    summarise = dense_mask(summarise_mask_mod(layout), batch, summaries, length + summaries, "cpu")
    whole_mask = dense_update_mask(layout, model.config.related_bar_offsets)

    def run(masks: tuple) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        logits = model(layout, "dense", masks=masks)
        (logits[~layout.is_pad] ** 2).mean().backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters()]

    whole, whole_grads = run((summarise, whole_mask))
    for queries in (transformer.QUERY_CHUNK, 100):
        chunks = key_chunks(whole_mask, queries)
        assert sum(len(chunk.keys) for chunk in chunks) < 0.8 * len(chunks) * whole_mask.shape[-1]
        summary_chunks = key_chunks(summarise, transformer.SUMMARY_CHUNK)
        assert sum(len(chunk.keys) for chunk in summary_chunks) < 0.8 * len(summary_chunks) * summarise.shape[-1]
        for masks in ((summarise, chunks), (summary_chunks, chunks), model.masks(layout, "dense")):
            chunked, chunked_grads = run(masks)
            assert (chunked - whole).abs().max() <= 1e-5
            for a, b in zip(chunked_grads, whole_grads, strict=True):
                assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)
    model.zero_grad()


def test_rotary_turns_in_reals_under_compile_as_in_complex_numbers() -> None:
    """Under torch.compile (inductor writes no code for complex numbers) the pairs turn in real
    arithmetic: the same rotation, in float32 and in bf16."""
    from meloformer_core.model.transformer import Rotary, Turns

    torch.manual_seed(0)
    rotary = Rotary(16, 64, 10_000.0)
    x = torch.randn(2, 3, 40, 16)
    turns = rotary.turns(torch.randint(0, 64, (2, 40)))
    reals = Turns(turns.cos, turns.sin, None)
    assert (Rotary.rotate(x, reals) - Rotary.rotate(x, turns)).abs().max() <= 1e-6
    half = x.bfloat16()
    assert (Rotary.rotate(half, reals).float() - Rotary.rotate(half, turns).float()).abs().max() <= 1e-2
    norms = Rotary.rotate(x, turns).reshape(2, 3, 40, 8, 2).norm(dim=-1)
    assert torch.allclose(norms, x.reshape(2, 3, 40, 8, 2).norm(dim=-1), atol=1e-5)  # a turn keeps lengths


def test_packed_documents_do_not_see_each_other(model: MeloFormer) -> None:
    first, second = sequences(3, 2)
    packed = build_layout([[first, second]], VOCAB)
    with torch.no_grad():
        together = model(packed, "dense")[0]
        alone = model(build_layout([second], VOCAB), "dense")[0]
    assert torch.allclose(together[len(first) :], alone, atol=1e-5)


def test_reference_gradients_match_a_plain_softmax_implementation(model: MeloFormer) -> None:
    layout = build_layout(sequences(4, 2), VOCAB)
    targets = layout.tokens[:, 1:]

    def loss_and_grads() -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        logits = model.train()(layout, "dense")
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1))
        loss.backward()
        model.eval()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    loss, grads = loss_and_grads()
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def plain(q, k, v, attn_mask, dropout_p=0.0):
        scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
        return torch.softmax(scores.masked_fill(~attn_mask, float("-inf")), dim=-1) @ v

    torch.nn.functional.scaled_dot_product_attention = plain
    try:
        plain_loss, plain_grads = loss_and_grads()
    finally:
        torch.nn.functional.scaled_dot_product_attention = sdpa
    assert torch.isfinite(loss) and abs(float(loss - plain_loss)) < 1e-5
    for got, want in zip(grads, plain_grads, strict=True):
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)


@settings(max_examples=25)
@given(
    st.integers(0, 2**16),
    st.floats(0.05, 0.95),
    st.sampled_from(["content", "new_segment"]),
    st.sampled_from(["dense", "flex"]),
)
def test_changing_token_j_never_changes_anything_before_j(
    model: MeloFormer, seed: int, where: float, change: str, backend: str
) -> None:
    tokens = sequences(seed, 1)[0][:300]
    j = max(2, int(where * len(tokens)))
    changed = tokens.copy()
    if change == "content":
        changed[j] = VOCAB.id("PITCH_70") if tokens[j] != VOCAB.id("PITCH_70") else VOCAB.id("PITCH_71")
    else:
        changed[j] = VOCAB.offset[TokenType.TRACK] + 5  # a segment now starts at j
    with torch.no_grad():
        logits, summaries = model(build_layout([tokens], VOCAB), backend, return_summaries=True)
        logits2, summaries2 = model(build_layout([changed], VOCAB), backend, return_summaries=True)
    # Exact up to float rounding: a new segment changes the number of keys, and with it
    # the order of the additions inside attention (a leak would show as ~1, not 1e-7).
    assert (logits[0, :j] - logits2[0, :j]).abs().max() <= 1e-5
    assert (logits[0, j:] - logits2[0, j:]).abs().max() > 1e-3  # the change does reach the future
    # summaries of segments closed by a token before j are untouched as well (a segment
    # ending at j - 1 is closed by token j itself, so changing j may extend it)
    layout = build_layout([tokens], VOCAB)
    closed = torch.nonzero((layout.seg_end[0] < j - 1) & layout.seg_valid[0]).flatten()
    if len(closed):
        assert (summaries[0, closed] - summaries2[0, closed]).abs().max() <= 1e-5


@pytest.mark.parametrize("split", [1, 9, 120])
def test_cached_decoding_equals_the_full_forward_pass(model: MeloFormer, split: int) -> None:
    song = read_midi(FIXTURES / "drum_groove.mid")
    tokens = np.concatenate([encode(song)[:-1], encode(read_midi(FIXTURES / "bach_chorale.mid"))[4:600]])
    tokens = tokens[:700]
    bars = VOCAB.names(tokens).count("BAR")
    assert len(tokens) >= 500 and bars >= 8
    with torch.no_grad():
        full = model(build_layout([tokens], VOCAB), "dense")[0]
    cache = DecodingCache(model, VOCAB)
    steps = [cache.prefill(tokens[:split])]
    steps += [cache.step(int(token)) for token in tokens[split:]]
    difference = (torch.stack(steps) - full[split - 1 :]).abs().max()
    assert difference <= 1e-4


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 10_000), st.booleans(), st.booleans())
def test_feeding_known_tokens_in_runs_equals_the_full_pass(model: MeloFormer, seed: int, half: bool,
                                                           bf16_runs: bool) -> None:  # fmt: skip
    """Arrange and infill feed the kept music in runs (one pass through the network, however
    many segments a run opens and closes): every run's last logits and every later step are
    those of the full pass; with 16-bit weights, whether the runs multiply in bfloat16 (a CPU
    that computes it) or in float32 (one that does not)."""
    from unittest import mock

    from meloformer_core.generation import cache as cache_module

    rng = np.random.default_rng(seed)
    tokens = np.concatenate(sequences(seed, 2))[:900]
    split = int(rng.integers(1, 60))
    cuts = np.sort(rng.choice(np.arange(split + 1, len(tokens)), size=min(8, len(tokens) - split - 1), replace=False))
    with torch.no_grad():
        full = model(build_layout([tokens], VOCAB), "dense")[0]
    with mock.patch.object(cache_module, "bf16_native", return_value=bf16_runs):
        cache = DecodingCache(model, VOCAB, half_weights=half)
    assert (cache.group.weights(16)[1].dtype == torch.bfloat16) == (half and bf16_runs)
    cache.prefill(tokens[:split])
    bounds = [split, *cuts.tolist(), len(tokens)]
    for index, (start, stop) in enumerate(itertools.pairwise(bounds)):
        if index % 2:  # odd pieces stepped one by one, even ones fed as runs: the two mix freely
            logits = [cache.step(int(token)) for token in tokens[start:stop]][-1]
        else:
            logits = feed_run(cache, tokens[start:stop].tolist())
        assert (logits - full[stop - 1]).abs().max() <= (3e-2 if half else 1e-4)
    assert cache.length == len(tokens)
    with pytest.raises(ContextFull):
        feed_run(cache, [int(tokens[-1])] * (cache.capacity - cache.length + 1))
    assert cache.length == len(tokens)  # nothing fed when the run does not fit


def test_caches_stepped_together_equal_their_full_forward_passes(model: MeloFormer) -> None:
    """Prompt guidance feeds one token to two caches at once: the one that heard the song
    and the one that heard only its header; each must give its own sequence's logits."""
    tokens = encode(read_midi(FIXTURES / "bach_chorale.mid"))[:400]
    bars = np.flatnonzero(VOCAB.type_of[tokens] == TokenType.BAR)
    header, split = tokens[: bars[0]], int(bars[3])
    heard, deaf = DecodingGroup(model, VOCAB, rows=2).caches()
    steps = [(heard.prefill(tokens[:split]), deaf.prefill(header))]
    steps += [tuple(step_together([heard, deaf], int(token))) for token in tokens[split:]]
    with torch.no_grad():
        for index, sequence in enumerate((tokens, np.concatenate([header, tokens[split:]]))):
            full = model(build_layout([sequence], VOCAB), "dense")[0]
            start = split if index == 0 else len(header)
            stepped = torch.stack([pair[index] for pair in steps])
            assert (stepped - full[start - 1 :]).abs().max() <= 1e-4


def test_rows_stepped_together_with_their_own_tokens_equal_their_full_passes(model: MeloFormer) -> None:
    """Takes are decoded as rows of one group: each row its own prompt and tokens, and a row
    that has finished stops while the others go on; every row keeps its own sequence's logits."""
    chorale = encode(read_midi(FIXTURES / "bach_chorale.mid"))[:300]
    groove = encode(read_midi(FIXTURES / "drum_groove.mid"))[:260]
    jig = encode(read_midi(FIXTURES / "jig_6_8.mid"))[:200]
    sequences, prompts = (chorale, groove, jig), (40, 7, 120)
    caches = DecodingGroup(model, VOCAB, rows=3).caches()
    steps = [[cache.prefill(seq[:p])] for cache, seq, p in zip(caches, sequences, prompts, strict=True)]
    for t in range(max(len(seq) - p for seq, p in zip(sequences, prompts, strict=True))):
        rows = [row for row, (seq, p) in enumerate(zip(sequences, prompts, strict=True)) if p + t < len(seq)]
        fed = [int(sequences[row][prompts[row] + t]) for row in rows]
        for row, logits in zip(rows, step_together([caches[row] for row in rows], fed), strict=True):
            steps[row].append(logits)
    with torch.no_grad():
        for row, (seq, p) in enumerate(zip(sequences, prompts, strict=True)):
            full = model(build_layout([seq], VOCAB), "dense")[0]
            assert (torch.stack(steps[row]) - full[p - 1 :]).abs().max() <= 1e-4
    with pytest.raises(ValueError, match="one DecodingGroup"):
        step_together([caches[0], DecodingCache(model, VOCAB)], 0)


def test_a_row_that_copies_a_prefilled_prompt_goes_on_as_if_it_had_prefilled_it(model: MeloFormer) -> None:
    """Takes share their prompt: the first take prefills it, the others copy its row, and
    each then continues the prompt its own way."""
    chorale = encode(read_midi(FIXTURES / "bach_chorale.mid"))
    bars = np.flatnonzero(VOCAB.type_of[chorale] == TokenType.BAR)
    prompt = chorale[: bars[2] + 3]  # ends inside a segment, with summaries already closed
    sequences = (chorale[: bars[6]], np.concatenate([prompt, chorale[bars[3] + 3 : bars[6]]]))
    first, second = DecodingGroup(model, VOCAB, rows=3).caches()[1:]  # rows 1 and 2: not row 0
    steps = [[first.prefill(prompt)]]
    second.copy_from(first)
    steps.append([steps[0][0]])
    for t in range(len(prompt), min(len(seq) for seq in sequences)):
        for row, logits in enumerate(step_together([first, second], [int(seq[t]) for seq in sequences])):
            steps[row].append(logits)
    with torch.no_grad():
        for row, seq in enumerate(sequences):
            full = model(build_layout([seq], VOCAB), "dense")[0][len(prompt) - 1 : len(steps[row]) + len(prompt) - 1]
            assert (torch.stack(steps[row]) - full).abs().max() <= 1e-4
    with pytest.raises(ValueError, match="own group"):
        DecodingCache(model, VOCAB).copy_from(first)


def test_named_sizes_and_their_parameter_counts() -> None:
    counts = {}
    for size in SIZES:
        with torch.device("meta"):
            counts[size] = MeloFormer(named_config(size, len(VOCAB))).parameter_count()
    assert 2e6 <= counts["default"] <= 10e6  # CPU-friendly: a few million
    assert 15e6 <= counts["small"] <= 20e6  # ~17M
    assert counts["small"] < counts["base"] < counts["large"] < counts["xlarge"]
    with pytest.raises(ConfigError, match="unknown model size"):
        named_config("huge", len(VOCAB))
    with pytest.raises(ConfigError, match="heads"):
        ModelConfig(vocab_size=10, d_model=100, n_heads=3)
    with pytest.raises(ConfigError, match="unknown model config keys"):
        ModelConfig.from_dict({"vocab_size": 10, "colour": "red"})


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    torch.manual_seed(1)
    plain = MeloFormer(named_config("debug", len(VOCAB)))
    checkpointed = MeloFormer(named_config("debug", len(VOCAB), gradient_checkpointing=True))
    checkpointed.load_state_dict(plain.state_dict())
    layout = build_layout(sequences(5, 2), VOCAB)
    for net in (plain, checkpointed):
        net.train()(layout).logsumexp(-1).mean().backward()
    for a, b in zip(plain.parameters(), checkpointed.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-6)


def test_cached_decoding_equals_the_full_pass_on_an_infilling_layout(model: MeloFormer) -> None:
    from training.data import fill_in_the_middle

    tokens = encode(read_midi(FIXTURES / "drum_groove.mid"))
    examples = (fill_in_the_middle(tokens, VOCAB, np.random.default_rng(s), max_gap=2, max_suffix=2) for s in range(50))
    example = next(e for e in examples if VOCAB.names(e).count("FIM_MIDDLE") == 1)
    with torch.no_grad():
        full = model(build_layout([example], VOCAB), "dense")[0]
    cache = DecodingCache(model, VOCAB)
    steps = [cache.prefill(example[:5])] + [cache.step(int(token)) for token in example[5:]]
    assert (torch.stack(steps) - full[4:]).abs().max() <= 1e-4
