# The two commands of the README. Each sets up .venv on first use (scripts/setup.sh).
.PHONY: demo test lint setup

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/mer-live --demo

test: setup
	.venv/bin/python -m ruff check mer_live tests benchmarks harness
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/python -m ruff check mer_live tests benchmarks harness
