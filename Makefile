# Two commands do all the set-up on a fresh machine:
#   make demo   installs keras-crl and trains CRL on the bundled digits data
#   make test   installs keras-crl and runs the test suite on all three backends
# Each backend runs in its own process: Keras picks its backend at import.

PYTHON ?= python3
BACKENDS ?= tensorflow torch jax
PYTEST = $(PYTHON) -m pytest -q -p no:cacheprovider

.PHONY: install demo lint test docs docs-serve docs-check bench mutants

install:
	# torch first and pinned: its CPU wheel; an unpinned torch pulls CUDA.
	$(PYTHON) -m pip install -q -c constraints.txt torch
	$(PYTHON) -m pip install -q -c constraints.txt -e ".[all,all-backends,keras-cv,keras-hub,ray,test,docs]"

demo: install
	keras-crl

# ruff, configured in pyproject.toml: lint, and the one formatter. ruff reads
# the source and imports none of it, so lint needs ruff alone, at its pin.
lint:
	$(PYTHON) -m pip install -q -c constraints.txt ruff
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

test: install
	set -e; for backend in $(BACKENDS); do \
	  echo "=== KERAS_BACKEND=$$backend"; \
	  KERAS_BACKEND=$$backend $(PYTEST) tests --ignore=tests/cross_backend; \
	done
	echo "=== cross-backend consistency (one process per backend)"
	$(PYTEST) tests/cross_backend

# The documentation site (mkdocs.yml, docs/): strict, so a broken link or an API
# name that no longer exists fails the build. site/ is the output.
docs: install
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs build --strict

docs-serve: install
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs serve

# The built site in headless Chromium: screenshots, missing assets, console
# errors (needs Debian's chromium; not in CI).
docs-check: docs
	$(PYTHON) docs/tools/check_site.py site docs-check

bench: install
	$(PYTHON) benchmarks/run.py

# Deliberate breakages the tests must catch (tests/mutants.py); slow, not in `make test`.
mutants: install
	$(PYTHON) tests/mutants.py
