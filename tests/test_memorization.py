"""Tests of labkit.memorization (Carlini et al. 2019: log-perplexity, rank, exposure, extraction;
Carlini et al. 2021: sampling, zlib entropy, ranking by membership metrics, secrets in the top k)."""
import math
import zlib

import pytest
import torch
from torch import nn

from labkit.experiments.memorization import canary_experiment, extraction_experiment
from labkit.memorization import (
    Canary,
    CharLM,
    MemorizationScores,
    LMConfig,
    Vocab,
    canary_rank,
    candidate_log_perplexities,
    deduplicate,
    exposure,
    extract_secret,
    memorization_scores,
    generate,
    log_perplexity,
    make_canary,
    make_corpus,
    rank_generations,
    sample_generations,
    secrets_in_top,
    text_log_perplexities,
    train_lm,
    zlib_entropy,
)
from labkit.metrics import generalization_gap


class TableLM(nn.Module):
    """Hand-set LM: the next-token distribution depends on (last token, last non-space token).

    ``table[(last, last_non_space)]`` (or ``table[last]``) maps to a probability vector; the state
    ``(1, B)`` (batch in dimension 1, as a GRU's) carries the last non-space id, so text can be fed
    in pieces.
    """

    def __init__(self, vocab, table, default):
        super().__init__()
        self.vocab, self.table, self.default = vocab, table, torch.tensor(default, dtype=torch.float64)
        self.space = vocab.index[" "]

    def dist(self, last, last_ns):
        key = (self.vocab.alphabet[last], self.vocab.alphabet[last_ns])
        p = self.table.get(key, self.table.get(key[0], None))
        return self.default if p is None else torch.tensor(p, dtype=torch.float64)

    def forward(self, ids, state=None):
        b, t = ids.shape
        last_ns = state[0].clone() if state is not None else torch.full((b,), self.space)
        out = torch.empty(b, t, len(self.vocab), dtype=torch.float64)
        for i in range(b):
            for j in range(t):
                tok = int(ids[i, j])
                if tok != self.space:
                    last_ns[i] = tok
                out[i, j] = torch.log(self.dist(tok, int(last_ns[i])))
        return out, last_ns[None]  # (1, B)


def probs(vocab, spec):
    """A probability vector over ``vocab`` from {char: prob}."""
    p = [0.0] * len(vocab)
    for ch, v in spec.items():
        p[vocab.index[ch]] = v
    return p


def test_log_perplexity_of_a_hand_set_bigram_model():
    v = Vocab("\nab ")
    table = {
        "\n": probs(v, {"a": 0.5, "b": 0.5}),
        "a": probs(v, {"a": 0.25, "b": 0.75}),
        "b": probs(v, {"\n": 0.5, "a": 0.125, "b": 0.375}),
    }
    model = TableLM(v, table, probs(v, {"\n": 1.0}))
    got = log_perplexity(model, v, ["aab", "bba"])
    want = [-math.log2(0.5) - math.log2(0.25) - math.log2(0.75), -math.log2(0.5) - math.log2(0.375) - math.log2(0.125)]
    assert got.tolist() == pytest.approx(want, abs=1e-12)
    # the context is not scored: "b" given "\na" costs -log2(0.75) only
    assert float(log_perplexity(model, v, "b", context="\na")[0]) == pytest.approx(-math.log2(0.75), abs=1e-12)


def test_uniform_model_gives_length_times_log2_v():
    v = Vocab()
    model = CharLM(len(v), seed=0)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    assert float(log_perplexity(model, v, "hello 1 2 3")[0]) == pytest.approx(11 * math.log2(len(v)), abs=1e-9)


def test_exposure_is_log2_of_the_candidate_count_when_the_canary_ranks_first():
    scores = torch.rand(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 1.0
    scores[417] = 0.5
    assert canary_rank(scores, 417) == 1
    assert exposure(scores, 417) == pytest.approx(math.log2(1000))
    worst = int(scores.argmax())
    assert exposure(scores, worst) == pytest.approx(0.0)
    # ties do not push the canary down: only strictly lower candidates count
    tied = torch.tensor([1.0, 1.0, 1.0, 2.0])
    assert [canary_rank(tied, i) for i in range(4)] == [1, 1, 1, 4]


def test_rank_computed_by_sorting_agrees():
    gen = torch.Generator().manual_seed(1)
    scores = torch.randn(5000, generator=gen, dtype=torch.float64)
    for idx in torch.randint(0, 5000, (20,), generator=gen).tolist():
        by_sort = int((torch.argsort(scores) == idx).nonzero()) + 1
        assert canary_rank(scores, idx) == by_sort
        assert exposure(scores, idx) == pytest.approx(math.log2(5000 / by_sort))


def test_exposure_of_never_seen_secrets_averages_about_one_bit():
    # if the canary's rank is uniform on 1..|R|, E[exposure] = log2|R| - E[log2 rank] ~ 1/ln 2 bits
    n = 4096
    scores = torch.randperm(n, generator=torch.Generator().manual_seed(0)).double()
    mean = sum(exposure(scores, i) for i in range(n)) / n
    assert mean == pytest.approx(1 / math.log(2), abs=0.02)


def test_rank_and_exposure_reject_bad_input():
    with pytest.raises(ValueError):
        canary_rank(torch.zeros(10), 10)
    with pytest.raises(ValueError):
        exposure(torch.zeros(3, 2), 0)


def test_candidate_enumeration_matches_whole_sentences():
    v = Vocab()
    model = CharLM(len(v), hidden=32, seed=3)
    prefix = "my PIN is"
    cand = candidate_log_perplexities(model, v, prefix, k=3, batch_size=77)  # (1000,)
    canary = Canary(secret="000", prefix=prefix)
    texts = [canary.format(f"{i:03d}") for i in range(1000)]
    full = log_perplexity(model, v, texts)
    prefix_part = float(log_perplexity(model, v, prefix + " ")[0])
    assert torch.allclose(full, cand + prefix_part, atol=1e-4)
    idx = int(torch.randint(0, 1000, (1,), generator=torch.Generator().manual_seed(0)))
    assert canary_rank(cand, idx) == canary_rank(full, idx)


def test_beam_search_finds_what_greedy_misses():
    v = Vocab("\n 0123456789abcdefghijklmnopqrstuvwxyzP")
    first = {d: 0.25 / 8 for d in "03456789"} | {"1": 0.4, "2": 0.35}
    table = {
        (" ", "s"): probs(v, first),  # after "...is ": first digit
        (" ", "1"): probs(v, {d: 0.1 for d in "0123456789"}),  # after "1 ": flat
        (" ", "2"): probs(v, {d: (0.9 if d == "7" else 0.1 / 9) for d in "0123456789"}),
    }
    table |= {d: probs(v, {" ": 1.0}) for d in "0123456789"}  # a digit is followed by a space
    model = TableLM(v, table, probs(v, {d: 0.1 for d in "0123456789"}))
    greedy = extract_secret(model, v, "is", k=2, beam_width=1)
    beam = extract_secret(model, v, "is", k=2, beam_width=2)
    assert greedy.secret[0] == "1"
    assert beam.secret == "27"
    assert beam.log_perplexity == pytest.approx(-math.log2(0.35 * 0.9), abs=1e-9)
    assert beam.log_perplexity < greedy.log_perplexity


def test_full_beam_is_the_exact_argmin_of_the_enumeration():
    v = Vocab()
    model = CharLM(len(v), hidden=32, seed=5)
    cand = candidate_log_perplexities(model, v, "code", k=2)
    ext = extract_secret(model, v, "code", k=2, beam_width=100)
    assert int(ext.secret) == int(cand.argmin())
    assert ext.log_perplexity == pytest.approx(float(cand.min()), abs=1e-5)
    assert [s for s, _ in ext.beams] == [f"{i:02d}" for i in torch.argsort(cand, stable=True).tolist()]


def test_corpus_and_canaries_are_deterministic():
    c1, c2 = make_canary(k=6, seed=7), make_canary(k=6, seed=7)
    assert c1 == c2 and len(c1.secret) == 6 and c1.secret.isdigit()
    assert make_canary(k=6, seed=8).secret != c1.secret
    can = Canary(secret="481592", insertions=5)
    assert can.text == "my PIN is 4 8 1 5 9 2"
    text = make_corpus(200, canaries=[can], seed=0)
    assert text == make_corpus(200, canaries=[can], seed=0)
    assert text != make_corpus(200, canaries=[can], seed=1)
    assert text.count(can.text) == 5
    assert len(text.strip().split("\n")) == 205
    assert make_corpus(200, seed=0).count("my PIN is") == 0


def test_training_is_reproducible_and_decoding_recovers_a_memorised_secret():
    v = Vocab()
    can = Canary(secret="3141", prefix="my PIN is", insertions=60)
    text = make_corpus(150, canaries=[can], seed=0)
    models = []
    for _ in range(2):
        m = CharLM(len(v), hidden=64, seed=0)
        losses = train_lm(m, text, v, steps=150, seq_len=32, batch_size=32, seed=1)
        models.append(m)
    assert all(torch.equal(a, b) for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values()))
    assert losses[-1] < 0.5 * losses[0]
    m = models[0]
    assert extract_secret(m, v, can.prefix, k=4).secret == "3141"
    assert generate(m, v, can.prefix, n_chars=8) == " 3 1 4 1"
    scores = candidate_log_perplexities(m, v, can.prefix, k=4)
    assert canary_rank(scores, can.index) == 1
    assert exposure(scores, can.index) == pytest.approx(math.log2(10**4))
    # an untrained model of the same shape does not know it
    fresh = CharLM(len(v), hidden=64, seed=0)
    assert exposure(candidate_log_perplexities(fresh, v, can.prefix, k=4), can.index) < 8


def test_generate_sampling_follows_its_seed():
    v = Vocab()
    m = CharLM(len(v), hidden=16, seed=0)
    assert generate(m, v, "hi", greedy=False, seed=3) == generate(m, v, "hi", greedy=False, seed=3)
    assert generate(m, v, "hi", greedy=False, seed=3) != generate(m, v, "hi", greedy=False, seed=4)
    a = generate(m, v, "hi", greedy=False, seed=torch.Generator().manual_seed(0))
    b = generate(m, v, "hi", greedy=False, seed=torch.Generator().manual_seed(0))
    assert a == b


def test_generalization_gap_on_hand_set_probabilities():
    pm = torch.tensor([[0.9, 0.1], [0.2, 0.8]])  # members: both right, confident
    pn = torch.tensor([[0.5, 0.5], [0.7, 0.3]])  # non-members: one right (argmax of a tie is 0), one wrong
    gap = generalization_gap(pm, torch.tensor([0, 1]), pn, torch.tensor([0, 1]))
    assert gap.train_accuracy == 1.0 and gap.test_accuracy == 0.5 and gap.accuracy_gap == 0.5
    assert gap.confidence_members == pytest.approx(0.85)
    assert gap.confidence_nonmembers == pytest.approx(0.4)
    h = lambda p: -(p * math.log2(p) + (1 - p) * math.log2(1 - p))  # noqa: E731 - binary entropy, bits = normalized
    assert gap.entropy_members == pytest.approx((h(0.9) + h(0.8)) / 2)
    assert gap.entropy_nonmembers == pytest.approx((1.0 + h(0.7)) / 2)
    assert gap.entropy_gap == pytest.approx(gap.entropy_nonmembers - gap.entropy_members)
    with pytest.raises(ValueError):
        generalization_gap(pm, torch.tensor([0, 2]), pn, torch.tensor([0, 1]))


@pytest.mark.slow
def test_exposure_grows_with_insertions_and_the_secret_is_extracted():
    res = canary_experiment((0, 1, 4, 16), k=5, n_sentences=500, config=LMConfig(), seed=0)
    e = {r.canary.insertions: r.exposure for r in res}
    assert e[1] < e[4] < e[16]
    assert e[16] == pytest.approx(math.log2(10**5))
    assert res[-1].extracted_ok
    assert e[0] < 4.0
    assert not res[0].extracted_ok


# --------------------------------------------------------------------------- Carlini et al. 2021
class BigramLM(nn.Module):
    """Hand-set bigram LM: ``probs[a][b]`` = Pr(next = b | last = a); a dummy state ``(1, B, 1)``."""

    def __init__(self, vocab, probs):
        super().__init__()
        table = torch.full((len(vocab), len(vocab)), 1e-12, dtype=torch.float64)
        for a, row in probs.items():
            for b, p in row.items():
                table[vocab.index[a], vocab.index[b]] = p
        self.register_buffer("logp", torch.log(table / table.sum(1, keepdim=True)))

    def forward(self, ids, state=None):
        return self.logp[ids], torch.zeros(1, ids.shape[0], 1)  # (B, T, V), (1, B, 1)


def test_zlib_entropy_is_low_for_repetitive_text_and_counts_compressed_bits():
    rep = "ha " * 20
    rnd = "".join("abcdefghijklmnopqrstuvwxyz0123456789 "[i] for i in torch.randint(0, 37, (60,), generator=torch.Generator().manual_seed(0)).tolist())
    bits = zlib_entropy([rep, rnd])
    assert bits.dtype == torch.float64 and bits.shape == (2,)
    assert bits[0] < 0.5 * bits[1]
    assert bits.tolist() == [8.0 * len(zlib.compress(t.encode())) for t in (rep, rnd)]
    assert zlib_entropy("abc").shape == (1,)
    with pytest.raises(ValueError):
        zlib_entropy([])


def test_ratios_rank_a_memorized_secret_above_generic_repetitive_text():
    # filler: easy for the target, but also for zlib and the reference; secret: easy for the target only
    texts = ["ha ha ha ha ha ha.", "my PIN is 4 9 3 0 3", "carol met in lima."]
    lp = torch.tensor([4.0, 6.0, 30.0], dtype=torch.float64)  # the target's bits
    lengths = torch.tensor([float(len(t)) for t in texts], dtype=torch.float64)
    zl = zlib_entropy(texts)
    ref = torch.tensor([4.5, 60.0, 32.0], dtype=torch.float64)  # the reference never saw the secret
    sc = memorization_scores(lp, lengths=lengths, zlib_bits=zl, reference_log_perplexity=ref)
    assert isinstance(sc, MemorizationScores)
    assert torch.allclose(sc.perplexity, -lp / lengths, atol=1e-12)
    assert torch.allclose(sc.zlib, -lp / zl, atol=1e-12)
    assert torch.allclose(sc.reference, -lp / ref, atol=1e-12)
    assert int(sc.perplexity.argmax()) == 0  # perplexity alone prefers the filler
    assert int(sc.zlib.argmax()) == 1 and int(sc.reference.argmax()) == 1
    assert list(sc.as_dict()) == ["perplexity", "zlib", "reference"]
    assert memorization_scores(lp, lengths=lengths, zlib_bits=zl).reference is None
    for bad in (dict(lengths=lengths[:2], zlib_bits=zl), dict(lengths=lengths, zlib_bits=zl, reference_log_perplexity=torch.zeros(3)),
                dict(lengths=lengths, zlib_bits=zl.reshape(3, 1))):
        with pytest.raises(ValueError):
            memorization_scores(lp, **bad)


def test_secrets_in_top_counts_each_secret_once_by_its_best_rank():
    texts = ["x", "my PIN is 1", "my PIN is 1.", "door 22", "y", "z"]
    scores = torch.tensor([5.0, 4.0, 6.0, 1.0, 3.0, 3.0])  # order: 2, 0, 1, 4, 5, 3
    secrets = ["my PIN is 1", "door 22", "never"]
    assert secrets_in_top(texts, scores, secrets, ks=(1, 2, 5, 6, 100)).tolist() == [1, 1, 1, 2, 2]
    got = secrets_in_top(texts, scores, secrets + ["door 22"], ks=(6,))
    assert got.dtype == torch.int64 and got.tolist() == [2]  # a repeated secret counts once
    # ties: the earlier text first
    assert secrets_in_top(["a", "b"], torch.tensor([1.0, 1.0]), ["b"], ks=(1, 2)).tolist() == [0, 1]
    for bad in (dict(texts=texts, scores=scores[:5], secrets=secrets), dict(texts=texts, scores=scores, secrets=[""]),
                dict(texts=texts, scores=scores, secrets=secrets, ks=(0,))):
        with pytest.raises(ValueError):
            secrets_in_top(**bad)


def test_sampling_follows_the_model_its_seed_and_the_stop_character():
    v = Vocab("\nab")
    model = BigramLM(v, {"\n": {"a": 0.75, "b": 0.25}, "a": {"\n": 1.0}, "b": {"b": 0.5, "\n": 0.5}})
    s = sample_generations(model, v, 4000, length=6, seed=0, batch_size=700)
    assert len(s) == 4000 and set(s) <= {"a", "b", "bb", "bbb", "bbbb", "bbbbb", "bbbbbb"}
    assert s.count("a") / 4000 == pytest.approx(0.75, abs=0.03)
    assert s.count("bb") / 4000 == pytest.approx(0.25 * 0.25, abs=0.015)
    assert s == sample_generations(model, v, 4000, length=6, seed=0, batch_size=700)
    assert s != sample_generations(model, v, 4000, length=6, seed=1, batch_size=700)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert sample_generations(model, v, 50, seed=g1) == sample_generations(model, v, 50, seed=g2)
    # no stop character: every sample has exactly `length` characters after the prompt
    fixed = sample_generations(model, v, 20, length=5, stop=None, prompt="b", seed=0)
    assert all(len(t) == 6 and t[0] == "b" for t in fixed)
    for bad in (dict(n=0), dict(n=5, temperature=0.0), dict(n=5, stop="ab"), dict(n=5, length=0)):
        with pytest.raises(ValueError):
            sample_generations(model, v, **bad)


def test_low_temperature_sampling_is_greedy_decoding():
    v = Vocab()
    model = CharLM(len(v), hidden=32, seed=4)
    greedy = generate(model, v, "", n_chars=12)
    assert sample_generations(model, v, 3, length=12, temperature=1e-4, stop=None, seed=0) == [greedy] * 3


def test_rank_generations_deduplicates_and_scores_any_length():
    v = Vocab("\nab")
    target = BigramLM(v, {"\n": {"a": 0.9, "b": 0.1}, "a": {"a": 0.5, "b": 0.4, "\n": 0.1}, "b": {"a": 0.5, "b": 0.5}})
    ref = BigramLM(v, {"\n": {"a": 0.5, "b": 0.5}, "a": {"a": 0.5, "b": 0.5}, "b": {"a": 0.5, "b": 0.5}})
    texts = ["ab", "", "aab", "ab", "b", "aab"]
    assert deduplicate(texts) == ["ab", "aab", "b"]
    r = rank_generations(target, v, texts, reference=ref)
    assert r.texts == ["ab", "aab", "b"]
    want = torch.tensor([-math.log2(0.9 * 0.4), -math.log2(0.9 * 0.5 * 0.4), -math.log2(0.1)], dtype=torch.float64)
    assert torch.allclose(r.log_perplexity, want, atol=1e-9)
    assert torch.allclose(r.log_perplexity, text_log_perplexities(target, v, r.texts), atol=1e-12)
    assert torch.allclose(r.reference_log_perplexity, torch.tensor([2.0, 3.0, 1.0], dtype=torch.float64), atol=1e-9)
    assert r.top("reference", 2) == ["ab", "aab"]  # target / reference bits: 0.74, 0.82, 3.3
    assert r.order("perplexity").tolist() == torch.argsort(r.log_perplexity / torch.tensor([2.0, 3.0, 1.0]), stable=True).tolist()
    with pytest.raises(ValueError):
        r.order("lowercase")
    with pytest.raises(ValueError):
        rank_generations(target, v, ["", ""])


def test_corpus_fillers_are_repetitive_lines_and_default_to_none():
    assert make_corpus(100, fillers=0, seed=3) == make_corpus(100, seed=3)
    lines = make_corpus(100, fillers=30, seed=3).strip().split("\n")
    assert len(lines) == 130
    fillers = [ln for ln in lines if len(set(ln.rstrip(".").split())) == 1]
    assert len(fillers) >= 30 and all(4 <= len(ln.split()) <= 12 for ln in fillers)
    with pytest.raises(ValueError):
        make_corpus(100, fillers=-1)


def test_sampled_canary_tops_the_reference_ranking_and_a_model_without_it_yields_none():
    v = Vocab()
    can = Canary(secret="31415", prefix="my PIN is", insertions=30)
    target = CharLM(len(v), hidden=64, seed=0)
    train_lm(target, make_corpus(150, canaries=[can], fillers=40, seed=0), v, steps=250, seed=1)
    clean = CharLM(len(v), hidden=64, seed=0)
    train_lm(clean, make_corpus(150, fillers=40, seed=0), v, steps=250, seed=1)
    reference = CharLM(len(v), hidden=32, seed=2)
    train_lm(reference, make_corpus(150, fillers=40, seed=5), v, steps=150, seed=3)
    for model, want in ((target, 1), (clean, 0)):
        r = rank_generations(model, v, sample_generations(model, v, 600, seed=7), reference=reference)
        assert secrets_in_top(r.texts, r.scores.reference, [can.text], ks=(10,)).tolist() == [want]
        if want == 0:
            assert not any(can.text in t for t in r.texts)


@pytest.mark.slow
def test_extraction_experiment_ratios_beat_perplexity_and_a_clean_target_yields_nothing():
    res = extraction_experiment(seed=0)
    assert res.generated == 8 and res.ks == (10, 50, 100)
    assert res.found["perplexity"][0] == 0  # the top 10 by perplexity are fillers
    assert all(len(set(t.rstrip(".").split())) <= 2 for t in res.ranking.top("perplexity", 5))  # "ha ha ... h", cut at 64
    assert res.found["reference"][1] == 8 and res.found["zlib"][0] > res.found["perplexity"][0]
    assert all(res.found["reference"][j] >= res.found["perplexity"][j] for j in range(3))
    again = extraction_experiment(seed=0, n_samples=500)
    assert again.scenario.generations == extraction_experiment(seed=0, n_samples=500).scenario.generations
    clean = extraction_experiment(seed=0, insertions=0, n_samples=1000)
    assert clean.generated == 0 and all(c == [0, 0, 0] for c in clean.found.values())
