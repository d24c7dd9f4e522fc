# The two commands of the README. Each sets up .venv by itself and is safe to re-run.
.PHONY: demo test setup clean-demo

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

# Test files run in parallel worker processes (pytest-xdist), one file per worker at a time, so module-scoped
# fixtures are built once per file; -n auto takes one worker per core.
test: setup
	@.venv/bin/python -m pytest -q -n auto --dist loadfile

clean-demo:
	rm -rf demo-out
