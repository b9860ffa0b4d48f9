"""PyTorch's CPU GroupNorm/BatchNorm timings for the shapes GroupNormBenchmark measures (median of N, steady state).

Usage: python3 torch_groupnorm.py THREADS ITERATIONS N,C,H,W[,G] ...   -> one line per shape:
shape fwd_ms fwdbwd_ms bn_fwdbwd_ms
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

        print(spec, median_ms(gn_forward, iterations), median_ms(gn_forward_backward, iterations),
              median_ms(bn_forward_backward, iterations), flush=True)


if __name__ == "__main__":
    main()
