"""The exact arithmetic of the integer engine: the rules every backend follows.

This docstring is normative (FORMAT.md points here): a backend whose tables differ from
the reference (tzip/engine/reference.py) in one bit breaks every archive.

Why integers. The decoder must compute the encoder's probabilities bit for bit, on
another machine, device, thread count and batch size. Float inference does not give
that (a row computed alone differs from the same row inside a batch). Integer values held
in floats do, as long as every operation on them is exact or a single correctly rounded
IEEE-754 operation.

The rules:

1. Every value that crosses a layer boundary is an integer (held in a float tensor).
   Activations and weights are int8 values in [-127, 127]; squared-ReLU activations into
   the second MLP matrix are in [0, 2**MLP_BITS - 1].
2. Products. A matrix product takes integer-valued float32 operands whose partial sums
   all stay below 2**24 (EXACT), so float32 holds every partial sum exactly and the sum is
   the same in any order, blocking, vectorisation or fused multiply-add. Longer inner
   dimensions are cut into pieces (exact_pieces) summed in float32 and added in float64,
   exact below 2**53. The same bound makes bf16 inputs with float32 accumulation exact.
3. Requantisation is round(acc * m / 2**shift) with m < 2**24, computed as
   floor(0.5 + acc * r) for the float64 r = m / 2**shift: acc * r is exact while
   |acc| * m < 2**52 (the shipped models stay below 2**49), so the addition rounds once,
   fused or not: this equals (acc*m + 2**(shift-1)) >> shift.
4. RMSNorm: round(x * inv / max(1, isqrt(sum(x**2) // d))), with an exact integer square
   root (isqrt) and the per-channel step inv as a float64 multiplier; the squares are
   exact in float64 and their sum is exact while below 2**53 (else summed in int64).
5. Softmax and the output distribution use integer exp tables: attention weights
   e = att_exp[max - z] (at most ATT_EXP_ONE = 2**13), output frequencies
   out_exp[max - z] (each in 1..2**16). Attention outputs are
   round(e @ V * m / 2**shift / sum(e)): e @ V and sum(e) are exact (float64, or float32
   in two parts e = hi * 2**b + lo, weight_split), then one multiply (exact) and one
   division (correctly rounded).
6. ALiBi penalties are whole multiples of integer slopes (table units per position), so
   the max over a query's keys is a max over integers.
7. Allowed elsewhere: single IEEE-754 operations on tensors (x*y, x/y, x+y, floor),
   which are correctly rounded on every platform. Not allowed: a division by a Python
   scalar (CUDA turns it into a reciprocal multiply), TF32 or reduced precision on any
   sum that can exceed its mantissa, fast-math flags that turn a division into a
   reciprocal multiply, and torch.compile unless a test shows bit equality.

Float64 and float32 rather than int64, because int64 multiplies and divides do not
vectorise on x86 CPUs. Compiled loops (tzip/engine/compiled/) may reassociate and
contract exactly where rule 2 makes any order give the same value.
"""
from __future__ import annotations

import numpy as np

EXACT = 1 << 24  # float32 holds every integer below this


def exact_pieces(K: int, xmax: int) -> list[slice]:
    """Pieces of an inner dimension K short enough that a float32 product of int8 weights
    and integers in [-xmax, xmax] sums exactly in any order (every partial sum < 2**24):
    the whole of K when it fits, else power-of-two lengths."""
    step = (EXACT - 1) // (127 * xmax)
    if K <= step:
        return [slice(0, K)]
    step = 1 << (step.bit_length() - 1)
    return [slice(k0, min(K, k0 + step)) for k0 in range(0, K, step)]


def weight_split(emax: int, n: int) -> int | None:
    """Bits b that cut attention weights 0 <= e <= emax into e >> b and e mod 2**b so that
    float32 products of either part with int8 values, summed over n keys, stay below 2**24
    (exact in any order); None when no cut does. Both parts stay <= 256, like every other
    matmul operand, so they are exact in bf16 and TF32 too. Float32 halves the bytes of a
    decoding step's value cache and runs the products faster than float64."""
    for b in range(max(1, emax.bit_length() - 9), emax.bit_length() + 1):
        if ((1 << b) - 1) * 127 * n >= EXACT:
            return None
        if (emax >> b) * 127 * n < EXACT:
            return b
    return None


def exact_matmul(x: np.ndarray, w: np.ndarray, xmax: int = 127,
                 out: np.ndarray | None = None) -> np.ndarray:
    """x @ w exactly for int8-valued float32 w (K, N) and integer x in [-xmax, xmax]:
    float32 (into out, when given) when one piece of K suffices, else float32 pieces
    added in float64 (rule 2)."""
    first, *rest = exact_pieces(w.shape[0], xmax)
    if not rest:
        return np.matmul(x, w, out=out)
    acc = (x[..., first] @ w[first]).astype(np.float64)
    for k in rest:
        acc += x[..., k] @ w[k]
    return acc
