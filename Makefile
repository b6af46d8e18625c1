# make demo   set everything up, fetch the data, train the main job
# make test   set everything up, fetch the data, run the tests
# Both are idempotent: a second run reuses .venv and the data cache ($PILLARS_HOME, default ~/.cache/pillars).

PYTHON ?= python3
VENV   ?= .venv
# The CPU build of torch; for a GPU, see "GPU" in the README. Where plain PyPI would give the CUDA build,
# add TORCH_INDEX=https://download.pytorch.org/whl/cpu.
TORCH  ?= torch==2.13.0
TORCH_INDEX ?=
PIP     = $(VENV)/bin/python -m pip --disable-pip-version-check -q
DATASETS = fashion-mnist mnist-5k digits efficientnet-lite0-imagenet sotu brown bible-web bible-es-en movie-reviews weather

.PHONY: setup data demo test clean
.DEFAULT_GOAL := demo

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -e ".[test]"
	touch $@

setup: $(VENV)/.installed

data: setup
	$(VENV)/bin/pillars data fetch $(DATASETS)

demo: data
	$(VENV)/bin/pillars train fashion-cnn

test: data
	$(VENV)/bin/python -m pytest -q --durations=10

clean:
	rm -rf $(VENV) *.egg-info
