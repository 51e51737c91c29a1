# evalsuite — set-up and entry points. A fresh clone needs two commands:
#   make eval MODEL=fp4     (creates .venv on first use, then runs the main job)
#   make test
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_VERSION := 2.13.0

MODEL ?= fp4
TASKS ?= all
LIMIT ?=
OUT ?= results/runs/$(subst :,_,$(subst /,_,$(MODEL)))
ARGS ?=
PYTEST_ARGS ?=

# A value as one shell word: model names carry URL fragments with '&' (openai:http://host/v1#model=M&api_key_env=V),
# and the default OUT is derived from them, so a bare $(MODEL) in a recipe would background half the command.
quote = '$(subst ','\'',$(1))'

# Debian packages: espeak-ng speaks the audio task's words, chromium renders pages in browser tests,
# tesseract-ocr is the cascade baseline's OCR specialist.
DEB_PACKAGES := espeak-ng chromium tesseract-ocr
DEB_COMMANDS := espeak-ng chromium tesseract

.PHONY: venv sysdeps eval test report list leaderboard gate bench bench-kernels bench-gpu bench-static sensitivity train serve clean-venv

venv: $(VENV)/.installed

# torch first, from its pinned version (a local CPU wheel here, the CUDA build on a GPU machine);
# the rest under a constraint that keeps it, so no dependency pulls a different torch.
$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q torch==$(TORCH_VERSION)
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	@touch $@

# Installs the Debian packages that are missing, when apt-get is usable (root or sudo); otherwise
# says which are missing and goes on (the tests that need them skip).
sysdeps:
	@missing=""; set -- $(DEB_COMMANDS); for pkg in $(DEB_PACKAGES); do \
	  command -v "$$1" >/dev/null 2>&1 || missing="$$missing $$pkg"; shift; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO=sudo; else SUDO=none; fi; \
	  if [ "$$SUDO" != none ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "warning: missing Debian packages:$$missing (install them with apt-get; tests needing them will skip)"; fi; \
	fi

eval: venv sysdeps
	$(PY) -m evalsuite run --model $(call quote,$(MODEL)) --tasks $(call quote,$(TASKS)) $(if $(LIMIT),--limit $(call quote,$(LIMIT))) --out $(call quote,$(OUT)) $(ARGS)

test: venv sysdeps
	$(PY) -m pytest $(PYTEST_ARGS)

report: venv
	$(PY) -m evalsuite report $(call quote,$(OUT))

list: venv
	$(PY) -m evalsuite list

leaderboard: venv
	$(PY) -m evalsuite leaderboard $(or $(RUNS),results/runs) --out $(or $(SITE),results/leaderboard)

gate: venv
	$(PY) -m evalsuite gate --baseline $(or $(BASELINE),results/baselines) --candidate $(or $(CANDIDATE),$(call quote,$(OUT))) --out $(or $(GATE_OUT),results/gate) $(ARGS)

# Each JSON is removed before its run: pytest-benchmark writes none when every benchmark is skipped
# (exit 5: an optional package missing, or deselected by PYTEST_ARGS), and an older run's file must not
# be published under today's date; report.py then says the section is left as it is.
bench: venv
	rm -f .benchmarks/media.json .benchmarks/hf_batch.json
	$(PY) -m pytest bench/test_bench_media.py -p no:cacheprovider --benchmark-enable --benchmark-json=.benchmarks/media.json -q -rs $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(PY) bench/report.py .benchmarks/media.json --section "Video decoding (media pipeline)" --command "make bench" --skip-missing
	$(PY) -m pytest bench/test_bench_hf_batch.py -p no:cacheprovider --benchmark-enable --benchmark-json=.benchmarks/hf_batch.json --benchmark-timer=time.process_time -q -rs $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(PY) bench/report.py .benchmarks/hf_batch.json --section "hf backend: batched generate vs one request at a time" --command "make bench" --skip-missing

bench-kernels: venv
	$(PY) bench/bench_kernels.py

# GEMM paths per format, the tiny engine and the full-size LM on a CUDA GPU (<= 5 min); writes
# results/bench/gpu.json and gpu.md. Without CUDA it says so and exits 0.
bench-gpu: venv
	$(PY) bench/bench_gpu.py $(ARGS)

# The decode kernels compiled for sm_90 on this machine, no GPU: registers, spills, load widths
# (results/bench/static.json); speed is bench-gpu's.
bench-static: venv
	$(PY) bench/static_kernels.py --json results/bench/static.json $(ARGS)

sensitivity: venv
	$(PY) bench/sensitivity.py $(ARGS)

serve: venv
	$(PY) -m evalsuite serve --model $(call quote,$(MODEL)) $(ARGS)

# into results/train/tiny, not over the committed checkpoint: a time-boxed or failed run must not replace
# the model every bf16/fp8/fp4 run loads (TRAIN_OUT=evalsuite/model/checkpoints/tiny to re-make it in place:
# that one trains over the committed files (--overwrite) and, once every stage is done, writes its table
# to BENCHMARKS.md (--bench); a run into another folder leaves BENCHMARKS.md alone)
TRAIN_OUT ?= results/train/tiny
COMMITTED_CHECKPOINT := evalsuite/model/checkpoints/tiny
REMAKE_ARGS = $(if $(filter $(abspath $(COMMITTED_CHECKPOINT)),$(abspath $(TRAIN_OUT))),--overwrite --bench)
train: venv sysdeps
	$(PY) -m evalsuite.training --preset tiny --out $(TRAIN_OUT) $(REMAKE_ARGS) $(ARGS)

clean-venv:
	rm -rf $(VENV)
