# The two commands a newcomer needs:
#   make demo   install everything and run the main job on the default scenario
#   make test   install everything (test extras included) and run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_SCENARIO ?= scenarios/warehouse-small-event.toml

.PHONY: setup demo test quick bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the pinned CPU wheel first, so nothing below pulls a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/desim run $(DEMO_SCENARIO) --seed 1 --brain greedy

# the dashboard's browser test needs Debian's chromium and its driver (skipped without them)
test: setup
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
		|| echo "warning: could not install chromium; the dashboard browser test will be skipped"; fi
	$(VENV)/bin/pytest

quick: setup
	$(VENV)/bin/pytest -m "not slow"

bench: setup
	$(PY) bench/kernel.py

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
