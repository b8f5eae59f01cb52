# `make demo` and `make test` build .venv on first use; nothing else needs installing by hand
# except ngspice (the reference simulator): `.ci/run` installs it on Debian.
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# A CPU build of torch, pinned: an unpinned torch pulls a multi-GB CUDA build.
TORCH   := torch==2.13.0

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet $(TORCH)
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/nodalnet demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile

bench: $(STAMP)
	$(VENV)/bin/nodalnet bench

clean:
	rm -rf $(VENV) build *.egg-info
