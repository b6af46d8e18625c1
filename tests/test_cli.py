"""The command line as scripts see it: plain, uncut output in a pipe, JSON on request, clear errors; and the
run lifecycle behind `pillars train` (new run, --resume, evaluate) on a tiny run."""
import json

import pytest

from tests.conftest import TINY, pillars, sets


def test_list_in_a_pipe_is_plain_and_uncut():
    from pillars import tasks
    lines = pillars("list").stdout.splitlines()   # captured: stdout is not a terminal
    assert lines[0].split("\t") == ["task", "dataset", "model", "metric", "description"]
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    assert "fashion-resnet" in rows and set(rows) == set(tasks.all_tasks())
    for name, task in tasks.all_tasks().items():   # whole values, however long: nothing cut to a width
        assert rows[name] == [name, task.dataset, task.model, task.metric, task.description]
    assert "…" not in "\n".join(lines) and "─" not in "\n".join(lines)


def test_list_and_data_list_print_json_for_scripts():
    from pillars import data, tasks, train
    listed = json.loads(pillars("list", "--json").stdout)
    assert [t["name"] for t in listed] == list(tasks.all_tasks())
    assert {"name", "dataset", "model", "metric", "description", "higher_is_better"} <= set(listed[0])
    keys = json.loads(pillars("list", "--keys", "fashion-cnn", "--json").stdout)
    assert keys == train.default_config(tasks.get("fashion-cnn"))
    datasets = json.loads(pillars("data", "list", "--json").stdout)
    assert [d["name"] for d in datasets] == list(data.REGISTRY)
    assert all(isinstance(d["cached"], bool) and isinstance(d["cached_bytes"], int) for d in datasets)
    plain = pillars("data", "list")
    assert plain.stdout.splitlines()[0].split("\t")[0] == "name" and "cache:" in plain.stderr


@pytest.mark.parametrize("argv, says", [
    (["train", "fashion-cn"], "Did you mean 'fashion-cnn'"),
    (["list", "--keys", "fashion-cn"], "Did you mean 'fashion-cnn'"),
    (["experiment", "long-lags"], "Did you mean 'long-lag'"),
    (["experiment", "long-lag", "--lags", "25,x"], "--lags takes whole numbers"),
    (["data", "info", "fashion-mnits"], "Did you mean 'fashion-mnist'"),
    (["evaluate", "."], "not a run folder"),
    (["--tasks", "no-such-file.py", "list"], "no-such-file.py does not exist"),
    (["train", "fashion-cnn", "--device", "tpu"], "invalid choice: 'tpu'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_a_bad_value_is_a_clear_error(argv, says):
    r = pillars(*argv, check=False)
    assert r.returncode == 2, r.stderr
    assert says in r.stderr.replace("\n", " ") and "Traceback" not in r.stderr


def test_train_resume_and_evaluate_go_through_the_run_lifecycle(tmp_path, fashion):
    run = tmp_path / "run"
    pillars("train", "fashion-cnn", "--out", str(run), "--no-progress", *sets(*TINY, "max_steps=2"))
    clash = pillars("train", "--resume", str(run), "--out", str(tmp_path / "other"), check=False)
    assert clash.returncode == 2 and "takes no --out" in clash.stderr
    longer = pillars("train", "--resume", str(run), "--max-steps", "3", "--no-progress")
    assert "no longer an exact continuation" in longer.stderr.replace("\n", " ")
    assert json.loads((run / "summary.json").read_text())["steps"] == 3
    valid = json.loads(pillars("evaluate", str(run), "--device", "cpu", "--split", "valid").stdout)
    assert 0 <= valid["accuracy"] <= 1 and "loss" in valid
    # what a family cannot do is said by the family, without a traceback
    sample = pillars("sample", str(run), check=False)
    assert sample.returncode == 2 and "sample takes runs of language models and GANs" in sample.stderr
    translate = pillars("translate", str(run), "hola", check=False)
    assert translate.returncode == 2 and "translate takes runs of bible-translate" in translate.stderr
