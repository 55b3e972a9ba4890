# `make demo` and `make test` each do all set-up from a fresh clone (a .venv with the pinned
# requirements), then run. Nothing else needs installing by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: setup data demo test test-args test-slow lint check exercise-check derivations notebooks docs site site-check site-setup \
	browser-setup \
	portability clean

setup: $(STAMP) data

# The embedded data: Debian's Fashion-MNIST and espeak-ng (installed with apt-get when run as root;
# otherwise a note says how), then the data sets the project builds or fetches from the registry, then
# the feature networks of FID/IS/KID on the two image sets the tests evaluate on (trained once, cached:
# about 2 minutes for Fashion-MNIST, which a test would otherwise spend).
FEATURES := $(or $(GENERATIVE_TWINS_DATA),$(HOME)/.cache/generative-twins)/features
data: $(STAMP)
	@if [ ! -d /usr/share/datasets/fashion-mnist ] || ! command -v espeak-ng >/dev/null 2>&1 \
	    || [ ! -f /usr/share/javascript/katex/katex.js ] || ! command -v node >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist espeak-ng \
	      libjs-katex $$(command -v node >/dev/null || echo nodejs) >/dev/null) \
	      || echo "note: apt-get could not install dataset-fashion-mnist/espeak-ng/libjs-katex; those data sets will say how to get them"; \
	  else echo "note: run 'sudo apt-get install dataset-fashion-mnist espeak-ng libjs-katex nodejs' for Fashion-MNIST, spoken digits and the math check"; fi; \
	fi
	$(PY) -m practice_torch.data prepare
	@for d in digits fashion_mnist; do test -f $(FEATURES)/$$d.safetensors || $(PY) -m practice_torch features $$d \
	  || echo "note: the $$d feature network was not trained; the first test or eval that needs it trains it"; done

# --no-cache-dir: torch's CUDA wheels are about 3 GB; a cached second copy of them has filled a CI disk.
$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-cache-dir -r requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

DEMO_RUN := runs/demo-vae

# The main job: a derivation, a model trained for real, its evaluation, and where to look.
demo: setup
	$(PY) -m theory_jax elbo --markdown build/elbo.md
	rm -rf $(DEMO_RUN)
	$(PY) -m practice_torch train vae --dataset fashion_mnist --preset quick --out $(DEMO_RUN)
	$(PY) -m practice_torch features fashion_mnist   # the feature network of FID/IS/KID (trained once, cached)
	$(PY) -m practice_torch eval $(DEMO_RUN)
	@echo
	@echo "samples:          $(DEMO_RUN)/samples/samples.png (also reconstructions.png, interpolation.png)"
	@echo "loss curve:       $(DEMO_RUN)/loss.png   metrics: $(DEMO_RUN)/metrics.jsonl   TensorBoard: $(DEMO_RUN)/events"
	@echo "derivation:       build/elbo.md"

# The default suite on one pytest-xdist worker per core (at most 4): each test file whole on one worker, but for the
# derivations and spec cases, spread one by one (tests/conftest.py).
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(max(1, min(4, len(os.sched_getaffinity(0)))))")

TEST_ARGS = -q -n $(TEST_WORKERS) --dist loadgroup --durations=15

test: setup
	$(PY) -m pytest $(TEST_ARGS)

test-args:  # make test's pytest arguments: `python -m benchmarks suite` runs them in a clone without its set-up
	@echo $(TEST_ARGS)

test-slow: setup site-setup browser-setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(PY) -m ruff check .

derivations: setup
	$(PY) -m theory_jax --all

# Every derivation as a Jupyter notebook, executed, with its figures: build/notebooks/<topic>.ipynb (twice the
# derivations' time: each is derived once to lay out its cells, then run in a fresh kernel).
notebooks: setup
	$(PY) -m theory_jax --all --notebook build/notebooks

# Every spec case, then every twin-training case (a short run in both trainers, compared step by step).
check: setup
	$(PY) -m shared_specs check --all
	$(PY) -m practice_jax check --all

# Your exercises (python -m theory_jax exercise NAME writes them into exercises/, or the folder --dir last named),
# every file checked in turn.
exercise-check: setup
	$(PY) -m theory_jax exercise --check

# Every derivation, spec case and twin-training case run again, then every generated table of README.md and docs/
# (about 8 minutes on 2 cores): docs/derivations/<topic>.md, docs/specs.json, docs/twin_training.json, the topic and
# results tables and the topic pages' blocks.
docs: setup
	$(PY) -m practice_jax check --all --record
	$(PY) -m shared_specs docs --derivations --specs

# The course as a static site, build/site (open build/site/index.html; no server or network needed): the lessons, the
# derivations with their figures, the executed notebooks (written first by `make notebooks` when a derivation changed,
# about 15 minutes on 2 cores), the exercises and the results. site-check then opens every page in headless Chromium.
SITE_STAMP := $(VENV)/.site-$(shell cksum requirements-site.txt | cut -d' ' -f1)
NOTEBOOKS_STAMP := build/notebooks/.written

site: setup site-setup $(NOTEBOOKS_STAMP)
	$(PY) -m shared_specs site

site-check: setup site-setup browser-setup $(NOTEBOOKS_STAMP)
	$(PY) -m shared_specs site --check

$(NOTEBOOKS_STAMP): $(shell find theory_jax -name '*.py' 2>/dev/null)
	$(PY) -m theory_jax --all --notebook build/notebooks
	@touch $@

# MkDocs and Selenium (requirements-site.txt) and Debian's KaTeX; for the checks, Debian's headless Chromium and its
# driver (apt-get as root; otherwise a note with the command).
site-setup: $(SITE_STAMP)
	@if [ ! -f /usr/share/javascript/katex/katex.js ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjs-katex >/dev/null; \
	  else echo "note: run 'sudo apt-get install libjs-katex' for the site's math"; fi; \
	fi

browser-setup:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "note: run 'sudo apt-get install chromium chromium-driver' for the site's browser check"; fi; \
	fi

$(SITE_STAMP): requirements-site.txt $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-cache-dir -r requirements-site.txt
	@rm -f $(VENV)/.site-*
	@touch $@

# Every derivation and spec case again under each setting that changes XLA's and torch's kernels (one thread; 128-bit
# vectors without FMA): a claim that holds only by one CPU's kernel choice fails here. Reports in build/portability.
portability: setup
	$(PY) -m shared_specs portability

clean:
	rm -rf build benchmarks/results
