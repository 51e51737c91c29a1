#!/bin/bash
# One lent GPU's work for the GPU figures: the CUDA tests of the fast paths, then bench/bench_gpu.py,
# everything written under $OUT (default results/gpu-session). Sized for one device call of at most
# 10 minutes: tests capped at TEST_S seconds (default 150), the benchmark at BENCH_S (default 290).
#
#   ../shared/gpu/prepare-wheels.sh       # here, once: the wheels the device image lacks, into .whl
#   bash bench/gpu_session.sh             # on the device, from the repository root (carry .whl)
#
# Then put $OUT/gpu.md's tables into BENCHMARKS.md with the device, the date and this command.
#
# The tests' cap sends SIGINT (then SIGKILL 20 s later): pytest stops as on Ctrl-C and still prints its
# summary and the failures so far (-rfE) into the log. The benchmark skips its own precompile step
# (--precompile-workers 0) when the one beside the tests finished: the sections load those cubins
# from Triton's cache (same source, specialization, options, target and environment).
set -uo pipefail
OUT=${OUT:-results/gpu-session}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
# Triton's cache key includes this variable: one value for every process here (the current default)
export TRITON_DEFAULT_FP_FUSION=${TRITON_DEFAULT_FP_FUSION:-1}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
} > "$OUT/device.txt" 2>&1
cat "$OUT/device.txt"
# the benchmark's Triton variants compile into the cache on spare cores while the tests run
ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d '. ')
PRE_PID=""
if [ -n "$ARCH" ]; then
  timeout -k 10 "${TEST_S:-150}" python3 bench/static_kernels.py --arch "$ARCH" --precompile-workers 12 \
    > "$OUT/precompile.log" 2>&1 &
  PRE_PID=$!
fi
# the tests that need the device (marked gpu; the interpreter's are CI's): the compiled kernels
# against their references, the inline PTX on hardware, captured decode steps
timeout -s INT -k 20 "${TEST_S:-150}" python3 -m pytest -o addopts="" -p no:cacheprovider --import-mode=importlib \
  -q -rfE -m gpu tests/kernels tests/model/test_graphed_decode.py tests/model/test_moe_grouped.py \
  > "$OUT/gpu-tests.log" 2>&1
echo "GPU tests: rc $? (log: $OUT/gpu-tests.log)"
grep -E "^(FAILED|ERROR) " "$OUT/gpu-tests.log" | head -n 20
tail -n 3 "$OUT/gpu-tests.log"
PRE_RC=1  # no precompile beside the tests: bench_gpu runs its own
if [ -n "$PRE_PID" ]; then
  wait "$PRE_PID"  # the precompile (capped like the tests)
  PRE_RC=$?
  echo "precompile: rc $PRE_RC; $(tail -n 1 "$OUT/precompile.log" 2>/dev/null)"
fi
WORKERS=""  # cut short or failed: bench_gpu's own step compiles what is missing (its cap is in the budget)
if [ "$PRE_RC" -eq 0 ]; then
  WORKERS="--precompile-workers 0"  # all in Triton's cache: the sections load it
fi
# shellcheck disable=SC2086  # (WORKERS: none or two words)
python3 bench/bench_gpu.py --out "$OUT" --budget-s "${BENCH_S:-290}" $WORKERS
