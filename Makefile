# Everyday commands. `make` (or `make help`) lists them; each target's `## ` comment is
# its line in that list. Every command runs in the project's uv environment.

.DEFAULT_GOAL := help
.PHONY: help install hooks demo test test-fast lint format serve mlflow-ui bento clean-data

# The self-hosted product keeps usage data local: MLflow's telemetry off for the UI too.
export MLFLOW_DISABLE_TELEMETRY := true
MLFLOW_PORT ?= 5000

help: ## List the everyday commands (this list)
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-11s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## Install the locked environment (uv sync --frozen)
	uv sync --frozen

hooks: ## Run the CI checks before every git commit (pre-commit install)
	uv run pre-commit install

demo: ## The main job on synthetic data, then serve on :3000 (Ctrl-C stops)
	uv run leadscore demo

test: ## The whole suite, as CI runs it, on three workers (needs Redis and PostgreSQL; see README)
	uv run pytest

test-fast: ## Daily tier: everything but the integration tests (about 2 minutes on two cores)
	uv run pytest -m "not integration"

lint: ## The CI checks: import layers, ruff format --check, ruff check, mypy
	uv run lint-imports
	uv run ruff format --check .
	uv run ruff check .
	uv run mypy

format: ## Apply ruff format and ruff's safe fixes
	uv run ruff format .
	uv run ruff check --fix .

serve: ## Serve the packaged champion on :3000 (after `make demo` or `leadscore package`)
	uv run leadscore serve --port 3000

# Runs and registry in mlruns/mlflow.db; the experiments keep their artifacts under
# mlruns/artifacts/ (recorded per experiment; the root is only for ones made in the UI).
mlflow-ui: ## MLflow UI on the project's store at http://127.0.0.1:5000 (MLFLOW_PORT=...)
	uv run mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db \
		--default-artifact-root $(CURDIR)/mlruns/artifacts --port $(MLFLOW_PORT) --workers 1

bento: ## Package the champion and build a deployable Bento (leadscore package --build)
	uv run leadscore package --build

clean-data: ## Delete generated data: Feast data, MLflow store, BentoML home (the code stays)
	rm -rf features/data bentoml_home mlflow.db
	find mlruns -mindepth 1 -maxdepth 1 ! -name .gitkeep -exec rm -rf {} +
