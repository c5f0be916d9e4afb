"""Every CUDA kernel compiles to PTX for float32 and float64, without a GPU: this catches typing
errors the simulator does not (it runs kernels as Python). Needs numba-cuda with the CUDA toolkit
wheels (``pip install ".[cuda]"``, or numba-cuda's ``cu12`` extra as ``.ci/run`` installs it);
skipped elsewhere, except where ``TAGGER_REQUIRE_PTX=1`` (``.ci/run`` sets it once it has installed
them), where missing wheels fail the test; skipped under the simulator."""

from __future__ import annotations

import os
import re

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM", "") not in ("", "0"):
    pytest.skip("the simulator does not compile kernels", allow_module_level=True)
cuda = pytest.importorskip("numba.cuda")

from numba import boolean, float32, float64, int8, int64, uint64  # noqa: E402


def _toolkit_present() -> bool:
    from tagger.kernels import rnn_cuda

    try:
        cuda.compile_ptx(rnn_cuda._copy_tail_kernel, (float32[:], float32[:], int64), cc=(7, 5))
    except Exception as exc:  # the toolkit wheels (NVRTC) are missing
        return "nvrtc" not in str(exc).lower() and "libnvvm" not in str(exc).lower()
    return True


def kernel_signatures(f):
    from tagger.kernels import crf_cuda as crf
    from tagger.kernels import pool_cuda as pool
    from tagger.kernels import rnn_cuda as k

    v, m, c, q, i, n = f[:], f[:, :], f[:, :, :], f[:, :, :, :], int64[:], int64
    dv, dm, dc = float64[:], float64[:, :], float64[:, :, :]
    return {
        pool._mean_pool_kernel: (c, i, m),
        pool._mean_pool_backward_kernel: (i, m, c),
        pool._max_pool_kernel: (c, i, m, int64[:, :]),
        pool._max_pool_backward_kernel: (int64[:, :], m, c),
        pool._attention_pool_kernel: (c, i, v, v, m, m, m),
        pool._attention_backward_kernel: (c, i, v, m, m, c, m, m, v),
        pool._sum_rows_kernel: (m, v, v, v),
        pool._zero_kernel: (v, v),
        crf._forward_backward_kernel: (c, int64[:, :], i, dm, dc, dc, dv, dv, boolean, c, dc, dm,
                                       dm),
        crf._reduce_kernel: (dc, dm, dm, m, v, v),
        crf._nll_kernel: (dv, dv, i, v),
        crf._copy_kernel: (dv, v),
        crf._viterbi_kernel: (c, i, dm, dc, int64[:, :, :], int64[:, :], v),
        k._gemm_kernel: (m, m, m, boolean, boolean, boolean),
        k._tiled_gemm(*k._gemm_geometry()): (m, m, m, c, boolean, boolean, boolean, n),
        k._tiled_gemm(4, 2, 4): (m, m, m, c, boolean, boolean, boolean, n),
        k._sum_splits_kernel: (c, m, boolean),
        k._column_sums_kernel: (m, v),
        k._copy_tail_kernel: (v, v, int64),
        k.smoke_kernel: (int64[:],),
        # The LSTM kernels take a leading direction axis (1, or 2 for a pair).
        k._lstm_forward_one_step: (n, n, n, boolean, i, c, m, c, c, boolean, q, q, q, q, c, c, q),
        k._lstm_forward_pad_kernel: (i, c, c, q, q, q, q, c, c),
        k._lstm_backward_gates_kernel: (n, n, n, i, c, boolean, q, q, q, q, c, c),
        k._lstm_backward_state_kernel: (n, n, n, n, boolean, boolean, i, c, boolean, q, c),
        k._zero_padding_kernel: (i, q),
        k._gru_forward_kernel: (i, m, v, v, m, boolean, c, c, c, c, m),
        k._gru_backward_kernel: (i, m, boolean, c, c, c, c, m, c, c, m),
        k._rnn_forward_kernel: (i, m, v, m, boolean, boolean, c, c, m),
        k._rnn_backward_kernel: (i, m, boolean, boolean, c, c, m, c, m),
        **resident_signatures(f),
    }


def resident_signatures(f):
    """The kernels of the device-resident engine: token features, element-wise pieces, heads,
    optimizer, the encoder-decoder's attention; and the language model's sampler."""
    from tagger.kernels import attention_cuda as at
    from tagger.kernels import crf_cuda as crf
    from tagger.kernels import lm_cuda as lm
    from tagger.kernels import ops_cuda as o
    from tagger.kernels import optim_cuda as op

    v, m, c, q, i, n = f[::1], f[:, ::1], f[:, :, ::1], f[:, :, :, ::1], int64[::1], int64
    im, dv, dm = int64[:, ::1], float64[::1], float64[:, ::1]
    return {
        lm._uniform_kernel: (uint64, n, dv),
        lm._sample_kernel: (boolean, m, m, c, c, m, m, m, v, m, m, i, n, n, float64, n,
                            int8[::1], uint64, i, v, v, v, int8[::1], dv, i),
        at._forward_kernel: (c, i, m, m, m),
        at._backward_kernel: (c, i, m, m, m, c, m, m),
        o._fill_kernel: (v, f),
        o._transpose_kernel: (m, m),
        o._take_rows_kernel: (m, i, m),
        o._tanh_kernel: (v, v),
        o._tanh_backward_kernel: (v, v, v),
        o._gather_kernel: (m, i, m, n),
        o._scatter_kernel: (i, m, n, m),
        o._copy_block_kernel: (m, n, m, n, n),
        o._directions_kernel: (q, c, boolean),
        o._word_offsets_kernel: (i, i),
        o._char_windows_kernel: (m, im, i, i, n, m),
        o._char_max_pool_kernel: (m, v, i, i, m, im),
        o._char_filter_grads_kernel: (m, im, m, m, v),
        o._char_table_grad_kernel: (im, i, i, n, m, im, m, m),
        o._dropout_kernel: (uint64, uint64, f, v),
        o._multiply_kernel: (v, v, v),
        o._add_kernel: (v, v, v),
        o._scale_kernel: (v, f),
        o._add_bias_kernel: (m, v),
        o._softmax_xent_kernel: (c, im, i, float64, dm, c),
        o._row_sums_kernel: (dm, dv),
        o._softmax_xent_rows_kernel: (m, i, dv, float64, dv, m),
        o._softmax_rows_kernel: (c, i, c),
        o._argmax_rows_kernel: (c, i, im),
        o._last_pool_kernel: (c, i, n, boolean, m),
        o._last_pool_backward_kernel: (i, n, boolean, m, c),
        op._sum_kernel: (v, dv, n),
        op._serial_sum_kernel: (v, dv, n),
        op._segment_sum_kernel: (v, im, dm),
        op._sum_rows_kernel: (dm, dv),
        op._adam_kernel: (v, v, v, v, f, f, f, f, f, f, f, f),
        op._sgd_kernel: (v, v, v, f, f, f, boolean, f),
        crf._log_params_kernel: (v, v, m, boolean[::1], boolean[::1], boolean[:, ::1], dm),
    }


def float64_by_design():
    """Kernels that accumulate in float64 on purpose (losses, norms, the CRF's log space, the
    sampler's probabilities)."""
    from tagger.kernels import lm_cuda as lm
    from tagger.kernels import ops_cuda as o
    from tagger.kernels import optim_cuda as op

    # The sampler draws from float64 probabilities, as the CPU sampler does.
    return {lm._uniform_kernel, lm._sample_kernel,
            o._softmax_xent_kernel, o._row_sums_kernel, o._softmax_xent_rows_kernel,
            op._sum_kernel, op._serial_sum_kernel, op._segment_sum_kernel, op._sum_rows_kernel}


def cooperative_signatures(f):
    """Kernels with a grid-wide barrier: compiling them links the device runtime, which needs a
    GPU's driver."""
    from tagger.kernels import rnn_cuda as k

    m, c, q, i, n = f[:, :], f[:, :, :], f[:, :, :, :], int64[:], int64
    return {
        k._lstm_forward_persistent: (n, n, n, boolean, i, c, m, c, c, boolean, q, q, q, q, c, c,
                                     q),
        k._lstm_backward_persistent: (n, n, n, n, boolean, boolean, i, c, c, boolean, q, q, q, q,
                                      c, c),
    }


@pytest.mark.parametrize("dtype", [float32, float64], ids=["float32", "float64"])
def test_every_kernel_compiles_to_ptx(dtype):
    if not _toolkit_present():
        message = "CUDA toolkit wheels (NVRTC, NVVM) not installed"
        if os.environ.get("TAGGER_REQUIRE_PTX", "") not in ("", "0"):
            # CI installs them: a skip there would hide every typing error in a CUDA kernel.
            pytest.fail(f"{message}; CI must compile the kernels", pytrace=False)
        pytest.skip(message)
    signatures = kernel_signatures(dtype)
    if cuda.is_available():
        signatures.update(cooperative_signatures(dtype))
    for kernel, signature in signatures.items():
        ptx, _ = cuda.compile_ptx(kernel, signature, cc=(7, 5))
        assert ".entry" in ptx, kernel
        if (dtype is float32 and not kernel.py_func.__module__.endswith("crf_cuda")
                and kernel not in float64_by_design()):
            # float32 kernels must not fall back to double precision arithmetic (the CRF works
            # in float64 on purpose, as on the CPU).
            doubles = re.findall(r"\w+(?:\.\w+)*\.f64\b", ptx)
            assert not doubles, (kernel, sorted(set(doubles)))
