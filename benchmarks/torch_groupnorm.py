"""PyTorch's CPU GroupNorm/BatchNorm timings for the shapes GroupNormBenchmark measures (median of N, steady state).

Usage: python3 torch_groupnorm.py THREADS ITERATIONS N,C,H,W[,G] ...   -> one line per shape:
shape fwd_ms fwdbwd_ms bn_fwdbwd_ms channels_last_fwdbwd_ms gn_relu_fwdbwd_ms gn_silu_fwdbwd_ms

channels_last: the same GroupNorm on x in torch.channels_last memory format; gn_relu / gn_silu: GroupNorm followed
by ReLU / SiLU as two modules (what a torch model runs), forward+backward.
"""
import statistics
import sys
import time

import torch


def median_ms(fn, iterations):
    warmup_end = time.perf_counter() + 1.0
    for i in range(1000):
        fn()
        if i >= 10 and time.perf_counter() > warmup_end:
            break
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main():
    threads, iterations = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(threads)
    for spec in sys.argv[3:]:
        n, c, h, w, g = (int(v) for v in spec.split(","))
        x = torch.randn(n, c, h, w, requires_grad=True)
        dy = torch.randn(n, c, h, w)
        x_cl = x.detach().to(memory_format=torch.channels_last).requires_grad_(True)
        dy_cl = dy.to(memory_format=torch.channels_last)
        gn = torch.nn.GroupNorm(g, c)
        bn = torch.nn.BatchNorm2d(c)

        def gn_forward():
            with torch.no_grad():
                gn(x)

        def gn_forward_backward():
            x.grad = None
            gn.zero_grad()
            gn(x).backward(dy)

        def bn_forward_backward():
            x.grad = None
            bn.zero_grad()
            bn(x).backward(dy)

        def gn_channels_last_forward_backward():
            x_cl.grad = None
            gn.zero_grad()
            gn(x_cl).backward(dy_cl)

        def gn_then(activation):
            def forward_backward():
                x.grad = None
                gn.zero_grad()
                activation(gn(x)).backward(dy)
            return forward_backward

        print(spec, median_ms(gn_forward, iterations), median_ms(gn_forward_backward, iterations),
              median_ms(bn_forward_backward, iterations), median_ms(gn_channels_last_forward_backward, iterations),
              median_ms(gn_then(torch.nn.functional.relu), iterations),
              median_ms(gn_then(torch.nn.functional.silu), iterations), flush=True)


if __name__ == "__main__":
    main()
