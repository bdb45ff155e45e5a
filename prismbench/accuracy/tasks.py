"""Seeded generators for the synthetic probing tasks of the PRISM paper's Table 4.

Every generator is a pure, vectorised function of (its parameters, a `torch.Generator`): it
returns `x [N, T]` token ids and `y [N, T]` labels, with `IGNORE = -100` everywhere except at
the query positions (accuracy and loss are taken there only).

Vocabulary (`Vocab`): ids `[0, N_CONTROL)` are control tokens (the names below), then
`n_data` data tokens, then `n_noise` noise tokens. The three classes are disjoint and the
background of every sequence is drawn from the noise tokens only, so a data or control token
in a sequence is always part of the task's structure. Recall tasks split the data tokens into
a key half (`keys`) and a value half (`values`).

Layouts (`.` is background noise, `Q` the QUERY control token, `M` the MARK control token,
`|y` the label at that position):

- mqar:            `k1 v1 . k2 v2 . . Q k2|v2 . Q k1|v1 .`   pairs in the first half, queries in the second
- poly_recall:     `. C0 k v . C1 k w . . Q C1 k|w`          a key's value depends on the context token
- variable_tracking: `a 7 . x 3 . b a . c b . Q c|7`         a chain a=7, b=a, c=b (plus distractors)
- local_xor:       `. a b M . . . Q|TRUE/FALSE`              TRUE iff parity(a) != parity(b)
- parity:          `. b1 b2 b3 M . . Q|TRUE/FALSE`           parity of a block of n bit tokens
- modulo_add:      `. a b M . . . Q|(a+b mod M)`             operands are the first M data tokens
- palindrome:      `. a b c M . . Q|TRUE/FALSE`              TRUE iff a == c (balanced)
- silence_gate:    `. ON k v . . Q k|v`  or `. OFF k v . . Q k|NULL`
- mux:             `. SEL1 a b M . . Q|b`                    the selector picks one of two channels

A token's "bit" (local_xor, parity) is its data index modulo 2; parity draws its bits from the
first four data tokens, local_xor its operands from all of them.

Train and test streams (`TaskStream`) are disjoint by construction: each sequence is hashed,
sequences whose hash falls in bucket 0 of `HASH_BUCKETS` belong to the test split only and all
others to the train split only; the two splits also draw from different seed streams.

Example::

    >>> v = Vocab(64)
    >>> g = torch.Generator().manual_seed(0)
    >>> x, y = generate("mqar", 8, seq_len=128, vocab=v, gen=g)
    >>> x.shape, int((y != IGNORE).sum(1)[0])
    (torch.Size([8, 128]), 4)
"""
from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass
from typing import Callable

import torch

IGNORE = -100
# control tokens
NULL, QUERY, MARK, ON, OFF, SEL0, SEL1, CTX0, CTX1, FALSE, TRUE = range(11)
N_CONTROL = 12  # one spare id
HASH_BUCKETS = 4  # 1/4 of the sequence space is test-only
_HASH_PRIME = 1_000_003


@dataclass(frozen=True)
class Vocab:
    """Disjoint control / data / noise split of `size` token ids.

    Args:
        size: vocabulary size (the model's embedding and head size).
        n_noise: background tokens (default `size // 4`), the last ids.

    Example::

        >>> Vocab(64).data_start, Vocab(64).n_data, Vocab(64).noise_start
        (12, 36, 48)
    """

    size: int
    n_noise: int | None = None

    def __post_init__(self):
        if self.n_noise is None:
            object.__setattr__(self, "n_noise", self.size // 4)
        if self.n_noise < 1:
            raise ValueError(f"Vocab: n_noise={self.n_noise} must be >= 1")
        if self.n_data < 8:
            raise ValueError(
                f"Vocab: size={self.size} with n_noise={self.n_noise} leaves n_data={self.n_data} data tokens; "
                f"need >= 8 (size >= {N_CONTROL + 8 + self.n_noise})"
            )

    @property
    def data_start(self) -> int:
        return N_CONTROL

    @property
    def n_data(self) -> int:
        return self.size - N_CONTROL - self.n_noise

    @property
    def noise_start(self) -> int:
        return N_CONTROL + self.n_data

    @property
    def n_keys(self) -> int:
        """Data tokens used as keys/variables by recall tasks (the first half)."""
        return self.n_data // 2

    @property
    def n_values(self) -> int:
        return self.n_data - self.n_keys

    def data(self, idx: torch.Tensor) -> torch.Tensor:
        return idx + self.data_start

    def key(self, idx: torch.Tensor) -> torch.Tensor:
        return idx + self.data_start

    def value(self, idx: torch.Tensor) -> torch.Tensor:
        return idx + self.data_start + self.n_keys


# --------------------------------------------------------------------------------------------
# helpers (all on CPU, all driven by the one generator)


def _randint(gen, high, *shape):
    return torch.randint(0, high, shape, generator=gen)


def _distinct(gen, n: int, high: int, m: int) -> torch.Tensor:
    """`[n, m]` distinct integers in [0, high) per row, in random order."""
    if m > high:
        raise ValueError(f"cannot draw {m} distinct values from {high}")
    return torch.rand(n, high, generator=gen).argsort(-1)[:, :m]


def _slots(gen, n: int, lo: int, hi: int, width: int, m: int) -> torch.Tensor:
    """`[n, m]` start positions of `m` non-overlapping windows of `width` tokens in [lo, hi).

    Windows sit on a grid of `width` (start = lo + width * j), in random order.
    """
    n_slots = (hi - lo) // width
    if n_slots < m:
        raise ValueError(f"need {m} windows of {width} tokens in [{lo}, {hi}); only {n_slots} fit")
    return lo + width * _distinct(gen, n, n_slots, m)


def _background(gen, n: int, seq_len: int, vocab: Vocab):
    x = vocab.noise_start + _randint(gen, vocab.n_noise, n, seq_len)
    y = torch.full((n, seq_len), IGNORE, dtype=torch.long)
    return x, y


def _put(x: torch.Tensor, pos: torch.Tensor, tok) -> None:
    """x[i, pos[i, j]] = tok[i, j]; pos `[n]` or `[n, m]`, tok a scalar or a tensor of pos's shape."""
    p = pos if pos.dim() == 2 else pos[:, None]
    t = torch.as_tensor(tok, dtype=x.dtype)
    t = t.reshape(p.shape) if t.dim() else t.expand(p.shape)
    x.scatter_(1, p, t)


def _check_len(task: str, seq_len: int, need: int) -> None:
    if seq_len < need:
        raise ValueError(f"{task}: seq_len={seq_len} is too short; need >= {need}")


# --------------------------------------------------------------------------------------------
# the nine tasks


def mqar(n: int, seq_len: int, vocab: Vocab, gen: torch.Generator, n_pairs: int = 4, n_queries: int = 4):
    """Multi-query associative recall.

    `n_pairs` (key, value) pairs sit at random 2-token windows in the first half; `n_queries`
    queries `[QUERY, key]` (distinct keys among the pairs) sit at random 2-token windows in the
    second half, each labelled with its key's value at the key's position.
    """
    _check_len("mqar", seq_len, 4 * max(n_pairs, n_queries) + 2)
    if n_queries > n_pairs:
        raise ValueError(f"mqar: n_queries={n_queries} must be <= n_pairs={n_pairs}")
    x, y = _background(gen, n, seq_len, vocab)
    keys = vocab.key(_distinct(gen, n, vocab.n_keys, n_pairs))
    vals = vocab.value(_randint(gen, vocab.n_values, n, n_pairs))
    pos = _slots(gen, n, 0, seq_len // 2, 2, n_pairs)
    _put(x, pos, keys)
    _put(x, pos + 1, vals)
    which = _distinct(gen, n, n_pairs, n_queries)
    qpos = _slots(gen, n, seq_len // 2, seq_len, 2, n_queries)
    _put(x, qpos, QUERY)
    _put(x, qpos + 1, keys.gather(1, which))
    y.scatter_(1, qpos + 1, vals.gather(1, which))
    return x, y


def poly_recall(n: int, seq_len: int, vocab: Vocab, gen: torch.Generator, n_keys: int = 2):
    """Context-dependent recall: each of `n_keys` keys appears twice, as `[CTX0, k, v0]` and
    `[CTX1, k, v1]` (random 3-token windows); the query `[QUERY, CTXc, k]` at the end asks for
    v_c (labelled at the last position).
    """
    _check_len("poly_recall", seq_len, 3 * 2 * n_keys + 3 + 3)
    x, y = _background(gen, n, seq_len, vocab)
    keys = vocab.key(_distinct(gen, n, vocab.n_keys, n_keys))  # [n, K]
    vals = vocab.value(_randint(gen, vocab.n_values, n, 2, n_keys))  # [n, 2, K]
    pos = _slots(gen, n, 0, seq_len - 3, 3, 2 * n_keys).view(n, 2, n_keys)
    ctx = torch.tensor([CTX0, CTX1]).view(1, 2, 1).expand(n, 2, n_keys)
    _put(x, pos.reshape(n, -1), ctx.reshape(n, -1))
    _put(x, (pos + 1).reshape(n, -1), keys[:, None, :].expand(n, 2, n_keys).reshape(n, -1))
    _put(x, (pos + 2).reshape(n, -1), vals.reshape(n, -1))
    c = _randint(gen, 2, n)
    j = _randint(gen, n_keys, n)
    x[:, -3] = QUERY
    x[:, -2] = CTX0 + c
    x[:, -1] = keys.gather(1, j[:, None])[:, 0]
    y[:, -1] = vals[torch.arange(n), c, j]
    return x, y


def variable_tracking(n: int, seq_len: int, vocab: Vocab, gen: torch.Generator, hops: int = 2, n_distract: int = 2):
    """Pointer chasing: `a v` (a = v), then `b a` (b = a), `c b`, ... (`hops` copies), in time
    order, among `n_distract` other assignments `x w` of distinct variables to values; the query
    `[QUERY, last]` at the end asks for v. Assignments are 2-token windows `[lhs, rhs]`.
    """
    m = hops + 1 + n_distract
    _check_len("variable_tracking", seq_len, 2 * m + 2 + 2)
    if hops + 1 + n_distract > vocab.n_keys:
        raise ValueError(f"variable_tracking: hops+1+n_distract={m} > {vocab.n_keys} variable tokens")
    x, y = _background(gen, n, seq_len, vocab)
    var = vocab.key(_distinct(gen, n, vocab.n_keys, m))  # [n, m]: chain vars first, then distractors
    val = vocab.value(_randint(gen, vocab.n_values, n, m))
    rhs = val.clone()
    rhs[:, 1 : hops + 1] = var[:, :hops]  # chain: var[i] = var[i-1]
    # time order: chain assignments keep their order; distractors go anywhere
    pos = _slots(gen, n, 0, seq_len - 2, 2, m).sort(-1).values  # [n, m] increasing
    chain_slots = _distinct(gen, n, m, hops + 1).sort(-1).values  # which sorted slots hold the chain
    rest = torch.ones(n, m, dtype=torch.bool)
    rest.scatter_(1, chain_slots, False)
    other_slots = torch.nonzero(rest)[:, 1].view(n, n_distract) if n_distract else chain_slots[:, :0]
    order = torch.cat([chain_slots, other_slots], 1)  # assignment i -> sorted slot order[i]
    apos = pos.gather(1, order)
    _put(x, apos, var)
    _put(x, apos + 1, rhs)
    x[:, -2] = QUERY
    x[:, -1] = var[:, hops]
    y[:, -1] = val[:, 0]
    return x, y


def _bits_block(n, seq_len, vocab, gen, n_ops, pick_high):
    """Shared layout `[ops..., MARK]` at a random position before the final QUERY."""
    x, y = _background(gen, n, seq_len, vocab)
    ops = _randint(gen, pick_high, n, n_ops)  # data indices
    start = _randint(gen, seq_len - n_ops - 2, n)
    pos = start[:, None] + torch.arange(n_ops)
    _put(x, pos, vocab.data(ops))
    _put(x, start + n_ops, MARK)
    x[:, -1] = QUERY
    return x, y, ops, start


def local_xor(n: int, seq_len: int, vocab: Vocab, gen: torch.Generator):
    """`[a, b, MARK]` somewhere, `QUERY` at the end: TRUE iff the operands' bits (data index
    mod 2) differ."""
    _check_len("local_xor", seq_len, 6)
    x, y, ops, _ = _bits_block(n, seq_len, vocab, gen, 2, vocab.n_data)
    y[:, -1] = torch.where((ops[:, 0] + ops[:, 1]) % 2 == 1, TRUE, FALSE)
    return x, y


def parity(n: int, seq_len: int, vocab: Vocab, gen: torch.Generator, n_bits: int = 3):
    """A contiguous block of `n_bits` bit tokens (the first four data tokens; bit = index mod 2)
    followed by MARK; `QUERY` at the end: TRUE iff the block's parity is odd."""
    _check_len("parity", seq_len, n_bits + 4)
    x, y, ops, _ = _bits_block(n, seq_len, vocab, gen, n_bits, 4)
    y[:, -1] = torch.where(ops.sum(1) % 2 == 1, TRUE, FALSE)
    return x, y


def modulo_add(n: int, seq_len: int, vocab: Vocab, gen: torch.Generator, modulus: int = 16):
    """`[a, b, MARK]` with a, b among the first `modulus` data tokens; `QUERY` at the end is
    labelled with data token (a + b) mod `modulus`."""
    _check_len("modulo_add", seq_len, 6)
    if modulus > vocab.n_data:
        raise ValueError(f"modulo_add: modulus={modulus} > n_data={vocab.n_data} data tokens")
    x, y, ops, _ = _bits_block(n, seq_len, vocab, gen, 2, modulus)
    y[:, -1] = vocab.data(ops.sum(1) % modulus)
    return x, y


def palindrome(n: int, seq_len: int, vocab: Vocab, gen: torch.Generator):
    """`[a, b, c, MARK]`; `QUERY` at the end: TRUE iff a == c. Half the samples are positive;
    in a negative, c is uniform over the data tokens other than a; b is uniform."""
    _check_len("palindrome", seq_len, 7)
    x, y, ops, start = _bits_block(n, seq_len, vocab, gen, 3, vocab.n_data)
    pos_ = _randint(gen, 2, n).bool()
    other = (ops[:, 0] + 1 + _randint(gen, vocab.n_data - 1, n)) % vocab.n_data  # != a
    c = torch.where(pos_, ops[:, 0], other)
    x[torch.arange(n), start + 2] = vocab.data(c)
    y[:, -1] = torch.where(pos_, TRUE, FALSE)
    return x, y


def silence_gate(n: int, seq_len: int, vocab: Vocab, gen: torch.Generator):
    """`[ON|OFF, k, v]` somewhere; `[QUERY, k]` at the end is labelled v after ON, NULL after OFF
    (half each)."""
    _check_len("silence_gate", seq_len, 7)
    x, y = _background(gen, n, seq_len, vocab)
    on = _randint(gen, 2, n).bool()
    k = vocab.key(_randint(gen, vocab.n_keys, n))
    v = vocab.value(_randint(gen, vocab.n_values, n))
    start = _randint(gen, seq_len - 5, n)
    _put(x, start, torch.where(on, ON, OFF))
    _put(x, start + 1, k)
    _put(x, start + 2, v)
    x[:, -2] = QUERY
    x[:, -1] = k
    y[:, -1] = torch.where(on, v, NULL)
    return x, y


def mux(n: int, seq_len: int, vocab: Vocab, gen: torch.Generator):
    """`[SEL0|SEL1, a, b, MARK]` with a != b data tokens; `QUERY` at the end is labelled with
    the selected channel (a after SEL0, b after SEL1)."""
    _check_len("mux", seq_len, 7)
    x, y = _background(gen, n, seq_len, vocab)
    sel = _randint(gen, 2, n)
    ab = vocab.data(_distinct(gen, n, vocab.n_data, 2))
    start = _randint(gen, seq_len - 5, n)
    _put(x, start, SEL0 + sel)
    _put(x, start[:, None] + torch.arange(1, 3), ab)
    _put(x, start + 3, MARK)
    x[:, -1] = QUERY
    y[:, -1] = ab.gather(1, sel[:, None])[:, 0]
    return x, y


TASKS: dict[str, Callable] = {
    "mqar": mqar,
    "poly_recall": poly_recall,
    "variable_tracking": variable_tracking,
    "local_xor": local_xor,
    "parity": parity,
    "modulo_add": modulo_add,
    "palindrome": palindrome,
    "silence_gate": silence_gate,
    "mux": mux,
}


def task_params(task: str) -> dict:
    """The task's tunable parameters and their defaults, e.g. {'n_pairs': 4, 'n_queries': 4}."""
    fn = _task(task)
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if k not in ("n", "seq_len", "vocab", "gen")}


def _task(task: str) -> Callable:
    try:
        return TASKS[task]
    except KeyError:
        raise ValueError(f"task={task!r} is not one of {', '.join(TASKS)}") from None


def generate(task: str, n: int, *, seq_len: int, vocab: Vocab, gen: torch.Generator, **params):
    """Draw `n` samples of `task`.

    Returns:
        x: token ids `[n, seq_len]` (int64, CPU); y: labels `[n, seq_len]`, IGNORE off the queries.
    """
    fn = _task(task)
    bad = set(params) - set(task_params(task))
    if bad:
        raise ValueError(f"{task}: unknown parameter(s) {sorted(bad)}; known: {sorted(task_params(task))}")
    x, y = fn(n, seq_len, vocab, gen, **params)
    return x, y


# --------------------------------------------------------------------------------------------
# disjoint train / test streams


def stable_seed(*parts) -> int:
    """A 63-bit seed from any printable parts (stable across processes and machines)."""
    h = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def sequence_bucket(x: torch.Tensor) -> torch.Tensor:
    """Hash bucket in [0, HASH_BUCKETS) of each row of `x [N, T]`; equal rows share a bucket."""
    T = x.shape[1]
    w = torch.randint(1, 1 << 31, (T,), generator=torch.Generator().manual_seed(20260211))
    h = (x.to(torch.int64).cpu() % 4096 * w).sum(1)  # < 2^12 * 2^31 * T: no overflow for T < 2^20
    return (h % _HASH_PRIME) % HASH_BUCKETS


class TaskStream:
    """An endless seeded stream of one task's samples for one split ("train" or "test").

    A sequence lands in the test split iff `sequence_bucket(x) == 0`, so no sequence can occur
    in both splits; the splits also use different seed streams.

    Example::

        >>> s = TaskStream("mux", seq_len=64, vocab=Vocab(64), seed=0, split="test")
        >>> x, y = s.take(100)
        >>> bool((sequence_bucket(x) == 0).all())
        True
    """

    BLOCK = 1024

    def __init__(self, task: str, *, seq_len: int, vocab: Vocab, seed: int, split: str, params: dict | None = None):
        if split not in ("train", "test"):
            raise ValueError(f"split={split!r} must be 'train' or 'test'")
        _task(task)
        self.task, self.seq_len, self.vocab, self.split = task, seq_len, vocab, split
        self.params = dict(params or {})
        generate(task, 1, seq_len=seq_len, vocab=vocab, gen=torch.Generator().manual_seed(0), **self.params)  # validate
        self.gen = torch.Generator().manual_seed(stable_seed("prismbench.accuracy", task, seed, split))
        self._buf: tuple[torch.Tensor, torch.Tensor] | None = None

    def take(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next `n` samples: x, y `[n, seq_len]` (CPU, int64). The stream is drawn in fixed blocks
        of `BLOCK` candidates, so it does not depend on how it is consumed."""
        xs, ys, have = [], [], 0
        if self._buf is not None:
            xs.append(self._buf[0]); ys.append(self._buf[1]); have = len(self._buf[0])
            self._buf = None
        while have < n:
            x, y = generate(self.task, self.BLOCK, seq_len=self.seq_len, vocab=self.vocab, gen=self.gen, **self.params)
            keep = sequence_bucket(x) == 0
            if self.split == "train":
                keep = ~keep
            xs.append(x[keep]); ys.append(y[keep]); have += int(keep.sum())
        x, y = torch.cat(xs), torch.cat(ys)
        if len(x) > n:
            self._buf = (x[n:], y[n:])
        return x[:n], y[:n]
