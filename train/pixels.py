"""The one pixel-optimisation loop behind synth, inpaint and blend (Alg. 1 and its variants).

Each outer iteration: the objective fits its potentials psi (no gradient) and returns the loss
for them, then one Adam step on the pixels along its exact gradient, and the pixels are clamped
to [0, 1]. The three commands differ only in what the parameter is (the whole image, or the
hole's pixels) and in the objective (one exemplar, the known part of the image, a weighted sum
over exemplars).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Objective = Callable[[torch.Tensor], torch.Tensor]
OnStep = Callable[[int, torch.Tensor, float], None]


def optimise_pixels(
    param: torch.Tensor,
    objective: Objective,
    iters: int,
    lr: float,
    on_step: OnStep | None = None,
    view: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run `iters` outer iterations on `param` (values in [0, 1], requires_grad) in place.

    `objective(param)` fits the potentials and returns the scalar loss; `on_step(iteration,
    image, loss)` runs after each iteration with `view(param)` (default: param itself) detached.
    A loss that is not finite stops with FloatingPointError naming the iteration.
    """
    opt = torch.optim.Adam([param], lr=lr)
    for it in range(iters):
        loss = objective(param)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            param.clamp_(0.0, 1.0)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"the loss became {value} at iteration {it + 1}")
        if on_step is not None:
            image = param.detach() if view is None else view(param.detach())
            on_step(it + 1, image, value)
    return param
