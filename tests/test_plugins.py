"""Tasks from outside the package: a user's Python file ($PILLARS_TASKS or --tasks) and an installed
package's entry point (group `pillars.tasks`) register tasks that train like the built-in ones."""
import json
import shutil

from tests.conftest import ROOT, pillars, sets

EXAMPLE = ROOT / "examples" / "digits_mlp.py"
SHORT = sets("max_steps=40", "eval_every=20", "log_every=10")


def check_run(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == "digits-mlp" and summary["status"] == "finished"
    assert summary["final"]["accuracy"] > 0.5 and summary["valid"]["accuracy"] > 0.5   # 10 classes: chance is 0.1
    splits = [json.loads(line)["split"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert splits.count("test") == 1 and splits[-1] == "test" and splits.count("valid") == 2


def test_a_task_file_named_in_the_environment_trains(tmp_path):
    env = {"PILLARS_TASKS": str(EXAMPLE)}
    listed = pillars("list", env=env).stdout
    assert "digits-mlp" in listed
    pillars("train", "digits-mlp", *SHORT, "--out", str(tmp_path / "run"), "--no-progress", env=env)
    check_run(tmp_path / "run")
    result = json.loads(pillars("evaluate", str(tmp_path / "run"), env=env).stdout)
    assert abs(result["accuracy"] - json.loads((tmp_path / "run" / "summary.json").read_text())["final"]["accuracy"]) < 1e-9


def test_a_task_file_named_on_the_command_line_trains(tmp_path):
    pillars("--tasks", str(EXAMPLE), "train", "digits-mlp", *SHORT, "--out", str(tmp_path / "run"), "--no-progress")
    check_run(tmp_path / "run")


def test_an_installed_package_registers_tasks_through_its_entry_point(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(EXAMPLE, site / "my_pillars_tasks.py")
    info = site / "my_pillars_tasks-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-pillars-tasks\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[pillars.tasks]\ndigits = my_pillars_tasks\n")
    env = {"PYTHONPATH": f"{site}:{ROOT}"}
    assert "digits-mlp" in json.dumps(json.loads(pillars("list", "--json", env=env).stdout))
    pillars("train", "digits-mlp", *SHORT, "--out", str(tmp_path / "run"), "--no-progress", env=env)
    check_run(tmp_path / "run")


def test_a_broken_task_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import does_not_exist\n")
    result = pillars("list", env={"PILLARS_TASKS": str(bad)}, check=False)
    assert result.returncode == 2 and "bad.py failed to load" in result.stderr and "Traceback" not in result.stderr
    missing = pillars("list", env={"PILLARS_TASKS": str(tmp_path / "nope.py")}, check=False)
    assert missing.returncode == 2 and "nope.py does not exist" in missing.stderr
