"""Local lm-eval tasks of the project (YAML + data), loaded through TaskManager(include_path=TASKS_DIR)."""
from pathlib import Path

TASKS_DIR = Path(__file__).parent
