"""Cell-list neighbour search against brute force: exact pair sets, minimum image, symmetry, errors."""

from __future__ import annotations

import itertools

import pytest
import torch

from pdebench.solvers.sph import brute_force_pairs, neighbour_pairs, radius_graph_edge_index


def by_pair(i: torch.Tensor, j: torch.Tensor, disp: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs as sorted keys ``i * n + j`` (unique) and their displacements in that order."""
    key = i * n + j
    order = torch.argsort(key)
    return key[order], disp[order]


def assert_same_as_brute_force(x, radius, lower, upper, periodic=None):
    n = len(x)
    i, j, d = neighbour_pairs(x, radius, lower, upper, periodic)
    bi, bj, bd = brute_force_pairs(x, radius, lower, upper, periodic)
    key, disp = by_pair(i, j, d, n)
    bkey, bdisp = by_pair(bi, bj, bd, n)
    assert torch.unique(key).numel() == key.numel()  # no duplicate pair
    assert torch.equal(key, bkey)
    assert torch.equal(disp, bdisp)  # same floating-point operations: bit-identical
    assert (i != j).all()
    # Symmetry: (i, j) present iff (j, i), with opposite displacement.
    rkey, rdisp = by_pair(j, i, d, n)
    assert torch.equal(rkey, key) and torch.equal(rdisp, -disp)
    return i, j, d


def random_positions(n, lower, upper, seed):
    gen = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(lower, dtype=torch.float64), torch.tensor(upper, dtype=torch.float64)
    return lo + (hi - lo) * torch.rand(n, len(lower), generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("periodic", [None, [True, False], [True, True]])
def test_random_2d_matches_brute_force(periodic):
    lower, upper = [-0.5, 0.0], [1.5, 1.3]
    x = random_positions(1500, lower, upper, seed=1)
    i, _, _ = assert_same_as_brute_force(x, 0.07, lower, upper, periodic)
    assert i.numel() > 1500  # the test is not vacuous


@pytest.mark.parametrize("periodic", [None, [False, True, False], [True, True, True]])
def test_random_3d_matches_brute_force(periodic):
    lower, upper = [0.0, 0.0, 0.0], [1.0, 0.8, 0.6]
    x = random_positions(1200, lower, upper, seed=2)
    i, _, _ = assert_same_as_brute_force(x, 0.11, lower, upper, periodic)
    assert i.numel() > 1200


@pytest.mark.parametrize("periodic", [None, [True], [False]])
def test_random_1d_matches_brute_force(periodic):
    x = random_positions(400, [0.0], [2.0], seed=4)
    assert_same_as_brute_force(x, 0.03, [0.0], [2.0], periodic)


@pytest.mark.parametrize("periodic", [None, [True, True], [False, True]])
def test_lattice_on_cell_boundaries_and_box_edges(periodic):
    # Spacing = radius = 0.1 on [0, 1]: lattice rows at exactly the distance radius (excluded),
    # diagonals inside; points on the faces x = 0 and x = 1 (the same point when periodic). A second
    # lattice sits on the cell boundaries k/9 of the 9 cells the search cuts [0, 1] into.
    g = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    c = torch.arange(10, dtype=torch.float64) / 9
    x = torch.cat([torch.cartesian_prod(g, g), torch.cartesian_prod(c, c), torch.tensor([[1.0, 1.0], [0.0, 0.5]])])
    for radius in [0.1, 1 / 9, 0.15, 0.5]:
        assert_same_as_brute_force(x, radius, [0.0, 0.0], [1.0, 1.0], periodic)


def test_box_edges_are_neighbours_through_a_periodic_face():
    x = torch.tensor([[0.0, 0.5], [1.0, 0.5], [0.01, 0.2], [0.99, 0.2], [0.5, 0.5]], dtype=torch.float64)
    i, j, d = assert_same_as_brute_force(x, 0.1, [0.0, 0.0], [1.0, 1.0], [True, False])
    pairs = {(int(a), int(b)): d[k].tolist() for k, (a, b) in enumerate(zip(i, j))}
    assert set(pairs) == {(0, 1), (1, 0), (2, 3), (3, 2)}
    assert pairs[(0, 1)] == [0.0, 0.0]  # x = 0 and x = 1 are the same point
    assert pairs[(2, 3)] == pytest.approx([0.02, 0.0], abs=1e-15)  # minimum image, x_i - x_j
    assert pairs[(3, 2)] == pytest.approx([-0.02, 0.0], abs=1e-15)
    # Without periodicity all are far apart.
    i, _, _ = neighbour_pairs(x, 0.1, [0.0, 0.0], [1.0, 1.0])
    assert i.numel() == 0


def test_displacement_is_the_minimum_image_everywhere():
    lower, upper = [0.0, 0.0], [1.0, 2.0]
    x = random_positions(800, lower, upper, seed=5)
    i, j, d = neighbour_pairs(x, 0.12, lower, upper, [True, True])
    length = torch.tensor([1.0, 2.0], dtype=torch.float64)
    raw = x[i] - x[j]
    shift = (raw - d) / length
    assert torch.allclose(shift, torch.round(shift), atol=1e-12)  # differs by whole periods
    assert (d.abs() <= length / 2).all()
    assert (d.norm(dim=1) < 0.12).all()


def test_small_periodic_boxes_with_one_or_two_cells_do_not_duplicate_pairs():
    # Box of 2.5 radii -> 2 cells per axis; box of exactly 2 radii -> 1 cell.
    for length in [0.25, 0.2]:
        x = random_positions(300, [0.0, 0.0, 0.0], [length] * 3, seed=6)
        for periodic in itertools.product([False, True], repeat=3):
            assert_same_as_brute_force(x, 0.1, [0.0] * 3, [length] * 3, list(periodic))


def test_sparse_cell_table_for_many_more_cells_than_particles():
    # 1e9 cells for 500 particles: ranges by binary search instead of a dense table.
    lower, upper = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    x = random_positions(500, lower, upper, seed=7)
    x = torch.cat([x, x[:50] + 3e-4])  # some close pairs
    x = x.clamp(max=1.0)
    i, _, _ = assert_same_as_brute_force(x, 1e-3, lower, upper, [True, False, True])
    assert i.numel() >= 100


def test_empty_and_single_particle_and_float32():
    for n in [0, 1]:
        i, j, d = neighbour_pairs(torch.zeros(n, 2, dtype=torch.float64), 0.1, [0, 0], [1, 1])
        assert i.numel() == j.numel() == 0 and d.shape == (0, 2)
    x = random_positions(300, [0.0, 0.0], [1.0, 1.0], seed=8).float()
    i, j, d = assert_same_as_brute_force(x, 0.1, [0.0, 0.0], [1.0, 1.0])
    assert d.dtype == torch.float32 and i.dtype == torch.long


def test_tolerance_at_the_box_faces():
    lower, upper = [0.0, 0.0], [1.0, 1.0]
    x = torch.tensor([[-1e-12, 0.5], [1.0 + 1e-12, 0.5], [0.05, 0.5]], dtype=torch.float64)
    assert_same_as_brute_force(x, 0.1, lower, upper, [True, False])
    assert_same_as_brute_force(x, 0.1, lower, upper)


def test_bad_input_errors():
    lower, upper = [0.0, 0.0], [1.0, 1.0]
    x = torch.tensor([[0.5, 0.5], [0.2, 0.3], [1.2, 0.4]], dtype=torch.float64)
    for search in (neighbour_pairs, brute_force_pairs):
        with pytest.raises(ValueError, match=r"particle 2 at \[1\.2, 0\.4\] lies outside the box"):
            search(x, 0.1, lower, upper)
        with pytest.raises(ValueError, match=r"particle 1 at \[nan, 0\.3\]"):
            search(torch.tensor([[0.5, 0.5], [float("nan"), 0.3]], dtype=torch.float64), 0.1, lower, upper)
        for radius in [0.0, -0.1, float("inf"), float("nan")]:
            with pytest.raises(ValueError, match="radius must be positive"):
                search(x[:2], radius, lower, upper)
        with pytest.raises(ValueError, match=r"periodic axis 1 has box length 1 < 2 \* radius = 1\.2"):
            search(x[:2], 0.6, lower, upper, [False, True])
        with pytest.raises(ValueError, match="lower and upper need 2 entries"):
            search(x[:2], 0.1, [0.0], [1.0])
        with pytest.raises(ValueError, match="lower < upper"):
            search(x[:2], 0.1, [0.0, 1.0], [1.0, 1.0])
        with pytest.raises(ValueError, match="periodic needs 2 entries"):
            search(x[:2], 0.1, lower, upper, [True])
        with pytest.raises(ValueError, match=r"shape \(N, d\)"):
            search(torch.zeros(3, dtype=torch.float64), 0.1, lower, upper)
    # A non-periodic axis may be shorter than 2 radii.
    assert neighbour_pairs(x[:2], 0.6, lower, upper)[0].numel() == 2


def test_radius_graph_edge_index():
    x = random_positions(200, [0.0, 0.0], [1.0, 1.0], seed=9)
    i, j, d = neighbour_pairs(x, 0.15, [0.0, 0.0], [1.0, 1.0])
    edge_index = radius_graph_edge_index(i, j)
    assert edge_index.shape == (2, i.numel()) and edge_index.dtype == torch.long
    assert torch.equal(x[edge_index[1]] - x[edge_index[0]], d)  # target - source = x_i - x_j
    flipped = edge_index.flip(0)  # undirected: every edge appears reversed too
    assert torch.equal(torch.sort(edge_index[0] * 200 + edge_index[1]).values,
                       torch.sort(flipped[0] * 200 + flipped[1]).values)
    with pytest.raises(ValueError, match="equal length"):
        radius_graph_edge_index(i, j[:-1])
