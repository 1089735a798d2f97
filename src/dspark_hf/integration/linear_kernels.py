"""Another float32 formulation of ``nn.Linear`` for a few rows: the weight as the left operand of the GEMM.

``F.linear(x, W)`` on a ``[1, S, in]`` input asks the BLAS for ``x @ W.T``: an ``S x in`` times ``in x out``
product. :func:`weight_major_linear` asks for the transposed product ``W @ x.T`` (``out x in`` times
``in x S``) and transposes the small result back. Both read the weight once and give the same sums in
another order of float32 additions (the result differs from ``F.linear``'s in the last bits, as one
GEMM kernel's result differs from another's). Which is faster depends on the BLAS, the CPU and ``S``:
with MKL on this project's AMD EPYC (one thread), ``F.linear`` computes 2 or 3 rows as 2 or 3
matrix-vector products (reading the weight 2 or 3 times), while ``W @ x.T`` streams the weight once
(:mod:`dspark_hf.integration.weight_major` measures it per target and row count).

One row is computed as two: ``W @ x.T`` with a single column is a matrix-vector product again, so the
row is padded with a zero row and the first column kept. Measured on this project's AMD EPYC (MKL, one
thread, 2026-12-05; the 211 linear layers of the bundled SmolLM2-135M in model order, one input row):
43.4 ms with ``F.linear``, 43.9 ms weight-major with one column, 33.4 ms padded (two rows: 32.3 ms);
``scripts/ab_one_row_linears.py``, ``docs/measurements/2026-12-05c/one_row_linears.log``.
"""

from __future__ import annotations

import torch


def weight_major_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` computed as ``(weight @ x.T).T`` (+ ``bias``), contiguous, ``x``'s
    leading shape kept."""
    flat = x.reshape(-1, x.shape[-1])
    if flat.shape[0] == 1:  # a one-column product is a matrix-vector one: pad to two columns, keep the first
        out = torch.mm(weight, torch.cat([flat, flat.new_zeros(1, flat.shape[1])]).t())[:, :1].t()
    else:
        out = torch.mm(weight, flat.t()).t()
    if bias is not None:
        out = out + bias
    return out.contiguous().reshape(*x.shape[:-1], weight.shape[0])
