"""Collapsed forward Laplacian: value, Jacobian and Laplacian of a JAX function in one forward pass.

The mathematics
---------------
Let f map x (D entries) to y and let v_1..v_K be directions (by default the D unit vectors). For
every intermediate array p of f we carry the *stack*

    (p,  J_k = d_k p for k = 1..K,  L = sum_k d2p[v_k, v_k]),

i.e. K first-order coefficients but ONE collapsed second-order coefficient. At the input,
J_k = v_k and L = 0; at the output, J_k are the directional derivatives (the Jacobian rows) and
L = sum_k d2f[v_k, v_k] (the Laplacian for unit vectors, tr(V^T H V) in general).

Why the sum over k can be pulled inside: for q = g(p) the chain rule gives, per direction,

    d_k q = g'(p)[d_k p],        d2q[v_k, v_k] = g''(p)[d_k p, d_k p] + g'(p)[d2p[v_k, v_k]].

The second-order part is *linear* in d2p[v_k, v_k] (through g'(p), the same for every k), so summing
over k commutes with it: L_q = g'(p)[L_p] + sum_k g''(p)[J_k, J_k]. Hence one second-order
coefficient suffices, given the K first-order ones. The propagation rules (`rules.py`,
`rules_elementwise.py`, `rules_dot.py`, `rules_linalg.py`, `rules_control.py`; the table from
primitive to rule is `registry.py`, listed in docs/rules.md) are:

- linear maps A (add, reshape, slicing, gathers, reductions, dot_general with a constant operand):
  J_k -> A J_k and L -> A L, applied once to the K + 1 rows (the last row of a stack is L, so a
  constant matmul is a single matmul over K + 1 stacked rows); from the input through products
  with constant matrices, sums, scalings and elementwise maps (an MLP of x) L stays a separate
  array (`rules.Rows`), so no product holds the L row of its input and output at once; broadcast
  and concatenate stay
  lazy so that concat([h, broadcast(mean), g]) @ W splits W, multiplies the mean before
  broadcasting and sends the dense pieces [h, g] through one product (`rules_dot.py`);
- elementwise g: J_k -> g'(p) J_k, L -> g'(p) L + g''(p) sum_k J_k^2;
- products a * b (mul, dot_general of two x-dependent operands, div via 1/b):
  J_k -> a J_b,k + J_a,k b, L -> a L_b + L_a b + 2 sum_k J_a,k J_b,k (one contraction over k);
- log|det A| (from one LU, M_k = A^-1 J_k): J -> tr(M_k), L -> tr(A^-1 L_A) - sum_k tr(M_k M_k);
- nested jaxprs (jit, custom_jvp/vjp, remat) are interpreted inline; scan, while and cond carry
  stacks through their bodies; any other primitive uses nested jvps of JAX's own rules (warned).

Arrays that do not depend on x carry no stack at all (symbolic zeros), so parameters and constants
cost nothing. Rules evaluate the primal (and residuals such as g'(p), g''(p), A^-1) in a primal
stage and return a `push` for the stacks (`engine.py`), so `chunk_size` runs only the pushes in a
`lax.fori_loop` over blocks of directions: the L contributions of the blocks simply add up.

Optional electron-wise sparsity (`electron_sparsity=True`, `rules_sparse.py`): for x = electron
positions (n, 3), per-electron intermediates carry 3 first-order rows and pair intermediates 6
instead of 3n, until a primitive without a sparse rule (e.g. a mean over electrons) densifies them.

Higher orders (`forward_operator`, `operator.py`, rules in `taylor.py`): any operator
sum_k w_k d^m f[v_k, ..., v_k] collapses the same way. Per direction the stack carries the Taylor
coefficients of the orders below m, and ONE weighted sum at order m, (m - 1) K + 1 rows in all
(standard Taylor mode: m K). The top order can be summed for the reason above: in Faa di Bruno's
formula d^m g(p) = sum over set partitions of {1..m} of g^(blocks)(p) prod_blocks p_|block|, the one
term with p_m is g'(p) p_m, linear in it with a factor shared by all k; Leibniz's rule for products
and the trace-log series of log|det| have the same shape. The linear, structural and control-flow
rules act on every row alike and are shared. The biharmonic Delta^2 f = sum_ij f_iijj needs mixed
fourth derivatives; from d4[e_i +- e_j] = f_iiii +- 4 f_iiij + 6 f_iijj +- 4 f_ijjj + f_jjjj,

    Delta^2 f = (4 - D)/3 sum_i d4[e_i] + 1/6 sum_{i<j} (d4[e_i + e_j] + d4[e_i - e_j]),

D^2 directions at order 4 (`biharmonic`). Randomised estimates (`stochastic_operator`): Gaussian
directions give E[d4[v]] = 3 Delta^2 f.

Public entry points: `forward_laplacian`, `forward_operator`, `biharmonic`, `stochastic_laplacian`,
`stochastic_operator`.
"""

from vmcjet.laplacian.engine import forward_laplacian
from vmcjet.laplacian.kinetic import make_kinetic_energy
from vmcjet.laplacian.methods import LAPLACIAN_METHODS, laplacian_method
from vmcjet.laplacian.operator import biharmonic, forward_operator
from vmcjet.laplacian.stochastic import stochastic_laplacian, stochastic_operator

__all__ = [
    "LAPLACIAN_METHODS",
    "biharmonic",
    "forward_laplacian",
    "forward_operator",
    "laplacian_method",
    "make_kinetic_energy",
    "stochastic_laplacian",
    "stochastic_operator",
]
