#!/usr/bin/env python3
"""The PyTorch anchor of `npm run bench` (bench/pytorch.ts spawns it): the reference model trained
with nn.LSTM's CPU path, at one and at two threads, printing one JSON line on stdout.

  reference model: one-hot input [128, 60, 57] -> LSTM(128) -> Linear(57), softmax and categorical
  cross-entropy on the last position (F.cross_entropy on the logits is the two fused), RMSprop
  lr 0.01 with Keras's/TF.js's rho 0.9 and epsilon 1e-7; random data from a seed, as
  bench/tfjs-train.ts does (speed does not depend on the values).
  ten-minute model (--preset ten-minutes' shape, as bench/bench.ts times it): 2 x LSTM(256),
  dropout 0.3 on every layer's output (between the layers, and before the head: charlstm's
  inverted dropout), every one of the 60 positions scored; one batch at the best setting.

Threads: torch.set_num_threads sets ATen's OpenMP pool only. Debian's torch calls the system BLAS
(BLAS_INFO=generic, libblas.so.3), which for libopenblas0-pthread has its own thread pool sized to
the machine, so the script sets that pool too, through openblas_set_num_threads, and reports both
counts as the libraries give them back. The settings are timed window by window in turn, in this
one process, so that a change in the machine's load falls on all of them; each figure is the
median of its windows after a warm-up, and the best setting is the one with the highest median.

  /usr/bin/python3 bench/pytorch-train.py [--quick] [--seed 0] [--no-ten-minute] [--probe]
(--probe: only the versions and the BLAS, in a second; bench/pytorch.ts asks it before timing)
"""

import argparse
import ctypes
import json
import os
import statistics
import sys
import time

# libgomp reads this once, when torch loads it. Its default spins OpenMP's idle threads, which on
# two cores starves OpenBLAS's own threads: with both pools at 2 threads the reference model fell
# from about 1,900 to 60-570 seq/s here. PASSIVE lets them sleep; a value set by the caller stands.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402 (after the environment it reads)
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

V, H, T, B = 57, 128, 60, 128


def loaded_blas():
    """The BLAS library torch's products run on, as mapped into this process, and OpenBLAS's
    description of itself (None where the library is not OpenBLAS, e.g. the reference BLAS)."""
    a = torch.ones(64, 64)
    torch.mm(a, a)  # the BLAS is loaded with libtorch, but make sure it has been called
    paths = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and "blas" in os.path.basename(fields[5]).lower():
                if fields[5] not in paths:
                    paths.append(fields[5])
    for p in paths:
        try:
            lib = ctypes.CDLL(p)
            get_config = lib.openblas_get_config
        except (OSError, AttributeError):
            continue
        get_config.restype = ctypes.c_char_p
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return {
            "openblas": True,
            "library": p,
            "config": get_config().decode(),
            "core": lib.openblas_get_corename().decode(),
            "_lib": lib,
        }
    return {"openblas": False, "library": paths[0] if paths else None}


def set_threads(aten, blas_threads, blas):
    torch.set_num_threads(aten)
    if blas.get("_lib") is not None:
        blas["_lib"].openblas_set_num_threads(blas_threads)


def threads_now(blas):
    lib = blas.get("_lib")
    return {
        "torch": torch.get_num_threads(),
        "blas": lib.openblas_get_num_threads() if lib is not None else None,
    }


class Reference(nn.Module):
    def __init__(self, units, layers=1, dropout=0.0):
        super().__init__()
        # nn.LSTM's dropout acts between its layers; the last layer's output gets self.drop
        between = dropout if layers > 1 else 0.0
        self.lstm = nn.LSTM(V, units, num_layers=layers, batch_first=True, dropout=between)
        self.drop = nn.Dropout(dropout)
        self.dense = nn.Linear(units, V)

    def forward(self, x, every):
        out, _ = self.lstm(x)  # [B, T, units]
        out = out if every else out[:, -1]
        return self.dense(self.drop(out))


def make_step(units, layers, dropout, every, gen):
    model = Reference(units, layers, dropout)
    model.train()
    opt = torch.optim.RMSprop(model.parameters(), lr=0.01, alpha=0.9, eps=1e-7)
    ids = torch.randint(V, (B, T), generator=gen)
    x = F.one_hot(ids, V).float()  # the reference's one-hot input, built once like TF.js's
    y = torch.randint(V, (B, T) if every else (B,), generator=gen)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(x, every)
        loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        loss.backward()
        opt.step()
        return loss.item()  # a sync point, as trainOnBatch's loss read-back is

    return step


def timed_window(step, batches):
    t0 = time.perf_counter()
    for _ in range(batches):
        step()
    return (time.perf_counter() - t0) * 1000 / batches


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-ten-minute", action="store_true")
    ap.add_argument("--probe", action="store_true", help="print the versions and the BLAS only")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    blas = loaded_blas()
    if args.probe:
        blas.pop("_lib", None)
        python = sys.version.split()[0]
        print(json.dumps({"torch": torch.__version__, "python": python, "blas": blas}))
        return
    # (ATen threads, OpenBLAS threads): one core; both pools on both cores; and the products alone
    # on both cores with ATen's element-wise work serial. The last is this torch's default on two
    # cores here, and it avoids the collapse of the second: with both pools at 2, libgomp's
    # spin-waiting OpenMP threads contend with OpenBLAS's for the two cores.
    settings = [(1, 1), (2, 2), (1, 2)] if blas["openblas"] else [(1, 1), (2, 2)]
    # rounds of windows: at least 3, then more while the budget lasts (a loaded machine makes
    # every window slower; the anchor must not make the bench much longer)
    max_windows, per_window, budget_s = (3, 3, 0) if args.quick else (7, 5, 30)

    step = make_step(H, 1, 0.0, False, gen)
    set_threads(*settings[-1], blas)
    t0 = time.perf_counter()
    for _ in range(3):  # warm-up: allocator, OpenMP and BLAS pools
        step()
    warmup_ms = (time.perf_counter() - t0) * 1000 / 3
    ms = {s: [] for s in settings}
    start = time.perf_counter()
    for w in range(max_windows):
        if w >= 3 and time.perf_counter() - start > budget_s:
            break
        for s in settings:
            set_threads(*s, blas)
            step()  # one untimed batch after the switch: the pools resize
            ms[s].append(timed_window(step, per_window))
    train = []
    for s in settings:
        set_threads(*s, blas)
        got = threads_now(blas)  # what the libraries report, not what was asked
        train.append(
            {
                "torchThreads": got["torch"],
                "blasThreads": got["blas"],
                "seqPerSec": B * 1000 / statistics.median(ms[s]),
                "msPerBatch": [round(v, 2) for v in ms[s]],
            }
        )
    best = max(range(len(settings)), key=lambda i: train[i]["seqPerSec"])

    ten = None
    if not args.no_ten_minute:
        set_threads(*settings[best], blas)
        tm = dict(layers=2, units=256, dropout=0.3)
        tstep = make_step(tm["units"], tm["layers"], tm["dropout"], True, gen)
        tstep()  # warm-up
        tms = [timed_window(tstep, 1) for _ in range(2 if args.quick else 3)]
        ten = {
            **tm,
            "batch": B,
            "steps": T,
            "torchThreads": train[best]["torchThreads"],
            "blasThreads": train[best]["blasThreads"],
            "msPerBatch": statistics.median(tms),
        }

    blas.pop("_lib", None)
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "python": sys.version.split()[0],
                "blas": blas,
                "quick": args.quick,
                "ompWaitPolicy": os.environ["OMP_WAIT_POLICY"],
                "shape": {"batch": B, "steps": T, "units": H, "vocab": V},
                "warmupMs": warmup_ms,
                "train": train,
                "best": best,
                "tenMinuteModel": ten,
            }
        )
    )


if __name__ == "__main__":
    main()
