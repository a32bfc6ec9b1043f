"""The shared torch pieces: MLP, the GRU variant, the device choice, running moments."""
import numpy as np
import pytest
import torch

from desim.policies.common import GRUNet, MLP, RunningMeanStd, device


def test_device_auto_is_cuda_when_present_else_cpu():
    assert device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert device("cpu").type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CPU twin: the tests above and below)")
def test_networks_run_on_cuda():
    net = MLP(59, 5).to("cuda")
    assert net(torch.zeros(4, 59, device="cuda")).device.type == "cuda"


def test_mlp_shapes_and_small_initial_outputs():
    torch.manual_seed(0)
    net = MLP(59, 5)
    out = net(torch.randn(32, 59))
    assert out.shape == (32, 5)
    assert out.abs().max() < 0.5  # out_gain 0.01: a near-uniform initial policy


def test_gru_sequence_equals_steps_and_reset_zeroes_the_belief():
    torch.manual_seed(0)
    net = GRUNet(7, 3, hidden=16)
    x = torch.randn(5, 4, 7)
    reset = torch.zeros(5, 4)
    reset[3, 1] = 1.0  # robot 1 starts a new episode at t=3
    seq, h_seq = net(x, net.initial(4), reset)
    h = net.initial(4)
    steps = []
    for t in range(5):
        o, h = net(x[t], h, reset[t])
        steps.append(o)
    assert torch.allclose(seq, torch.stack(steps), atol=1e-6) and torch.allclose(h_seq, h, atol=1e-6)
    # after a reset, robot 1's output depends only on what came after it
    x2 = x.clone()
    x2[:3, 1] = torch.randn(3, 7)
    seq2, _ = net(x2, net.initial(4), reset)
    assert torch.allclose(seq[3:, 1], seq2[3:, 1], atol=1e-6)
    assert not torch.allclose(seq[:3, 1], seq2[:3, 1])


def test_running_mean_std_matches_numpy_over_batches():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(1000, 2))
    r = RunningMeanStd(shape=(2,))
    for chunk in np.array_split(x, 7):
        r.update(chunk)
    assert np.allclose(r.mean, x.mean(0)) and np.allclose(r.std, x.std(0), rtol=1e-3)
