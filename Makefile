# make tour   set everything up and run the main job: `pillars tour` (15-30 minutes on 2 CPU cores)
# make test   set everything up, fetch the data, run the tests
# Both are idempotent: a second run reuses .venv and the data cache ($PILLARS_HOME, default ~/.cache/pillars).

PYTHON ?= python3
VENV   ?= .venv
# The CPU build of torch; for a GPU, see "GPU" in the README. Where plain PyPI would give the CUDA build,
# add TORCH_INDEX=https://download.pytorch.org/whl/cpu.
TORCH  ?= torch==2.13.0
TORCH_INDEX ?=
PIP     = $(VENV)/bin/python -m pip --disable-pip-version-check -q
DATASETS = fashion-mnist mnist-5k digits efficientnet-lite0-imagenet product-photos sotu brown bible-web bible-es-en bible-fr-en movie-reviews weather spoken-digits spoken-numbers stocks stock-indices neon-trees colin27 inception-fid

.PHONY: setup data tour demo browser test clean
.DEFAULT_GOAL := tour

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -e ".[test]"
	touch $@

setup: $(VENV)/.installed

data: setup
	$(VENV)/bin/pillars data fetch $(DATASETS)

tour: setup   # the tour fetches the data it needs
	$(VENV)/bin/pillars tour

# the web demo (the demo extra: Gradio) of a trained fashion-cnn, trained first if runs/fashion-cnn has none
demo: data
	$(PIP) install -e ".[demo]"
	test -f runs/fashion-cnn/model.safetensors || $(VENV)/bin/pillars train fashion-cnn --out runs/fashion-cnn
	$(VENV)/bin/pillars demo runs/fashion-cnn

# Headless Chromium for the test that opens the tour's report (Debian's chromium and chromium-driver);
# installed when make runs as root, the package lists refreshed once if they are stale.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null; }; \
	else echo "note: the report test needs chromium and chromium-driver: sudo apt-get install chromium chromium-driver"; fi

# two pytest workers of one thread each (never two 2-thread processes on 2 cores); a file's tests stay together
test: data browser
	OMP_NUM_THREADS=1 $(VENV)/bin/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=10

clean:
	rm -rf $(VENV) *.egg-info
