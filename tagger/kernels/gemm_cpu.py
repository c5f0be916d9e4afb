"""Register-blocked matrix products for the recurrent layers (CPU).

A recurrent layer multiplies a small block of states by the same weight matrix at every step:
``(B, H) @ (H, 4H)`` forward and ``(B, 4H) @ (4H, H)`` backward, 40 or 50 times per batch. BLAS
(OpenBLAS here) packs the weight matrix again on every call, and at these sizes that packing and
its call overhead cost a third of the product: 41 us for ``32x128 @ 128x512`` on one core, where
the arithmetic alone takes 26 us at the core's rate. The kernels below pack the weights once per
call of a layer (:func:`pack_panels`) and then compute each product with a micro-kernel that holds
an ``MR x NR`` block of the result in vector registers over the whole inner dimension (the
classical GotoBLAS/BLIS scheme, without the blocking for large matrices that these sizes don't
need, except along a long inner dimension: see ``_K_BLOCK_BYTES``). Measured on one core against
OpenBLAS: ``32x128 @ 128x512`` 25 us instead of 41 us, ``64x1024 @ 1024x256`` 194 us instead of
269 us.

The micro-kernel is written in LLVM IR (a Numba intrinsic) because its point is to keep the
``MR x NR`` accumulators in registers, which loop code leaves to the optimiser's judgement. Its
vectors are as wide as the CPU's (64 bytes with AVX-512, else 32 bytes); LLVM splits them where
the target is narrower, so the code is correct on any CPU.

Layout. ``b`` is read as ``P`` panels of ``NR`` columns: element ``(k, p * NR + j)`` lies at
``p * pstride + k * ldb + j`` of a flat array. A packed ``(P, K, NR)`` array (:func:`pack_panels`)
is that layout with ``ldb = NR`` and ``pstride = K * NR``: every panel is contiguous. A row-major
``(K, N)`` matrix read in place is that layout too (``ldb = N``, ``pstride = NR``), but its
``NR``-wide slices, one row apart, fall into a few cache sets: even a single row times
``128 x 512`` took 5.2 us that way against 2.5 us packed (and 6.4 us for plain loops), so the
kernels pack even for one row. Packing ``128 x 512`` costs about 9 us, once per layer call.
"""

from __future__ import annotations

import llvmlite.binding as llvm_binding
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from ._jit import kernel


def _vector_bytes() -> int:
    """Width of the widest float vectors of the CPU the kernels are compiled for."""
    if numba.config.CPU_NAME and numba.config.CPU_NAME != "host":
        return 32  # a portable build (NUMBA_CPU_NAME=generic, ...): don't assume AVX-512
    try:
        features = llvm_binding.get_host_cpu_features()
        return 64 if features.get("avx512f", False) else 32
    except Exception:  # pragma: no cover - a platform where LLVM can't tell
        return 32


VECTOR_BYTES = _vector_bytes()

# Vectors per micro-kernel row (NR = V * lanes) and the largest number of rows it handles at once.
# 8 x 2 vectors keeps 16 accumulators: half of AVX-512's 32 registers, leaving room for the loaded
# vectors; with 16 registers (AVX2) 6 x 2 keeps 12. Measured on one core (AVX-512) for the products
# of the recurrent layers: 8 x 2 ahead of 4 x 4, 6 x 4 and 4 x 2 at every size.
_V = 2
MR = 8 if VECTOR_BYTES == 64 else 6


def _lanes(itemsize: int) -> int:
    return VECTOR_BYTES // itemsize


def packed_shape(K: int, N: int, dtype) -> tuple[int, int, int]:
    """Shape of :func:`packed` of a ``(K, N)`` matrix of ``dtype`` (for a caller that provides
    the array to :func:`pack_panels`)."""
    nr = _V * _lanes(np.dtype(dtype).itemsize)
    return ((N + nr - 1) // nr, K, nr)


def panel_width(arr):
    """Columns per panel (NR) for arrays of the dtype of ``arr`` (Numba-only)."""
    raise NotImplementedError("panel_width is only callable from compiled code")


@overload(panel_width)
def _panel_width_overload(arr):
    nr = _V * _lanes(np.dtype(arr.dtype.name).itemsize)
    return lambda arr: nr


def _make_micro_kernel(rows: int, split: int):
    """``c[cr:cr+rows, cc:cc+NR] (+)= a[ar:ar+rows, ak:ak+K] @ (panel of b at boff)``, any
    K >= 0: the result is added to ``c`` when ``accumulate`` is true (a later block of the inner
    dimension), else stored over it.

    ``split`` > 1 keeps that many sets of accumulators over interleaved values of k (summed at the
    end): with one or two rows, a single set is a chain of dependent multiply-adds whose latency,
    not the arithmetic, sets the pace.
    """

    @intrinsic
    def micro(typingctx, a, ar, ak, b, boff, ldb, K, c, cr, cc, accumulate):
        if not (isinstance(a, types.Array) and isinstance(b, types.Array)
                and isinstance(c, types.Array) and a.dtype == b.dtype == c.dtype
                and a.ndim == 2 and c.ndim == 2 and b.ndim == 1
                and a.dtype in (types.float32, types.float64)):
            return None
        sig = types.void(a, ar, ak, b, boff, ldb, K, c, cr, cc, accumulate)
        lanes = _lanes(np.dtype(a.dtype.name).itemsize)

        def codegen(context, builder, signature, args):
            a_v, ar_v, ak_v, b_v, boff_v, ldb_v, k_v, c_v, cr_v, cc_v, acc_v = args
            aty, _, _, bty, _, _, _, cty, _, _, accty = signature.args
            i64 = ir.IntType(64)
            ar_v, ak_v, boff_v, ldb_v, k_v, cr_v, cc_v = (
                context.cast(builder, v, t, types.int64)
                for v, t in zip((ar_v, ak_v, boff_v, ldb_v, k_v, cr_v, cc_v),
                                (signature.args[1], signature.args[2], signature.args[4],
                                 signature.args[5], signature.args[6], signature.args[8],
                                 signature.args[9]),
                                strict=True))
            acc_v = context.cast(builder, acc_v, accty, types.boolean)
            A = context.make_array(aty)(context, builder, a_v)
            Bm = context.make_array(bty)(context, builder, b_v)
            C = context.make_array(cty)(context, builder, c_v)
            item = context.get_value_type(aty.dtype)
            size = i64(np.dtype(aty.dtype.name).itemsize)
            # Element strides of a: rows and columns (a constant 1 where the layout fixes it,
            # so that LLVM folds it: a C-ordered a, or the transpose of one, F-ordered).
            a_strides = cgutils.unpack_tuple(builder, A.strides, 2)
            lda = i64(1) if aty.layout == "F" else builder.sdiv(a_strides[0], size)
            sda = i64(1) if aty.layout == "C" else builder.sdiv(a_strides[1], size)
            ldc = builder.sdiv(cgutils.unpack_tuple(builder, C.strides, 2)[0], size)
            vty = ir.VectorType(item, lanes)
            vptr = vty.as_pointer()
            suffix = f"v{lanes}f{8 * np.dtype(aty.dtype.name).itemsize}"
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vty, [vty, vty, vty]), f"llvm.fma.{suffix}")
            zero = ir.Constant(vty, [0.0] * lanes)
            splat = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
            undef = ir.Constant(vty, ir.Undefined)
            a_base = builder.gep(A.data, [builder.add(builder.mul(ar_v, lda),
                                                      builder.mul(ak_v, sda))])
            b_base = builder.gep(Bm.data, [boff_v])
            c_base = builder.gep(C.data, [builder.add(builder.mul(cr_v, ldc), cc_v)])
            align = int(size.constant)

            def c_ptr(r, v):
                ptr = builder.gep(c_base, [builder.add(builder.mul(i64(r), ldc), i64(v * lanes))])
                return builder.bitcast(ptr, vptr)

            def step(k, acc):
                """The products of inner index k added to ``acc`` [row][vector]."""
                b_row = builder.gep(b_base, [builder.mul(k, ldb_v)])
                bv = [builder.load(builder.bitcast(builder.gep(b_row, [i64(v * lanes)]), vptr),
                                   align=align) for v in range(_V)]
                out = []
                for r in range(rows):
                    av = builder.load(builder.gep(a_base, [builder.add(builder.mul(i64(r), lda),
                                                                       builder.mul(k, sda))]))
                    av = builder.shuffle_vector(
                        builder.insert_element(undef, av, ir.IntType(32)(0)), undef, splat)
                    out.append([builder.call(fma, [av, bv[v], acc[r][v]]) for v in range(_V)])
                return out

            def phis(incoming):
                """[row][vector] phi nodes with one incoming (value, block) list per entry."""
                nodes = [[builder.phi(vty) for _ in range(_V)] for _ in range(rows)]
                for value_of, block in incoming:
                    for r in range(rows):
                        for v in range(_V):
                            nodes[r][v].add_incoming(value_of(r, v), block)
                return nodes

            def zero_at(r, v):
                return zero

            entry = builder.block
            rem_check = builder.append_basic_block("micro.rem_check")
            rem = builder.append_basic_block("micro.rem")
            done = builder.append_basic_block("micro.done")
            if split > 1:
                # Few rows: `split` independent sets of accumulators over interleaved k, so that
                # more multiply-adds are in flight than one row's chain of dependent ones allows.
                main = builder.append_basic_block("micro.main")
                main_end = builder.append_basic_block("micro.main_end")
                builder.cbranch(builder.icmp_signed(">=", k_v, i64(split)), main, rem_check)
                builder.position_at_end(main)
                k = builder.phi(i64)
                k.add_incoming(i64(0), entry)
                sets = [phis([(zero_at, entry)]) for _ in range(split)]
                new_sets = [step(builder.add(k, i64(u)), sets[u]) for u in range(split)]
                k_next = builder.add(k, i64(split))
                k.add_incoming(k_next, main)
                for u in range(split):
                    for r in range(rows):
                        for v in range(_V):
                            sets[u][r][v].add_incoming(new_sets[u][r][v], main)
                more = builder.icmp_signed("<=", builder.add(k_next, i64(split)), k_v)
                builder.cbranch(more, main, main_end)
                builder.position_at_end(main_end)
                sums = [[new_sets[0][r][v] for v in range(_V)] for r in range(rows)]
                for u in range(1, split):
                    sums = [[builder.fadd(sums[r][v], new_sets[u][r][v]) for v in range(_V)]
                            for r in range(rows)]
                builder.branch(rem_check)
                builder.position_at_end(rem_check)
                k0 = builder.phi(i64)
                k0.add_incoming(i64(0), entry)
                k0.add_incoming(k_next, main_end)
                start = phis([(zero_at, entry), (lambda r, v: sums[r][v], main_end)])
            else:
                builder.branch(rem_check)
                builder.position_at_end(rem_check)
                k0 = builder.phi(i64)
                k0.add_incoming(i64(0), entry)
                start = phis([(zero_at, entry)])
            builder.cbranch(builder.icmp_signed("<", k0, k_v), rem, done)

            builder.position_at_end(rem)  # one k at a time (all of K when split == 1)
            k = builder.phi(i64)
            k.add_incoming(k0, rem_check)
            acc = phis([(lambda r, v: start[r][v], rem_check)])
            new = step(k, acc)
            k_next = builder.add(k, i64(1))
            k.add_incoming(k_next, rem)
            for r in range(rows):
                for v in range(_V):
                    acc[r][v].add_incoming(new[r][v], rem)
            builder.cbranch(builder.icmp_signed("<", k_next, k_v), rem, done)

            builder.position_at_end(done)
            final = phis([(lambda r, v: start[r][v], rem_check), (lambda r, v: new[r][v], rem)])
            # Accumulating: c's values are added once, after the loop (starting the accumulators
            # from them instead made LLVM keep one of them on the stack inside the loop).
            add = builder.append_basic_block("micro.add")
            store = builder.append_basic_block("micro.store")
            computed = builder.block
            builder.cbranch(acc_v, add, store)
            builder.position_at_end(add)
            added = [[builder.fadd(builder.load(c_ptr(r, v), align=align), final[r][v])
                      for v in range(_V)] for r in range(rows)]
            builder.branch(store)
            builder.position_at_end(store)
            final = phis([(lambda r, v: final[r][v], computed),
                          (lambda r, v: added[r][v], add)])
            for r in range(rows):
                for v in range(_V):
                    builder.store(final[r][v], c_ptr(r, v), align=align)
            return context.get_dummy_value()

        return sig, codegen

    return micro


# Accumulator sets for few rows: the multiply-add latency (4 cycles) times the issue rate (2 per
# cycle) asks for about 8 independent chains. Measured on one core, times 128 x 512: two rows 4.2 us
# with one set, 2.5 us with two; three rows 4.4 us and 2.9 us; one row 2.5 us either way (reading
# the 256 KB of weights from the L2 cache bounds it).
_SPLIT = {1: 4, 2: 2, 3: 2}
_micro1, _micro2, _micro3, _micro4, _micro5, _micro6, _micro7, _micro8 = (
    _make_micro_kernel(rows, _SPLIT.get(rows, 1)) for rows in range(1, 9))


@kernel()
def _micro(rows, a, ar, ak, b, boff, ldb, K, c, cr, cc, accumulate):
    """Dispatch to the micro-kernel for ``rows`` (1..8) rows."""
    if rows == 8:
        _micro8(a, ar, ak, b, boff, ldb, K, c, cr, cc, accumulate)
    elif rows == 7:
        _micro7(a, ar, ak, b, boff, ldb, K, c, cr, cc, accumulate)
    elif rows == 6:
        _micro6(a, ar, ak, b, boff, ldb, K, c, cr, cc, accumulate)
    elif rows == 5:
        _micro5(a, ar, ak, b, boff, ldb, K, c, cr, cc, accumulate)
    elif rows == 4:
        _micro4(a, ar, ak, b, boff, ldb, K, c, cr, cc, accumulate)
    elif rows == 3:
        _micro3(a, ar, ak, b, boff, ldb, K, c, cr, cc, accumulate)
    elif rows == 2:
        _micro2(a, ar, ak, b, boff, ldb, K, c, cr, cc, accumulate)
    else:
        _micro1(a, ar, ak, b, boff, ldb, K, c, cr, cc, accumulate)


# Rows of ``a`` taken per sweep over the panels: a block of 64 rows (up to 64 x 1024 floats) stays
# in the L2 cache while every panel of ``b`` passes over it.
_ROW_BLOCK = 64

# A long inner dimension (the weight gradients' products sum over every step of a batch: 3,200 at
# batch 64 x 50 steps) is taken in blocks whose slice of a panel, this many bytes, stays in the L1
# cache while the rows of ``a`` pass over it; read in one pass, each panel (200 KB there) came from
# the L2 cache at every row. Measured on one AVX2 core at batch 64 x 50, input 300, hidden 256:
# ``x^T d`` 36-41 ms before, 25 ms in blocks; ``h^T d`` 31-37 ms before, 21 ms (8 KB and 32 KB
# blocks were no faster). A product is blocked only when its inner dimension exceeds two blocks,
# so the recurrent steps' products (inner dimension = hidden size) and the input projections run
# as before.
_K_BLOCK_BYTES = 16384


@kernel(inner=True)
def panel_matmul(a, n, b, K, N, ldb, pstride, out):
    """``out[:n, :N] = a[:n, :K] @ b`` with ``b`` in the panel layout of the module docstring.

    Parameters
    ----------
    a : ndarray (>= n, >= K)
        Left factor, any strides (a transposed C-ordered matrix reads as well as a C-ordered one:
        the rows of a block are then adjacent).
    n : int
        Rows to compute.
    b : ndarray 1-D
        The right factor's elements (see the layout in the module docstring).
    K, N : int
        Inner dimension and columns.
    ldb, pstride : int
        Offsets in ``b`` between consecutive rows of a panel and between panels.
    out : ndarray (>= n, >= N)
        Result; rows at any stride, unit stride along a row. Columns past ``N`` are untouched.
    """
    nr = panel_width(a)
    full = N // nr
    kc = _K_BLOCK_BYTES // (nr * b.itemsize)
    if K <= 2 * kc:
        kc = max(K, 1)
    for k0 in range(0, max(K, 1), kc):
        kb = min(kc, K - k0)
        acc = k0 > 0
        for r0 in range(0, n, _ROW_BLOCK):
            r1 = min(n, r0 + _ROW_BLOCK)
            for p in range(full):
                boff = p * pstride + k0 * ldb
                r = r0
                while r < r1:
                    rows = min(MR, r1 - r)
                    _micro(rows, a, r, k0, b, boff, ldb, kb, out, r, p * nr, acc)
                    r += rows
    left = N - full * nr
    if left > 0:
        # The last, partial panel: through a tile, so that no store goes past column N. A packed
        # panel is zero-padded already; an unpacked one is copied so that no load goes past
        # the end of a row.
        boff = full * pstride
        if ldb == nr:
            tb = b[boff:boff + K * nr]
        else:
            tb = np.zeros(K * nr, dtype=b.dtype)
            for k in range(K):
                for j in range(left):
                    tb[k * nr + j] = b[boff + k * ldb + j]
        tile = np.empty((MR, nr), dtype=out.dtype)
        c0 = full * nr
        # Offsets as run-time integers like those of the loop above: literal constants here
        # would compile a second specialisation of _micro (0.25 s per layout of a).
        origin = left - left
        for r in range(0, n, MR):
            rows = min(MR, n - r)
            _micro(rows, a, r, origin, tb, origin, origin + nr, K, tile, origin, origin,
                   origin > 0)
            for i in range(rows):
                for j in range(left):
                    out[r + i, c0 + j] = tile[i, j]


@kernel(inner=True)
def pack_panels(m, out):
    """Copy ``m`` (K, N), any strides, into panels: ``out[p, k, j] = m[k, p * NR + j]``, zero
    past column ``N``. ``out`` is (ceil(N / NR), K, NR)."""
    K, N = m.shape
    P, _, nr = out.shape
    flat = out.reshape(out.size)
    full = N // nr
    if m.strides[0] < m.strides[1]:
        # Column-major m (the transpose of a C-ordered matrix): by tiles of 32 values of k, so
        # that the reads (down the columns) and the writes (along the panel rows) both stay in
        # a few cache lines; column by column it ran 6x slower.
        for p in range(full, P):
            flat[p * K * nr:(p + 1) * K * nr] = 0
        for p in range(P):
            c0 = p * nr
            width = min(nr, N - c0)
            for k0 in range(0, K, 32):
                k1 = min(K, k0 + 32)
                for k in range(k0, k1):
                    base = (p * K + k) * nr
                    for j in range(width):
                        flat[base + j] = m[k, c0 + j]
        return
    # Row by row of m (contiguous reads when m is C-ordered), scattered into the panels.
    for k in range(K):
        row = m[k]
        for p in range(full):
            base = (p * K + k) * nr
            c0 = p * nr
            for j in range(nr):
                flat[base + j] = row[c0 + j]
        for p in range(full, P):
            base = (p * K + k) * nr
            c0 = p * nr
            width = N - c0
            for j in range(width):
                flat[base + j] = row[c0 + j]
            for j in range(width, nr):
                flat[base + j] = 0


@kernel(inner=True)
def packed(m):
    """``m`` (K, N) packed into a new (ceil(N / NR), K, NR) array (see :func:`pack_panels`)."""
    K, N = m.shape
    nr = panel_width(m)
    out = np.empty(((N + nr - 1) // nr, K, nr), dtype=m.dtype)
    pack_panels(m, out)
    return out


@kernel(inner=True)
def matmul_packed(a, n, bp, N, out):
    """``out[:n, :N] = a[:n] @ m`` where ``bp = packed(m)`` and ``m`` has ``N`` columns."""
    K = bp.shape[1]
    nr = bp.shape[2]
    panel_matmul(a, n, bp.reshape(bp.size), K, N, nr, K * nr, out)
