"""Gradient and BatchNorm averaging over torch.distributed (gloo, 2 local processes, no Ray)."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pipeline import collective


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    x = torch.randn(8, 3, 5, 5)
    ref = torch.nn.BatchNorm2d(3)
    ref.weight.data.uniform_()
    model = collective.convert_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(3)))
    model[0].load_state_dict(ref.state_dict())
    whole = x.clone().requires_grad_()
    (ref(whole) ** 3).sum().backward()
    half = x[rank * 4 : (rank + 1) * 4].clone().requires_grad_()
    y = model(half)
    (y ** 3).sum().backward()
    collective.sum_([p.grad for p in model.parameters()])  # the loop averages; the sum is the whole batch's
    ok = {
        "output": torch.allclose(y, torch.nn.functional.batch_norm(x, None, None, ref.weight, ref.bias, True)[rank * 4 : (rank + 1) * 4], atol=1e-5),
        "input_grad": torch.allclose(half.grad, whole.grad[rank * 4 : (rank + 1) * 4], atol=1e-4),
        "weight_grad": torch.allclose(model[0].weight.grad, ref.weight.grad, atol=1e-3),
        "running_var": torch.allclose(model[0].running_var, ref.running_var, atol=1e-5),
        "running_mean": torch.allclose(model[0].running_mean, ref.running_mean, atol=1e-6),
        "divergence": collective.max_weight_divergence(model) == 0.0,
        "sum": collective.scalar_sum(rank + 1, torch.device("cpu")) == 3.0,
    }
    out.put((rank, ok))
    # Both ranks leave together, then skip the interpreter's teardown: gloo's
    # background threads can still be joinable when static destructors run, and
    # std::terminate then aborts a process whose results are already sent.
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)


def test_global_batchnorm_on_two_halves_equals_batchnorm_on_the_whole_batch():
    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    mp.start_processes(_worker, args=(_free_port(), out), nprocs=2, start_method="spawn")
    results = [out.get() for _ in range(2)]
    for rank, ok in results:
        assert all(ok.values()), (rank, ok)


def test_single_process_is_a_no_op():
    g = torch.ones(3)
    collective.mean_([g])
    assert torch.equal(g, torch.ones(3)) and collective.world_size() == 1
    bn = collective.convert_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm1d(4)))
    assert isinstance(bn[0], collective.GlobalBatchNorm)
    x = torch.randn(6, 4)
    assert torch.allclose(bn(x), torch.nn.functional.batch_norm(x, None, None, training=True), atol=1e-6)
