# The two commands of the README. Each sets up .venv by itself and is safe to re-run.
.PHONY: demo test setup clean-demo

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	@.venv/bin/python -m pytest -q

clean-demo:
	rm -rf demo-out
