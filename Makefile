# `make demo` and `make test` each do all set-up from a fresh clone (a .venv with the pinned
# requirements), then run. Nothing else needs installing by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: setup data demo test test-slow lint check derivations clean

setup: $(STAMP) data

# The embedded data: Debian's Fashion-MNIST and espeak-ng (installed with apt-get when run as root;
# otherwise a note says how), then the data sets the project builds or fetches from the registry.
data: $(STAMP)
	@if [ ! -d /usr/share/datasets/fashion-mnist ] || ! command -v espeak-ng >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist espeak-ng >/dev/null) \
	      || echo "note: apt-get could not install dataset-fashion-mnist/espeak-ng; those data sets will say how to get them"; \
	  else echo "note: run 'sudo apt-get install dataset-fashion-mnist espeak-ng' for Fashion-MNIST and spoken digits"; fi; \
	fi
	$(PY) -m practice_torch.data prepare

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: setup
	$(PY) -m theory_jax elbo vae --markdown build/derivations.md
	$(PY) -m shared_specs check elbo vae
	@echo
	@echo "derivations written to build/derivations.md; every claim and every spec case above passed."

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(PY) -m ruff check .

derivations: setup
	$(PY) -m theory_jax --all

check: setup
	$(PY) -m shared_specs check --all

clean:
	rm -rf build benchmarks/results
