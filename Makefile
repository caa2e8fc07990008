# Thin targets; every one creates .venv from requirements.txt when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# nbgrader runs `alembic` from PATH when it creates a gradebook.
export PATH := $(CURDIR)/$(BIN):$(PATH)
LABS   := $(notdir $(wildcard solutions/lab*))

.PHONY: help venv system-deps book test test-fast lab release student grade collect export check-lab bench clean

help:
	@echo "make book      build the Jupyter Book (chapters executed) into _build/html"
	@echo "make test      run the whole pytest suite (slow tests included)"
	@echo "make test-fast run the unit tests only (-m 'not slow')"
	@echo "make lab       start JupyterLab with the nbgrader extension"
	@echo "make release   regenerate labs/ from solutions/ with nbgrader"
	@echo "make student   build the student edition in dist/student/ and dist/mlsec-student.zip (UNLOCK=lab...: ship those labs' references)"
	@echo "make grade     autograde the new or changed submissions in grading/submitted/ (WORKERS=N, SCHEDULER=tcp://host:8786)"
	@echo "make collect   import an LMS download: LAB=<lab> ZIP=<zip or folder> [PATTERN=canvas|moodle|plain|REGEX]"
	@echo "make export    grading/lms_grades.csv and per-student feedback zips for the LMS"
	@echo "make check-lab check with nbgrader that every lab grades as intended (LAB=name: one lab)"
	@echo "make bench     print the benchmark tables"

$(BIN)/python: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(BIN)/python

venv: $(BIN)/python

book: venv
	LABKIT_PROGRESS=0 $(BIN)/jupyter-book build . -W -n --keep-going

# The system parts the tests need (bubblewrap, util-linux, python3-seccomp, postgresql, chromium):
# installed when missing where that is possible (Debian/Ubuntu, root or sudo), else a message.
system-deps:
	@bash tools/system-deps.sh

test: venv system-deps
	LABKIT_PROGRESS=0 $(BIN)/python -m pytest -ra

test-fast: venv
	LABKIT_PROGRESS=0 $(BIN)/python -m pytest -ra -m "not slow"

lab: venv
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" $(if $(filter 0,$(shell id -u)),--allow-root,)

release: venv
	@for lab in $(LABS); do \
	  echo "generating labs/$$lab"; \
	  $(BIN)/nbgrader generate_assignment "$$lab" --force --log-level=WARN || exit 1; \
	done

# The student edition: released labs, labkit with its graded regions stubbed, a student README.
# Includes the rendered book when `make book` has built it. UNLOCK="lab1_extraction ..." ships
# those labs' references whole (for a later lab, once their deadline has passed).
student: venv
	$(BIN)/mlsec-student --course "$(CURDIR)" $(if $(UNLOCK),--unlock $(UNLOCK),)

# WORKERS=N: a local Dask cluster of N workers (default: the cores); SCHEDULER=tcp://host:8786: an
# existing cluster; FORCE=1: grade unchanged submissions again; MLSEC_GRADEBOOK_URL: PostgreSQL.
grade: venv
	$(BIN)/mlsec-grade $(if $(filter off,$(SANDBOX)),--no-sandbox,) $(if $(WORKERS),--workers $(WORKERS),) \
	  $(if $(SCHEDULER),--scheduler $(SCHEDULER),) $(if $(FORCE),--force,)

# LMS: make collect LAB=lab1_extraction ZIP=download.zip [PATTERN=canvas|moodle|plain|REGEX] [FORCE=1]
collect: venv
	@test -n "$(LAB)" -a -n "$(ZIP)" || { echo "usage: make collect LAB=<lab> ZIP=<zip or folder> [PATTERN=...]"; exit 2; }
	$(BIN)/mlsec-collect "$(LAB)" "$(ZIP)" $(if $(PATTERN),--pattern '$(PATTERN)',) $(if $(FORCE),--force,)

# grading/lms_grades.csv and grading/lms_feedback/<student>.zip from the gradebook
export: venv
	$(BIN)/mlsec-export

# LAB=<name> checks one lab (a folder of solutions/); without it, every lab.
check-lab: venv
	$(BIN)/mlsec-check-lab $(LAB)

bench: venv
	LABKIT_PROGRESS=0 $(BIN)/python benchmarks/run_all.py

clean:
	rm -rf _build dist grading/autograded grading/feedback
