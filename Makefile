# Two commands do all set-up on a fresh machine:  make train  |  make test
# Each creates and fills .venv when it is missing (torch pinned to the 2.13.0 CPU wheel).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RAY_STAMP := $(VENV)/.installed-ray
# PyPI's Linux torch is a multi-GB CUDA build; PyTorch's CPU index has the same release as a
# CPU-only wheel (on every OS). Unreachable (as on an offline mirror), pip falls back to PyPI.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: train test lint notebooks figures clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --timeout 15 --retries 1 --index-url $(TORCH_INDEX) \
	  --extra-index-url https://pypi.org/simple -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The tests also cover the optional Ray backend (a3c train --backend ray), so they add its extra.
$(RAY_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,ray]'
	touch $(RAY_STAMP)

# Train Pong with the default preset until the greedy agent averages +18 (or 60 minutes), with
# the 4-frame stack model: it won first on every seed measured (README, benchmarks/results).
train: $(STAMP)
	$(BIN)/a3c train --env pong --model stack --target-score 18 --minutes 60

# Unit, integration and notebook tests (notebooks run in test mode: A3C_TEST_MODE=1); the Ray
# tests must run here, not skip (A3C_REQUIRE_RAY=1).
test: $(RAY_STAMP)
	$(BIN)/ruff check .
	A3C_TEST_MODE=1 A3C_REQUIRE_RAY=1 $(BIN)/python -m pytest --nbval-lax -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check .

# Re-execute every notebook in place (full budgets), so the committed outputs are fresh.
notebooks: $(STAMP)
	for nb in notebooks/[0-9]*.ipynb; do \
	  $(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=3600 $$nb || exit 1; \
	done

# Redraw the figures in images/ from real frames and committed results.
figures: $(STAMP)
	$(BIN)/python images/make_figures.py
	$(BIN)/python benchmarks/plot.py

clean:
	rm -rf $(VENV) build *.egg-info
