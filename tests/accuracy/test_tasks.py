"""Generators: every label is re-derived from the sequence alone by an independent parser."""
import pytest
import torch

from prismbench.accuracy import tasks as T
from prismbench.accuracy.tasks import (IGNORE, MARK, NULL, OFF, ON, QUERY, SEL0, SEL1, CTX0, CTX1, FALSE, TRUE,
                                       TASKS, TaskStream, Vocab, generate, sequence_bucket)

N_SAMPLES = 200
SEQ_LENS = (37, 64)  # one awkward length, one even
VOCABS = (Vocab(64), Vocab(32, n_noise=4))


def _kind(v: Vocab, tok: int) -> str:
    if tok < T.N_CONTROL:
        return "control"
    return "noise" if tok >= v.noise_start else "data"


def _idx(v, tok):
    return tok - v.data_start


def _is_key(v, tok):
    return _kind(v, tok) == "data" and _idx(v, tok) < v.n_keys


def _expected(task: str, x: list, v: Vocab, params: dict) -> dict:
    """Position -> label, derived from the tokens only (no access to the generator's draws)."""
    n = len(x)
    if task == "mqar":
        table, out = {}, {}
        for i in range(0, n // 2, 2):
            if _is_key(v, x[i]):
                table[x[i]] = x[i + 1]
        for i in range(n // 2, n, 2):
            if x[i] == QUERY:
                out[i + 1] = table[x[i + 1]]
        return out
    if task == "poly_recall":
        table = {}
        for i in range(0, n - 3 - 2):
            if x[i] in (CTX0, CTX1) and _is_key(v, x[i + 1]):
                table[(x[i], x[i + 1])] = x[i + 2]
        assert x[-3] == QUERY
        return {n - 1: table[(x[-2], x[-1])]}
    if task == "variable_tracking":
        env, i = {}, 0
        while i < n - 2:
            if _kind(v, x[i]) == "data":
                lhs, rhs = x[i], x[i + 1]
                env[lhs] = env[rhs] if _is_key(v, rhs) else rhs
                i += 2
            else:
                i += 1
        assert x[-2] == QUERY
        return {n - 1: env[x[-1]]}
    assert x[-1] == QUERY or task == "silence_gate"
    if task == "silence_gate":
        s = next(i for i, t in enumerate(x) if t in (ON, OFF))
        assert x[-2] == QUERY and x[-1] == x[s + 1]
        return {n - 1: x[s + 2] if x[s] == ON else NULL}
    if task == "mux":
        s = next(i for i, t in enumerate(x) if t in (SEL0, SEL1))
        assert x[s + 3] == MARK
        return {n - 1: x[s + 1] if x[s] == SEL0 else x[s + 2]}
    m = x.index(MARK)
    if task == "local_xor":
        return {n - 1: TRUE if (_idx(v, x[m - 2]) + _idx(v, x[m - 1])) % 2 else FALSE}
    if task == "parity":
        bits = [_idx(v, t) for t in x[m - params.get("n_bits", 3) : m]]
        assert all(0 <= b < 4 for b in bits), bits
        return {n - 1: TRUE if sum(bits) % 2 else FALSE}
    if task == "modulo_add":
        M = params.get("modulus", 16)
        a, b = _idx(v, x[m - 2]), _idx(v, x[m - 1])
        assert a < M and b < M
        return {n - 1: v.data_start + (a + b) % M}
    if task == "palindrome":
        return {n - 1: TRUE if x[m - 3] == x[m - 1] else FALSE}
    raise AssertionError(task)


@pytest.mark.parametrize("vocab", VOCABS, ids=lambda v: f"V{v.size}")
@pytest.mark.parametrize("seq_len", SEQ_LENS, ids=lambda t: f"T{t}")
@pytest.mark.parametrize("task", list(TASKS))
def test_labels_follow_from_the_sequence(task, seq_len, vocab):
    params = {"n_pairs": 2, "n_queries": 2} if (task == "mqar" and vocab.size == 32) else {}
    x, y = generate(task, N_SAMPLES, seq_len=seq_len, vocab=vocab, gen=torch.Generator().manual_seed(7), **params)
    assert x.shape == y.shape == (N_SAMPLES, seq_len) and x.dtype == y.dtype == torch.long
    assert int(x.min()) >= 0 and int(x.max()) < vocab.size
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        want = _expected(task, row_x, vocab, params)
        got = {i: l for i, l in enumerate(row_y) if l != IGNORE}
        assert got == want, (task, row_x, got, want)
        # structure tokens are control/data only; everything else is noise
        assert all(0 <= l < vocab.size for l in got.values())


@pytest.mark.parametrize("task", ["palindrome", "silence_gate", "local_xor", "parity", "mux"])
def test_binary_choices_are_balanced(task):
    x, y = generate(task, 4000, seq_len=32, vocab=Vocab(64), gen=torch.Generator().manual_seed(1))
    lab = y[:, -1]
    top = torch.bincount(lab - lab.min()).max().item() / len(lab)
    assert top < 0.56 if task != "mux" else top < 0.1, f"{task}: most common label has share {top:.3f}"


def test_mqar_queries_every_requested_key_once():
    v = Vocab(64)
    x, y = generate("mqar", 100, seq_len=64, vocab=v, gen=torch.Generator().manual_seed(3), n_pairs=5, n_queries=3)
    assert ((y != IGNORE).sum(1) == 3).all()
    assert (y[:, : 32] == IGNORE).all()  # queries only in the second half


def test_seeded_and_reproducible():
    v = Vocab(64)
    a = generate("mux", 50, seq_len=40, vocab=v, gen=torch.Generator().manual_seed(5))
    b = generate("mux", 50, seq_len=40, vocab=v, gen=torch.Generator().manual_seed(5))
    c = generate("mux", 50, seq_len=40, vocab=v, gen=torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    s1 = TaskStream("mqar", seq_len=64, vocab=v, seed=0, split="train").take(300)
    s2 = TaskStream("mqar", seq_len=64, vocab=v, seed=0, split="train")
    s2 = torch.cat([s2.take(100)[0], s2.take(200)[0]])
    assert torch.equal(s1[0], s2)  # chunking the stream does not change it


@pytest.mark.parametrize("task", ["mux", "local_xor"])
def test_train_and_test_streams_are_disjoint(task):
    """The CI preset's streams at its full size: no test sequence occurs in train."""
    from prismbench.accuracy.presets import get_preset

    p = get_preset("ci")
    s = p.tasks[task]
    v = Vocab(p.vocab_size, p.n_noise)
    tr = TaskStream(task, seq_len=s.seq_len, vocab=v, seed=0, split="train").take(p.steps * p.batch_size)[0]
    te = TaskStream(task, seq_len=s.seq_len, vocab=v, seed=0, split="test").take(p.test_samples)[0]
    assert (sequence_bucket(te) == 0).all() and (sequence_bucket(tr) != 0).all()
    train_rows = {tuple(r) for r in tr.tolist()}
    assert not any(tuple(r) in train_rows for r in te.tolist())


def test_bucket_is_a_function_of_the_sequence():
    x = torch.randint(0, 64, (500, 33), generator=torch.Generator().manual_seed(0))
    assert torch.equal(sequence_bucket(x), sequence_bucket(x.clone()))
    b = sequence_bucket(x)
    assert 0.15 < (b == 0).float().mean() < 0.35  # about 1 / HASH_BUCKETS


def test_bad_input_names_the_argument():
    v = Vocab(64)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="task='nope'"):
        generate("nope", 2, seq_len=32, vocab=v, gen=g)
    with pytest.raises(ValueError, match="seq_len=8"):
        generate("mqar", 2, seq_len=8, vocab=v, gen=g)
    with pytest.raises(ValueError, match="modulus=40"):
        generate("modulo_add", 2, seq_len=32, vocab=v, gen=g, modulus=40)
    with pytest.raises(ValueError, match="unknown parameter"):
        generate("mux", 2, seq_len=32, vocab=v, gen=g, n_pairs=3)
    with pytest.raises(ValueError, match="n_data"):
        Vocab(20)
    with pytest.raises(ValueError, match="split='val'"):
        TaskStream("mux", seq_len=32, vocab=v, seed=0, split="val")
