"""Exact int8 products on the CPU's int8 dot-product units (AVX-512 VNNI), for numba.

int8 weights times int8 activations summed in int32 are exact in any order (every sum
of the shipped shapes stays far below 2**31), so the products can run on VPDPBUSD: 64
multiply-adds per instruction against the 16 of a float32 FMA. LLVM's vectoriser does not
emit it from a plain loop (it widens to int32 and uses VPMADDWD at best), so the kernel
here calls the instruction through numba intrinsics on a 512-bit vector type.

VPDPBUSD multiplies unsigned bytes by signed bytes, four at a time per int32 lane. The
activations x in [-127, 127] are passed as x + 128 in [1, 255], and 128 * (the sum of
each weight column) is subtracted afterwards (both exact integers). Activations wider
than a byte (the squared ReLU's, [0, 4095]) take VPDPWSSD (signed 16-bit pairs, 32
multiply-adds per instruction) on the same layout, two inputs per lane.

Weights are laid out once (`layout`): (K / g, Np * g) with g = 4 bytes (or 2 int16) per
int32 lane, Np the output count rounded up to a multiple of BLOCK, zeros in the padding;
inputs are padded with zeros to a multiple of g. The kernel runs tiles of ROWS rows x
BLOCK outputs in ROWS * BLOCK / 16 vector accumulators.

Only for CPUs with AVX-512 VNNI (`available()`): compiling the intrinsic elsewhere fails,
so nothing here is compiled unless the engine chose this backend.
"""
from __future__ import annotations

import functools

import numpy as np

from ... import jitcache

jitcache.prepare()  # numba's cache folder, before numba loads (tzip/jitcache.py)
from llvmlite import ir  # noqa: E402
from numba import types  # noqa: E402
from numba.core import cgutils  # noqa: E402
from numba.extending import intrinsic, models, register_model  # noqa: E402

from .kernels import jit  # noqa: E402

LANES = 16  # int32 lanes of a 512-bit vector
BLOCK = 32  # outputs per tile: two vectors
ROWS = 4  # rows per tile (8 accumulators, 4 broadcasts, 2 weight vectors: 14 registers)

_VEC = ir.VectorType(ir.IntType(32), LANES)


class I32x16(types.Type):
    """A 512-bit vector of 16 int32 lanes, held in a register."""

    def __init__(self):
        super().__init__(name="i32x16")


i32x16 = I32x16()


@register_model(I32x16)
class _I32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VEC)


NEEDS = ("avx512f", "avx512bw", "avx512vnni")


@functools.cache
def available() -> bool:
    """Whether numba compiles for a CPU with AVX-512 VNNI: this one's, unless
    NUMBA_CPU_NAME names another target (a portable cache), when only the features
    NUMBA_CPU_FEATURES lists count."""
    try:
        from numba.core import config
        if config.CPU_NAME and config.CPU_NAME != "host":
            listed = set((config.CPU_FEATURES or "").replace(" ", "").split(","))
            return all(f"+{f}" in listed for f in NEEDS)
        import llvmlite.binding as ll
        feats = ll.get_host_cpu_features()
        return all(feats.get(f) for f in NEEDS)
    except Exception:  # an LLVM that cannot say: the float32 products compute the same
        return False


def _ptr(context, builder, arrty, arr, offset):
    """The address of byte `offset` of an array's data."""
    ary = context.make_array(arrty)(context, builder, arr)
    data = builder.bitcast(ary.data, ir.PointerType(ir.IntType(8)))
    return builder.gep(data, [offset])


@intrinsic
def vzero(typingctx):
    def codegen(context, builder, sig, args):
        return ir.Constant(_VEC, None)
    return i32x16(), codegen


@intrinsic
def vload(typingctx, arr, offset):
    """64 bytes of arr's data from byte offset, as 16 int32 lanes."""
    def codegen(context, builder, sig, args):
        p = _ptr(context, builder, sig.args[0], args[0], args[1])
        return builder.load(builder.bitcast(p, ir.PointerType(_VEC)), align=1)
    return i32x16(arr, offset), codegen


@intrinsic
def vbroadcast(typingctx, arr, offset):
    """The 4 bytes of arr's data at byte offset, in every lane."""
    def codegen(context, builder, sig, args):
        p = _ptr(context, builder, sig.args[0], args[0], args[1])
        v = builder.load(builder.bitcast(p, ir.PointerType(ir.IntType(32))), align=1)
        one = builder.insert_element(ir.Constant(_VEC, None), v, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(one, ir.Constant(_VEC, None),
                                      ir.Constant(_VEC, [0] * LANES))
    return i32x16(arr, offset), codegen


@intrinsic
def vstore(typingctx, arr, offset, vec):
    """Store the 16 lanes at byte offset of arr's data."""
    def codegen(context, builder, sig, args):
        p = _ptr(context, builder, sig.args[0], args[0], args[1])
        builder.store(args[2], builder.bitcast(p, ir.PointerType(_VEC)), align=1)
        return context.get_dummy_value()
    return types.none(arr, offset, vec), codegen


def _dp(name: str):
    @intrinsic
    def dp(typingctx, acc, a, b):
        """acc + the lanes' dot products of a's and b's bytes (or int16 pairs)."""
        def codegen(context, builder, sig, args):
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [_VEC] * 3), name)
            return builder.call(fn, list(args))
        return i32x16(acc, a, b), codegen
    return dp


@intrinsic
def vadd(typingctx, a, b):
    """Lane-wise a + b."""
    def codegen(context, builder, sig, args):
        return builder.add(args[0], args[1])
    return i32x16(a, b), codegen


dpbusd = _dp("llvm.x86.avx512.vpdpbusd.512")  # u8 (a) x s8 (b), 4 per lane
dpwssd = _dp("llvm.x86.avx512.vpdpwssd.512")  # s16 x s16, 2 per lane


def _kernel(dp):
    @jit
    def product(x, w, offset, out):
        """out (S, N) float64 = x @ W - offset: x (S, Kp) uint8 (or int16) inputs padded to
        Kp = K / g * g, w (K / g, Np * g) the layout's weights (or int16), offset (Np,)
        int32 (128 * column sums for uint8 inputs, else zero)."""
        S, N = out.shape
        Kg = w.shape[0]
        row = x.strides[0]
        wrow = w.strides[0]
        Np = wrow // 4
        tmp = np.empty((ROWS, BLOCK), dtype=np.int32)
        for n0 in range(0, Np, BLOCK):  # a block's weights stay in L1 for all rows
            wo = n0 * 4
            for s0 in range(0, S, ROWS):
                r0 = s0 * row
                r1 = min(s0 + 1, S - 1) * row
                r2 = min(s0 + 2, S - 1) * row
                r3 = min(s0 + 3, S - 1) * row
                a0 = vzero()
                a1 = vzero()
                a2 = vzero()
                a3 = vzero()
                b0 = vzero()
                b1 = vzero()
                b2 = vzero()
                b3 = vzero()
                for k in range(Kg):
                    u = vload(w, k * wrow + wo)
                    v = vload(w, k * wrow + wo + 64)
                    x0 = vbroadcast(x, r0 + 4 * k)
                    x1 = vbroadcast(x, r1 + 4 * k)
                    x2 = vbroadcast(x, r2 + 4 * k)
                    x3 = vbroadcast(x, r3 + 4 * k)
                    a0 = dp(a0, x0, u)
                    a1 = dp(a1, x1, u)
                    a2 = dp(a2, x2, u)
                    a3 = dp(a3, x3, u)
                    b0 = dp(b0, x0, v)
                    b1 = dp(b1, x1, v)
                    b2 = dp(b2, x2, v)
                    b3 = dp(b3, x3, v)
                vstore(tmp, 0, a0)
                vstore(tmp, 64, b0)
                vstore(tmp, 128, a1)
                vstore(tmp, 192, b1)
                vstore(tmp, 256, a2)
                vstore(tmp, 320, b2)
                vstore(tmp, 384, a3)
                vstore(tmp, 448, b3)
                for r in range(min(ROWS, S - s0)):
                    for j in range(min(BLOCK, N - n0)):
                        out[s0 + r, n0 + j] = np.float64(tmp[r, j] - offset[n0 + j])
    return product


product_u8 = _kernel(dpbusd)
product_i16 = _kernel(dpwssd)


def layout(w: np.ndarray, wide: bool) -> tuple[np.ndarray, np.ndarray]:
    """A (K, N) int8-valued weight matrix -> (the kernel's weights, offset): g = 4 int8 per
    lane (uint8 inputs: offset = 128 * column sums) or, `wide`, 2 int16 (offset 0)."""
    K, N = w.shape
    g = 2 if wide else 4
    Kp, Np = -(-K // g) * g, -(-N // BLOCK) * BLOCK
    full = np.zeros((Kp, Np), dtype=np.int16 if wide else np.int8)
    full[:K, :N] = w
    out = np.ascontiguousarray(full.reshape(Kp // g, g, Np).transpose(0, 2, 1).reshape(Kp // g, Np * g))
    offset = np.zeros(Np, dtype=np.int32)
    if not wide:
        offset[:N] = 128 * w.astype(np.int64).sum(0)
    return out, offset


@jit
def to_u8(x, xu):
    """xu[:, :K] = x + 128 (x integers in [-127, 127]); the padding stays as it is (its
    weights are zero)."""
    for s in range(x.shape[0]):
        for k in range(x.shape[1]):
            xu[s, k] = np.uint8(np.int32(x[s, k]) + 128)


@jit
def to_i16(x, xw):
    """xw[:, :K] = x (integers that fit int16)."""
    for s in range(x.shape[0]):
        for k in range(x.shape[1]):
            xw[s, k] = np.int16(x[s, k])
