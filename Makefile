# pyward: the two commands a new user needs, plus benchmarks.
#   make demo   install pyward into .venv/ and run it on the bundled example
#   make test   ruff and mypy, then the whole test suite on Python 3.11, 3.12 and 3.13
#   make bench  startup and overhead benchmarks against plain python
.PHONY: demo test bench clean
DEMO_PYTHON ?= 3.11

demo:
	@bash scripts/demo $(DEMO_PYTHON)

test:
	@bash scripts/test

bench:
	@bash scripts/bench

clean:
	rm -rf .venv build src/*.egg-info src/pyward/_native/*.so .pyward
