# BitCPM4-0.5B validation report.   make report   |   make test
# Variables: PARAMS=params/<profile>.yaml  MODEL=<dir or hub id[@rev]>  RESUME=runs/<id>  ONLY="inference chinese"  PLATFORM=cpu|cuda|npu
SHELL := /bin/bash
.DEFAULT_GOAL := help
include scripts/pins.env

# the environment: VENV=...; else an activated project conda env / a Python that imports vllm_ascend; else .venv
VENV     ?= $(shell bash scripts/detect_env.sh)
PY       := $(firstword $(wildcard $(VENV)/bin/python $(VENV)/bin/python3) $(VENV)/bin/python)
PARAMS   ?= params/default.yaml
RUN      ?= runs/latest
PLATFORM ?= $(shell bash scripts/detect_platform.sh 2>/dev/null || echo cpu)
STAMP    := build/setup-stamps/$(PLATFORM)$(subst /,_,$(abspath $(VENV)))
PYTEST_ARGS ?=
LAB_PORT ?= 8888

.PHONY: help setup report render test test-fast lab stand-in clean-runs publish compare check-install

help:
	@echo "make report [PARAMS=params/x.yaml] [RESUME=runs/<id>] [ONLY='chapter ...']   run + render the report"
	@echo "make test                        unit, notebook and end-to-end tests"
	@echo "make setup [PLATFORM=cpu|cuda|npu]  the environment ($(VENV)) with the engine stack (implicit in the others)"
	@echo "make check-install [TARGETS='npu-aarch64 npu-x86_64-cp310 cuda cpu']  each platform's pins resolve (package index, no device; npu: cp310 + cp311)"
	@echo "make render [RUN=runs/<id>]      re-render a run's report.zh/en.html / .pdf and report.md"
	@echo "make lab                         JupyterLab with the project's kernel"
	@echo "make stand-in                    (re)train the small stand-in model into models/stand-in"
	@echo "make publish                     static site of runs/* in site/ (SHA-256 manifest; verify: cd site && sha256sum -c MANIFEST.sha256)"
	@echo "make compare RUNS=\"runs/a runs/b\" [OUT=dir]   runs side by side: environments, agreement per pair, key-metric ratios"
	@echo "detected platform: $(PLATFORM)"

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile scripts/setup_env.sh scripts/pins.env scripts/vllm_source.py scripts/preflight.py
	PLATFORM=$(PLATFORM) VENV=$(VENV) bash scripts/setup_env.sh
	@mkdir -p $(dir $@) && rm -f $(dir $@)$(PLATFORM)* && touch $@

# each platform's engine stack resolves on the package index (no device needed; CI runs it)
check-install:
	$(if $(wildcard $(PY)),$(PY),python3) scripts/check_install.py $(TARGETS)

report: $(STAMP)
	$(PY) -m bitcpm_validation run $(if $(RESUME),--resume $(RESUME),--params $(PARAMS)) $(if $(ONLY),--only $(ONLY)) $(if $(MODEL),--model $(MODEL)) $(if $(filter 1 yes true,$(ALLOW_PLATFORM_MISMATCH)),--allow-platform-mismatch)

render: $(STAMP)
	$(PY) -m bitcpm_validation render $(RUN)

compare: $(STAMP)
	$(PY) -m bitcpm_validation compare $(RUNS) $(if $(OUT),--out $(OUT))

publish: $(STAMP)
	$(PY) -m bitcpm_validation publish --runs runs --site site

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not e2e and not engine" $(PYTEST_ARGS)

lab: $(STAMP)
	@mkdir -p runs/lab
	$(VENV)/bin/jupyter lab --no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) \
	  --ServerApp.root_dir=$(CURDIR) --LabApp.default_url=/lab/tree/notebooks \
	  --MultiKernelManager.default_kernel_name=bitcpm-validation $(if $(filter 0,$(shell id -u)),--allow-root)

stand-in: $(STAMP)
	$(PY) -m bitcpm_validation.model.train_stand_in --out models/stand-in --seed 0

clean-runs:
	rm -rf runs/
