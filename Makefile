# Two commands do everything on a fresh clone: `make demo` and `make test`.
PY_SYS ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: setup demo test lint sim hil flash rig-flash bench fuzz soak clean

setup: $(STAMP) $(NODE_STAMP)

$(STAMP): pyproject.toml
	$(PY_SYS) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(PY) -m hil.demo

test: setup lint
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .
	bash tools/pyright.sh

sim: setup
	$(VENV)/bin/pumpsim --speed 1

# The HIL suites and the accuracy report, into reports/hil/ (SUMMARY.md first). On the
# simulator by default; a board with PUMP=port KEYS=file, its rig controller with RIG=port.
HIL_REPORT ?= reports/hil
hil: setup
	rm -rf $(HIL_REPORT)
	$(PY) -m pytest hil/suites -p no:cacheprovider --junitxml=$(HIL_REPORT)/junit.xml \
		--report $(HIL_REPORT) $(if $(PUMP),--pump $(PUMP)) $(if $(RIG),--rig $(RIG)) \
		$(if $(KEYS),--keys $(KEYS)) $(if $(TIME_SCALE),--time-scale $(TIME_SCALE))

flash: setup
	$(PY) -m host.deploy $(if $(PORT),--port $(PORT)) $(if $(KEYS),--keys $(KEYS))

# 1,000,000 random and mutated inputs into each of: the firmware's receive path (frame decoder
# and dispatcher), the host decoder and the schedule-file parser
fuzz: setup
	INTRAPUMP_FUZZ_CASES=1000000 $(PY) -m pytest tests/host/test_codec_property.py -k fuzz \
		-s -q --timeout 3600
	INTRAPUMP_SCHEDULE_FUZZ_CASES=1000000 $(PY) -m pytest tests/host/test_schedule_fuzz.py \
		-s -q --timeout 3600

# The rig controller's firmware (hil/rigctl) onto the rig's Pico (hil/RIG.md).
rig-flash: setup
	$(PY) -m hil.pico_rig flash $(if $(RIG),--port $(RIG))

# The model-based test (tests/model) with 10,000 random sequences instead of make test's 1,000.
soak: setup
	INTRAPUMP_MODEL_SEQUENCES=10000 $(PY) -m pytest tests/model -q --timeout 3600

bench: setup
	$(PY) -m hil.bench

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache .hypothesis
