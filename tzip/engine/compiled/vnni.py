"""Exact int8 products on the CPU's int8 dot-product units (AVX-512 VNNI or AVX-VNNI), for numba.

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
BLOCK outputs in ROWS * BLOCK / 16 vector accumulators, or of MANY rows where there are
that many (a compression pass's thousands of rows).

Only for CPUs with AVX-512 VNNI or AVX-VNNI (`available()`): compiling the intrinsic
elsewhere fails, so nothing here is compiled unless the engine chose this backend. With
AVX-VNNI alone (Intel's client CPUs from Alder Lake on), the kernels' 512-bit vectors are
compiled as pairs of 256-bit registers and each dot product as two VEX-encoded ones
(`wide()` says which): the same integers. On the developers' Xeon, compiled for an
AVX-VNNI-only target (NUMBA_CPU_NAME=alderlake, the AVX-512 features off), one decoding
step of 8 streams took 0.28 ms against 0.53 for the float32 step compiled for the same
target (0.17 on AVX-512).
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
ROWS = 4  # rows per tile for a few rows (8 accumulators, 4 broadcasts, 2 weight vectors)
MANY = 8  # rows per tile from 8 rows on (16 accumulators, 2 weight vectors, 1 broadcast)

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


NEEDS = ("avx512f", "avx512bw", "avx512vnni")  # the instructions on 512-bit registers
NEEDS_256 = ("avx2", "avxvnni")  # or AVX-VNNI: the same on 256-bit halves (VEX encoded)


@functools.cache
def _features() -> set[str] | None:
    """The features numba compiles for: this CPU's, unless NUMBA_CPU_NAME names another
    target (a portable cache), when only those NUMBA_CPU_FEATURES lists count; None
    where LLVM cannot say."""
    try:
        from numba.core import config
        if config.CPU_NAME and config.CPU_NAME != "host":
            listed = (config.CPU_FEATURES or "").replace(" ", "").split(",")
            return {f[1:] for f in listed if f.startswith("+")}
        import llvmlite.binding as ll
        return {f for f, on in ll.get_host_cpu_features().items() if on}
    except Exception:  # an LLVM that cannot say: the float32 products compute the same
        return None


def wide() -> bool:
    """Whether the dot products run on 512-bit registers (AVX-512 VNNI)."""
    feats = _features()
    return feats is not None and all(f in feats for f in NEEDS)


def available() -> bool:
    """Whether numba compiles for a CPU with int8 dot products: AVX-512 VNNI, or AVX-VNNI
    (the kernels' 512-bit vectors then run as two 256-bit halves)."""
    feats = _features()
    return feats is not None and (wide() or all(f in feats for f in NEEDS_256))


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


_HALF = ir.VectorType(ir.IntType(32), LANES // 2)


def _call_dp(builder, name: str, args: list) -> ir.Value:
    """The instruction `name` (vpdpbusd, vpdpwssd) on acc, a, b: one 512-bit call, or
    (AVX-VNNI) one per 256-bit half, joined."""
    if wide():
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [_VEC] * 3),
                                            f"llvm.x86.avx512.{name}.512")
        return builder.call(fn, args)
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_HALF, [_HALF] * 3),
                                        f"llvm.x86.avx512.{name}.256")
    undef = ir.Constant(_VEC, None)
    halves = []
    for part in (range(LANES // 2), range(LANES // 2, LANES)):
        mask = ir.Constant(ir.VectorType(ir.IntType(32), LANES // 2), list(part))
        halves.append(builder.call(fn, [builder.shuffle_vector(v, undef, mask) for v in args]))
    return builder.shuffle_vector(halves[0], halves[1], ir.Constant(_VEC, list(range(LANES))))


def _dp(name: str):
    @intrinsic
    def dp(typingctx, acc, a, b):
        """acc + the lanes' dot products of a's and b's bytes (or int16 pairs)."""
        def codegen(context, builder, sig, args):
            return _call_dp(builder, name, list(args))
        return i32x16(acc, a, b), codegen
    return dp


dpbusd = _dp("vpdpbusd")  # u8 (a) x s8 (b), 4 per lane
dpwssd = _dp("vpdpwssd")  # s16 x s16, 2 per lane


@intrinsic
def dot(typingctx, acc, a, b, inputs):
    """dpbusd for uint8 inputs (an array of them), dpwssd for int16 ones: one kernel
    source for both, compiled (and cached) once per input type."""
    name = {types.uint8: "vpdpbusd", types.int16: "vpdpwssd"}.get(getattr(inputs, "dtype", None))
    if name is None:
        return None

    def codegen(context, builder, sig, args):
        return _call_dp(builder, name, list(args[:3]))
    return i32x16(acc, a, b, inputs), codegen


@intrinsic
def vadd(typingctx, a, b):
    """Lane-wise a + b."""
    def codegen(context, builder, sig, args):
        return builder.add(args[0], args[1])
    return i32x16(a, b), codegen


@intrinsic
def vsub(typingctx, a, b):
    """Lane-wise a - b."""
    def codegen(context, builder, sig, args):
        return builder.sub(args[0], args[1])
    return i32x16(a, b), codegen


@intrinsic
def vstore_as(typingctx, arr, offset, vec):
    """Store the 16 lanes at byte offset of arr's data, converted to arr's dtype (float64,
    float32: exact for the integers the products give, or int32)."""
    to = {types.float64: ir.DoubleType(), types.float32: ir.FloatType()}.get(arr.dtype)

    def codegen(context, builder, sig, args):
        p = _ptr(context, builder, sig.args[0], args[0], args[1])
        v = args[2]
        if to is not None:
            v = builder.sitofp(v, ir.VectorType(to, LANES))
        builder.store(v, builder.bitcast(p, ir.PointerType(v.type)), align=4)
        return context.get_dummy_value()
    if to is None and arr.dtype != types.int32:
        return None
    return types.none(arr, offset, vec), codegen


@jit
def _few(x, w, offset, out):
    """Tiles of 4 rows x BLOCK outputs (a decoding step's few streams)."""
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
                a0 = dot(a0, x0, u, x)
                a1 = dot(a1, x1, u, x)
                a2 = dot(a2, x2, u, x)
                a3 = dot(a3, x3, u, x)
                b0 = dot(b0, x0, v, x)
                b1 = dot(b1, x1, v, x)
                b2 = dot(b2, x2, v, x)
                b3 = dot(b3, x3, v, x)
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
                    out[s0 + r, n0 + j] = tmp[r, j] - offset[n0 + j]

@jit
def _many(x, w, offset, out):
    """Tiles of MANY rows x BLOCK outputs: each loaded weight vector feeds 8 dot
    products, and whole tiles go to `out` straight from the accumulators (offset
    subtracted and converted in vector registers; the scalar tail loop of `_few` cost
    as much as the products for 128 inputs)."""
    S, N = out.shape
    Kg = w.shape[0]
    row = x.strides[0]
    wrow = w.strides[0]
    orow = out.strides[0]
    size = out.itemsize
    dense = out.strides[1] == size
    Np = wrow // 4
    tmp = np.empty((MANY, BLOCK), dtype=np.int32)
    for n0 in range(0, Np, BLOCK):
        wo = n0 * 4
        o0 = vload(offset, n0 * 4)
        o1 = vload(offset, n0 * 4 + 64)
        whole = dense and n0 + BLOCK <= N
        for s0 in range(0, S, MANY):
            r0 = s0 * row
            r1 = min(s0 + 1, S - 1) * row
            r2 = min(s0 + 2, S - 1) * row
            r3 = min(s0 + 3, S - 1) * row
            r4 = min(s0 + 4, S - 1) * row
            r5 = min(s0 + 5, S - 1) * row
            r6 = min(s0 + 6, S - 1) * row
            r7 = min(s0 + 7, S - 1) * row
            a0 = vzero()
            a1 = vzero()
            a2 = vzero()
            a3 = vzero()
            a4 = vzero()
            a5 = vzero()
            a6 = vzero()
            a7 = vzero()
            b0 = vzero()
            b1 = vzero()
            b2 = vzero()
            b3 = vzero()
            b4 = vzero()
            b5 = vzero()
            b6 = vzero()
            b7 = vzero()
            for k in range(Kg):
                u = vload(w, k * wrow + wo)
                v = vload(w, k * wrow + wo + 64)
                x0 = vbroadcast(x, r0 + 4 * k)
                a0 = dot(a0, x0, u, x)
                b0 = dot(b0, x0, v, x)
                x1 = vbroadcast(x, r1 + 4 * k)
                a1 = dot(a1, x1, u, x)
                b1 = dot(b1, x1, v, x)
                x2 = vbroadcast(x, r2 + 4 * k)
                a2 = dot(a2, x2, u, x)
                b2 = dot(b2, x2, v, x)
                x3 = vbroadcast(x, r3 + 4 * k)
                a3 = dot(a3, x3, u, x)
                b3 = dot(b3, x3, v, x)
                x4 = vbroadcast(x, r4 + 4 * k)
                a4 = dot(a4, x4, u, x)
                b4 = dot(b4, x4, v, x)
                x5 = vbroadcast(x, r5 + 4 * k)
                a5 = dot(a5, x5, u, x)
                b5 = dot(b5, x5, v, x)
                x6 = vbroadcast(x, r6 + 4 * k)
                a6 = dot(a6, x6, u, x)
                b6 = dot(b6, x6, v, x)
                x7 = vbroadcast(x, r7 + 4 * k)
                a7 = dot(a7, x7, u, x)
                b7 = dot(b7, x7, v, x)
            if whole and s0 + MANY <= S:
                p = s0 * orow + n0 * size
                h = 16 * size
                vstore_as(out, p, vsub(a0, o0))
                vstore_as(out, p + h, vsub(b0, o1))
                p += orow
                vstore_as(out, p, vsub(a1, o0))
                vstore_as(out, p + h, vsub(b1, o1))
                p += orow
                vstore_as(out, p, vsub(a2, o0))
                vstore_as(out, p + h, vsub(b2, o1))
                p += orow
                vstore_as(out, p, vsub(a3, o0))
                vstore_as(out, p + h, vsub(b3, o1))
                p += orow
                vstore_as(out, p, vsub(a4, o0))
                vstore_as(out, p + h, vsub(b4, o1))
                p += orow
                vstore_as(out, p, vsub(a5, o0))
                vstore_as(out, p + h, vsub(b5, o1))
                p += orow
                vstore_as(out, p, vsub(a6, o0))
                vstore_as(out, p + h, vsub(b6, o1))
                p += orow
                vstore_as(out, p, vsub(a7, o0))
                vstore_as(out, p + h, vsub(b7, o1))
            else:
                vstore(tmp, 0, a0)
                vstore(tmp, 64, b0)
                vstore(tmp, 128, a1)
                vstore(tmp, 192, b1)
                vstore(tmp, 256, a2)
                vstore(tmp, 320, b2)
                vstore(tmp, 384, a3)
                vstore(tmp, 448, b3)
                vstore(tmp, 512, a4)
                vstore(tmp, 576, b4)
                vstore(tmp, 640, a5)
                vstore(tmp, 704, b5)
                vstore(tmp, 768, a6)
                vstore(tmp, 832, b6)
                vstore(tmp, 896, a7)
                vstore(tmp, 960, b7)
                for r in range(min(MANY, S - s0)):
                    for j in range(min(BLOCK, N - n0)):
                        out[s0 + r, n0 + j] = tmp[r, j] - offset[n0 + j]


@jit
def product(x, w, offset, out):
    """out (S, N) (float64, float32 or int32) = x @ W - offset: x (S, Kp) uint8 (or
    int16) inputs padded to Kp = K / g * g, w (K / g, Np * g) the layout's weights
    (or int16), offset (Np,) int32 (128 * column sums for uint8 inputs, else zero)."""
    if out.shape[0] >= MANY:
        _many(x, w, offset, out)
    else:
        _few(x, w, offset, out)


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
