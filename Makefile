# The two quick-start commands: `make repro` (whole pipeline) and `make test` (the suite).
# Both create the virtual environment first if it is missing or out of date.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
# The torch build (README: Quick start). TORCH is the requirement; TORCH_INDEX, when set, the
# package index it comes from: https://download.pytorch.org/whl/cpu for the CPU-only build on
# any Linux machine, .../whl/cu<XYZ> (e.g. cu128) for the CUDA build pytorch.org lists for the
# driver. Unset, pip's own index decides (here it serves a CPU wheel; PyPI on Linux, a CUDA build).
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
MLFLOW_PORT ?= 5000
# test files run two at a time (pytest-xdist); a file's tests stay together, in one process
TEST_WORKERS ?= 2

# No phone-home: these hang or slow things down offline.
export GX_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export DVC_NO_ANALYTICS := 1
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup repro test ui clean image

# then the page `dvc plots show` fills in, with the Vega libraries inlined from vl-convert-python
# (docs/plots.md); a page that is current already is left as it is
setup: $(VENV)/.installed
	@$(BIN)/folio plots-template

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,eval]"
	touch $@

# then what was made (the registered version, val loss, bits/byte, time, what to run next): the
# last lines printed, after DVC's own notes, also when nothing had to rerun
repro: setup
	dvc repro
	@$(BIN)/folio summary

test: setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

ui: setup
	mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port $(MLFLOW_PORT)

# The container image (README: Container image; docs/container.md), built with podman or docker,
# whichever is on PATH (CONTAINER_ENGINE to choose). IMAGE_TARGET=cuda for the CUDA build;
# IMAGE_BUILD_ARGS for more, e.g. --build-arg BASE=<image with Python 3.11>.
IMAGE_TARGET ?= cpu
IMAGE ?= folio:$(IMAGE_TARGET)
IMAGE_BUILD_ARGS ?=
CONTAINER_ENGINE ?= $(firstword $(foreach tool,podman docker,$(if $(shell command -v $(tool)),$(tool))))

image:
	$(if $(CONTAINER_ENGINE),,$(error make image needs podman or docker and neither is on PATH; install one (apt-get install podman) or set CONTAINER_ENGINE))
	$(CONTAINER_ENGINE) build --target $(IMAGE_TARGET) -t $(IMAGE) -f Containerfile $(IMAGE_BUILD_ARGS) .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
