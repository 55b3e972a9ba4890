# `make demo` and `make test` each do all set-up from a fresh clone (a .venv with the pinned
# requirements), then run. Nothing else needs installing by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: setup demo test test-slow lint check derivations clean

setup: $(STAMP)

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
