"""The patch-OT engine: argmin by chunked augmented matmul, dual ascent, patches and pyramids."""

import numpy as np
import ot
import pytest
import torch

from train.patch_ot import (
    OTConfig,
    PatchOTLoss,
    SemiDiscreteOT,
    extract_patches,
    gaussian_pyramid,
)


def test_chunked_argmin_equals_brute_force():
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(1000, 48, generator=g), torch.rand(300, 48, generator=g)
    engine = SemiDiscreteOT(y, chunk=128)  # 1000 rows in 8 chunks, the last one partial
    engine.psi = torch.randn(300, generator=g) * 0.5
    idx, val = engine.assign(x)
    cost = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1) - engine.psi[None, :]  # N x J
    brute_val, brute_idx = cost.min(1)
    assert torch.equal(idx, brute_idx)
    torch.testing.assert_close(val, brute_val, rtol=1e-5, atol=1e-4)


# The psi step must be small against the costs: ~1 for 48-D patches, ~0.005 in 2-D.
@pytest.mark.parametrize("dim, lr", [(2, 0.05), (48, 1.0)])
def test_dual_ascent_reaches_exact_ot_cost(dim, lr):
    g = torch.Generator().manual_seed(dim)
    x, y = torch.rand(300, dim, generator=g), torch.rand(200, dim, generator=g)
    cost = ot.dist(x.double().numpy(), y.double().numpy())  # squared Euclidean
    exact = ot.emd2(np.full(300, 1 / 300), np.full(200, 1 / 200), cost)
    engine = SemiDiscreteOT(y, chunk=64)
    for _ in range(20):
        engine.ascend(x, steps=100, lr=lr, batch=10**9)
    dual = engine.dual_value(x)
    # F(psi) is a lower bound of OT for every psi (weak duality), and ascent closes the gap.
    assert dual <= exact * (1 + 1e-5)
    assert dual >= 0.98 * exact


def test_loss_gradient_is_the_transport_displacement():
    g = torch.Generator().manual_seed(2)
    y = torch.rand(50, 12, generator=g)
    engine = SemiDiscreteOT(y)
    engine.psi = torch.rand(50, generator=g) * 0.1
    x = torch.rand(40, 12, generator=g, requires_grad=True)
    engine.loss(x).backward()
    sigma, _ = engine.assign(x.detach())
    torch.testing.assert_close(x.grad, 2 * (x.detach() - y[sigma]) / 40)


def test_loss_psi_step_is_the_exact_dual_gradient_step():
    g = torch.Generator().manual_seed(3)
    y, x = torch.rand(60, 12, generator=g), torch.rand(500, 12, generator=g)
    engine = SemiDiscreteOT(y)
    engine.psi = torch.rand(60, generator=g) * 0.1
    before = engine.psi.clone()
    expected_value = engine.loss(x)  # psi_lr 0: psi untouched
    assert torch.equal(engine.psi, before)
    # Brute-force argmin over all 500 rows: dF/dpsi_j = 1/J - #{i: sigma(i) = j} / N.
    sigma = (((x[:, None] - y[None]) ** 2).sum(-1) - before[None]).argmin(1)
    grad = 1 / 60 - torch.bincount(sigma, minlength=60).float() / 500
    value = engine.loss(x, psi_lr=0.5)
    torch.testing.assert_close(value, expected_value)  # the value uses psi from before the step
    torch.testing.assert_close(engine.psi, before + 0.5 * grad)


def test_loss_psi_step_keeps_the_dual_ascent_converging():
    # Few subsampled steps + the loss's exact step, as synth runs them, still reach the OT cost.
    g = torch.Generator().manual_seed(4)
    x, y = torch.rand(400, 48, generator=g), torch.rand(200, 48, generator=g)
    cost = ot.dist(x.double().numpy(), y.double().numpy())
    exact = ot.emd2(np.full(400, 1 / 400), np.full(200, 1 / 200), cost)
    engine = SemiDiscreteOT(y, chunk=64)
    for _ in range(300):
        engine.ascend(x, steps=5, lr=1.0, batch=100, generator=g)
        engine.loss(x, psi_lr=1.0)
    assert 0.97 * exact <= engine.dual_value(x) <= exact * (1 + 1e-5)


def test_periodic_patches_cover_every_pixel_and_wrap():
    img = torch.arange(2 * 5 * 7, dtype=torch.float32).reshape(1, 2, 5, 7)
    patches = extract_patches(img, 3, periodic=True)
    assert patches.shape == (5 * 7, 2 * 9)
    # The patch starting at the last pixel wraps to row 0 / column 0.
    last = patches[-1].reshape(2, 3, 3)
    assert last[0, 0, 0] == img[0, 0, 4, 6] and last[0, 2, 2] == img[0, 0, 1, 1]
    assert extract_patches(img, 3, periodic=False).shape == (3 * 5, 18)


def test_pyramid_halves_and_keeps_the_mean():
    img = torch.rand(1, 3, 64, 48)
    levels = gaussian_pyramid(img, 4, periodic=True)
    assert [tuple(lv.shape[-2:]) for lv in levels] == [(64, 48), (32, 24), (16, 12), (8, 6)]
    # A normalised blur with wrap-around keeps the mean exactly.
    torch.testing.assert_close(levels[-1].mean(), img.mean(), rtol=1e-5, atol=1e-6)


def test_exemplar_too_small_is_refused():
    with pytest.raises(ValueError, match="smaller than 32"):
        PatchOTLoss(torch.rand(1, 3, 20, 40), OTConfig(), True, torch.Generator())


def test_psi_steps_never_draw_more_rows_than_the_level_holds():
    """A level with fewer patches than psi_batch (256 at the coarsest level of a 128^2 synth)
    takes each of them once per step instead of drawing psi_batch rows with repeats."""
    ot = SemiDiscreteOT(torch.rand(50, 12), chunk=64)
    seen, assign = [], ot.assign

    def counting_assign(x):
        seen.append(x.shape[0])
        return assign(x)

    ot.assign = counting_assign
    ot.ascend(torch.rand(256, 12), steps=3, lr=1.0, batch=4096)
    assert seen == [256, 256, 256]
    ot.ascend(torch.rand(10000, 12), steps=2, lr=1.0, batch=4096)
    assert seen[3:] == [4096, 4096]


@pytest.mark.parametrize("periodic", [True, False])
def test_strided_patches_are_the_grid_subset_and_cover_pixels_evenly(periodic):
    img = torch.rand(1, 3, 12, 16)
    full = extract_patches(img, 4, periodic)
    n_x = 16 if periodic else 13
    for offset in [(0, 0), (1, 0), (1, 1)]:
        got = extract_patches(img, 4, periodic, stride=2, offset=offset)
        rows = [
            y * n_x + x
            for y in range(offset[0], 12 if periodic else 9, 2)
            for x in range(offset[1], n_x, 2)
        ]
        assert torch.equal(got, full[rows])
    if periodic:  # every pixel lies in (4 / 2)^2 = 4 of the strided patches
        ones = torch.zeros(1, 1, 12, 16, requires_grad=True)
        extract_patches(ones, 4, True, stride=2, offset=(1, 0)).sum().backward()
        assert torch.equal(ones.grad, torch.full_like(ones.grad, 4.0))
