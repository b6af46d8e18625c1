"""Nothing silent at the command line's front end: every subcommand given a bad flag, file or run folder ends
with status 2 and a message that names it (never a traceback), what a run folder holds is checked where it is
loaded (weights, tokenizer.json, config.toml, summary.json), and what is changed on the way is said: prompt
characters outside the vocabulary, a sentence cut to max_tokens, config.toml edited before a --resume."""
import shutil
from pathlib import Path

import pytest
import safetensors.torch
import torch
import torch.nn as nn

from pillars import runs
from pillars.data.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer
from pillars.weights import WeightsError, load_weights, save_weights
from tests.conftest import pillars, sets

TEXT = "the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.\n" * 60
ES = "cero uno dos tres cuatro cinco seis siete ocho nueve".split()
EN = "zero one two three four five six seven eight nine".split()


@pytest.fixture(scope="module")
def cnn(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("cnn") / "run"
    pillars("train", "digits-cnn", "--max-steps", "2", "--out", str(run), "--no-progress")
    return run


@pytest.fixture(scope="module")
def lm(tmp_path_factory) -> Path:
    """A character LSTM on a text file of its own (the text-file task): it saves tokenizer.json."""
    folder = tmp_path_factory.mktemp("lm")
    (folder / "text.txt").write_text(TEXT)
    pillars("train", "text-file", "--out", str(folder / "run"), "--no-progress",
            *sets(f"data={folder / 'text.txt'}", "model=lstm", "embed=16", "hidden=16", "layers=1", "context=16",
                  "batch_size=8", "max_steps=2", "ngram=false", "precision=32"))
    return folder / "run"


@pytest.fixture(scope="module")
def tr(tmp_path_factory) -> Path:
    """A translation run on a small TSV of number words, whose sources are at most 8 tokens long."""
    folder = tmp_path_factory.mktemp("tr")
    lines = [" ".join(ES[(i * k) % 10] for k in range(1, 2 + i % 4)) + "\t" +
             " ".join(EN[(i * k) % 10] for k in range(1, 2 + i % 4)) for i in range(300)]
    (folder / "pairs.tsv").write_text("\n".join(lines) + "\n")
    pillars("train", "bible-translate", "--max-steps", "2", "--out", str(folder / "run"), "--no-progress",
            *sets(f"data={folder / 'pairs.tsv'}", "width=16", "heads=2", "encoder_layers=1", "decoder_layers=1",
                  "vocab_size=300", "max_tokens=8", "eval_batches=1", "precision=32"))
    return folder / "run"


def copy(run: Path, tmp_path: Path) -> Path:
    """A copy of a module's run, for a test that damages or edits it."""
    return Path(shutil.copytree(run, tmp_path / run.parent.name))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def one_line(r) -> str:
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    return r.stderr.replace("\n", " ")


# ----------------------------------------------------------------------------- what is changed on the way is said

def test_prompt_characters_outside_the_vocabulary_are_named_and_generation_goes_on(lm):
    r = pillars("sample", str(lm), "--prompt", "héllo ☃", "--length", "5", check=False)
    assert r.returncode == 0 and r.stdout.startswith("h\ufffdllo \ufffd"), r.stderr
    said = one_line(r)
    assert "the prompt's characters 'é', '☃' are not in the vocabulary" in said and "became <unk>" in said
    assert pillars("sample", str(lm), "--prompt", "hello", "--length", "5").stderr == ""


def test_each_tokenizer_names_what_it_does_not_know():
    assert CharTokenizer.train("abc").unknown("abxyx") == ["x", "y"]
    assert WordTokenizer.train("the cat sat on the mat", 10).unknown("The dog sat, the DOG ran") == ["dog", ",", "ran"]
    assert BPETokenizer.train(["abc abc"], 270).unknown("☃ xyz") == []   # byte-level: every string has tokens


def test_an_empty_sentence_is_refused_before_the_run_is_loaded(tr):
    r = pillars("translate", str(tr), "uno dos", "  ", check=False)
    assert r.returncode == 2 and "sentence 2 ('  ') is empty" in one_line(r)
    r = pillars("translate", str(tr), "", check=False)
    assert r.returncode == 2 and "sentence 1 ('') is empty" in one_line(r)


def test_a_sentence_longer_than_max_tokens_is_cut_with_a_note_naming_it(tr, tmp_path):
    long = " ".join(ES * 2)
    r = pillars("translate", str(tr), "uno dos", long, "--beam", "1", check=False)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2, r.stderr
    said = one_line(r)
    assert "sentence 2 has" in said and "more than the 8 the model reads (max_tokens" in said
    assert "sentence 1" not in said
    r = pillars("explain", str(copy(tr, tmp_path)), "--source", long, check=False)   # it writes into the run
    assert r.returncode == 0 and "--source has" in one_line(r) and "more than the 10 the model reads" in one_line(r)


def test_an_edit_of_config_toml_is_named_on_resume(cnn, tmp_path):
    assert (cnn / "checkpoints" / "config.toml").is_file()   # what the run trained with, kept with its checkpoints
    run = copy(cnn, tmp_path)
    edit(run / "config.toml", "lr = 0.003", "lr = 0.5")
    r = pillars("train", "--resume", str(run), "--no-progress", check=False)
    said = one_line(r)
    assert r.returncode == 0 and f"{run / 'config.toml'} was edited since the run trained (lr 0.003 -> 0.5)" in said
    assert "no longer an exact continuation" in said
    assert "was edited" not in pillars("train", "--resume", str(cnn), "--no-progress").stderr


@pytest.mark.parametrize("old, new, words", [
    ("lr = 0.003", "lr = = 0.003", "is not valid TOML"),
    ("lr = 0.003", "lr = 0.003\nlearning_rate = 0.1", "unknown key 'learning_rate'"),
    ("lr = 0.003", "lr = -1.0", "lr must be"),
    ("lr = 0.003", 'lr = "fast"', "lr takes a number"),
    ('task = "digits-cnn"', 'task = "digits-cnnn"', "unknown task 'digits-cnnn'"),
], ids=["toml", "unknown-key", "range", "type", "task"])
def test_a_broken_edit_of_config_toml_names_the_file_and_the_key(cnn, tmp_path, old, new, words):
    run = copy(cnn, tmp_path)
    edit(run / "config.toml", old, new)
    for argv in (["train", "--resume", str(run)], ["evaluate", str(run)]):
        r = pillars(*argv, check=False)
        said = one_line(r)
        assert r.returncode == 2 and str(run / "config.toml") in said and words in said, said


# ----------------------------------------------------------------------------- a run folder's files

def test_damaged_weights_name_the_file_and_the_checkpoint_to_copy_back(cnn, tmp_path):
    run = copy(cnn, tmp_path)
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    for argv in (["evaluate", str(run)], ["explain", str(run)], ["predict", str(run), str(weights)]):
        r = pillars(*argv, check=False)
        said = one_line(r)
        assert r.returncode == 2 and f"{weights} is damaged" in said, said
        assert f"cp {run / 'checkpoints' / 'step-00000002' / 'model.safetensors'} {weights}" in said


def test_weights_of_another_shape_name_the_first_tensor_that_differs(cnn, tmp_path):
    run = copy(cnn, tmp_path)
    tensors = safetensors.torch.load_file(str(run / "model.safetensors"))
    was = tuple(tensors["head.weight"].shape)
    tensors["head.weight"] = torch.zeros(3, 3)
    safetensors.torch.save_file(tensors, str(run / "model.safetensors"))
    r = pillars("evaluate", str(run), check=False)
    assert r.returncode == 2 and f"tensor head.weight is (3, 3) in the file, {was} in the model" in one_line(r)
    # the weights are whole, but config.toml was edited since: the message names the edit, not the file
    other = copy(cnn, tmp_path / "edited")
    edit(other / "config.toml", "width = 16", "width = 8")
    r = pillars("evaluate", str(other), check=False)
    assert r.returncode == 2 and "config.toml was edited since the run trained (width 16 -> 8)" in one_line(r)


def test_a_damaged_checkpoint_names_the_one_before_it(tmp_path):
    model = nn.Linear(3, 2)
    for step in (1, 2):
        (tmp_path / "checkpoints" / f"step-{step:08d}").mkdir(parents=True)
        save_weights(model, tmp_path / "checkpoints" / f"step-{step:08d}" / "model.safetensors")
    last = tmp_path / "checkpoints" / "step-00000002" / "model.safetensors"
    last.write_bytes(last.read_bytes()[:20])
    with pytest.raises(WeightsError, match="The checkpoint before it, step-00000001, is intact") as e:
        load_weights(model, last)
    assert e.value.damaged and e.value.path == last
    with pytest.raises(WeightsError, match=r"tensor weight is \(2, 3\) in the file, \(4, 3\) in the model") as e:
        load_weights(nn.Linear(3, 4), tmp_path / "checkpoints" / "step-00000001" / "model.safetensors")
    assert not e.value.damaged


def test_missing_or_damaged_run_files_name_themselves_and_the_fix(cnn, lm, tmp_path):
    run = copy(cnn, tmp_path / "a")
    (run / "config.toml").unlink()
    r = pillars("evaluate", str(run), check=False)
    assert r.returncode == 2 and f"cp {run / 'checkpoints' / 'config.toml'} {run / 'config.toml'}" in one_line(r)
    run = copy(cnn, tmp_path / "b")
    (run / "summary.json").write_text('{"status": "fini')
    r = pillars("evaluate", str(run), check=False)
    assert r.returncode == 2 and f"{run / 'summary.json'} is damaged" in one_line(r)
    (run / "summary.json").unlink()   # a run without its summary still loads: it is not needed
    assert pillars("evaluate", str(run), check=False).returncode == 0
    run = copy(lm, tmp_path / "c")
    (run / "tokenizer.json").write_text('{"kind": "char", "vocab": ["<u')
    r = pillars("sample", str(run), "--length", "3", check=False)
    assert r.returncode == 2 and f"{run / 'tokenizer.json'} is damaged" in one_line(r)


def test_sampling_needs_the_saved_vocabulary_not_the_training_text(lm, tmp_path):
    run = copy(lm, tmp_path)
    edit(run / "config.toml", str(lm.parent / "text.txt"), str(tmp_path / "moved-away.txt"))
    r = pillars("sample", str(run), "--prompt", "the", "--length", "5", check=False)
    assert r.returncode == 0 and r.stdout.startswith("the"), r.stderr
    assert "moved-away.txt, the text" in one_line(r) and "is no longer there" in one_line(r)
    r = pillars("evaluate", str(run), check=False)   # evaluating does need it
    assert r.returncode == 2 and "moved-away.txt: no such file" in one_line(r)


def test_the_validation_split_of_a_run_from_before_it_existed_is_refused(cnn, tmp_path):
    run = copy(cnn, tmp_path)
    edit(run / "config.toml", "valid_fraction = 0.1\n", "")
    r = pillars("evaluate", str(run), "--split", "valid", check=False)
    assert r.returncode == 2 and "no valid_fraction" in one_line(r) and "--split test" in one_line(r)


# ----------------------------------------------------------------------------- every subcommand, bad values

# (argv, words of the message): {cnn}, {lm} and {tr} are trained runs, {file} a text file, {dir} an empty
# folder, {missing} a path that does not exist
BAD = [
    ("data fetch nope", "nope"), ("data fetch", "--all"), ("data info nope", "nope"),
    ("data export nope {dir}/x.txt", "nope"), ("data export fashion-mnist {dir}/x.txt", "fashion-mnist"),
    ("data export sotu {dir}", "{dir} is a folder"), ("data list --bogus", "--bogus"),
    ("list --keys nope", "nope"),
    ("train nope", "nope"), ("train digits-cnn --epochs -1", "epochs"), ("train digits-cnn --lr nan", "lr"),
    ("train digits-cnn --batch-size 0", "batch_size"), ("train digits-cnn --precision 8", "--precision"),
    ("train digits-cnn --config {missing}", "{missing}"), ("train digits-cnn --config {dir}", "--config {dir}"),
    ("train digits-cnn --set lr", "--set"), ("train digits-cnn --set nope=1", "nope"),
    ("train digits-cnn --out {file}", "--out {file}"), ("train --resume {missing}", "{missing} does not exist"),
    ("train --resume {file}", "{file} is a file"), ("train --resume {cnn} --out {dir}", "--out"),
    ("evaluate {missing}", "{missing} does not exist"), ("evaluate {file}", "{file} is a file"),
    ("evaluate {dir}", "{dir} is not a run folder"), ("evaluate {cnn} --set nope=1", "nope"),
    ("evaluate {cnn} --split train", "--split"), ("evaluate {cnn} --set width=8", "width"),
    ("evaluate {tr} --set beam=0", "beam must be at least 1"),
    ("evaluate {cnn} --set lr=0.1", "lr acts only while a run trains"),
    ("train --resume {cnn} --max-steps 1", "has trained 2 steps, more than the 1 asked for"),
    ("sample {lm} --out {lm}/model.safetensors", "is a file of the run"),
    ("sample {lm} --out {lm}/checkpoints", "is a folder"),
    ("predict {missing} {file}", "{missing}"), ("predict {cnn} {missing}", "{missing}"),
    ("predict {cnn} {file}", "{file}"), ("predict {lm} {file}", "not a classifier: predict takes runs of image"),
    ("predict {cnn} {file} --top-k 0", "--top-k"),
    ("sample {lm} --temperature -1", "--temperature"), ("sample {lm} --temperature nan", "--temperature"),
    ("sample {lm} --top-k -1", "--top-k"), ("sample {lm} --top-p 2", "--top-p"), ("sample {lm} --length 0", "--length"),
    ("sample {lm} --n 0", "--n"), ("sample {lm} --class shoe", "--class"), ("sample {lm} --out {dir}/s.png", "--out"),
    ("sample {cnn}", "sample takes runs of language models"), ("sample {missing}", "{missing}"),
    ("translate {tr} --beam 0 uno", "--beam"), ("translate {cnn} hola", "translate takes runs"),
    ("translate {file} hola", "{file}"),
    ("explain {dir}", "{dir} is not a run folder"), ("explain {missing}", "{missing}"),
    ("explain {tr} --source _", "--source"),
    ("explain {cnn} --source hola", "--source is for translation runs"),
    ("tour --budget 0", "--budget"), ("tour --budget nan", "--budget"), ("tour --out {file}", "--out {file}"),
    ("experiment nope", "nope"), ("experiment long-lag --seeds 0", "--seeds"),
    ("experiment long-lag --lags a", "--lags"),
    ("experiment transfer-curve --labels x", "--labels"), ("experiment long-lag --set nope=1", "nope"),
    ("experiment long-lag --out {file}", "--out {file}"),
]


@pytest.mark.parametrize("argv, words", BAD, ids=[argv for argv, _ in BAD])
def test_every_subcommand_names_a_bad_value(argv, words, cnn, lm, tr, tmp_path):
    (tmp_path / "file.txt").write_text("not an image, not a run\n")
    (tmp_path / "dir").mkdir()
    where = {"cnn": cnn, "lm": lm, "tr": tr, "file": tmp_path / "file.txt", "dir": tmp_path / "dir",
             "missing": tmp_path / "missing"}
    args = [" " if a == "_" else a.format(**where) for a in argv.split()]
    r = pillars(*args, check=False)
    said = one_line(r)
    assert r.returncode == 2 and words.format(**where) in said, said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file.txt"] and not any((tmp_path / "dir").iterdir())


def test_sample_writes_into_a_new_folder_and_an_unfinished_run_says_it_uses_a_checkpoint(lm, tmp_path):
    r = pillars("sample", str(lm), "--length", "5", "--out", str(tmp_path / "new" / "folder" / "s.txt"))
    written = (tmp_path / "new" / "folder" / "s.txt").read_text()
    assert written.strip()
    again = pillars("sample", str(lm), "--length", "9", "--out", str(tmp_path / "new" / "folder" / "s.txt"),
                    check=False)
    assert again.returncode == 2 and "already exists: sample never replaces a file" in one_line(again)
    assert (tmp_path / "new" / "folder" / "s.txt").read_text() == written   # the user's file is kept
    run = copy(lm, tmp_path)
    (run / "model.safetensors").unlink()
    r = pillars("sample", str(run), "--length", "5")
    assert "has not finished" in one_line(r) and "step-00000002" in one_line(r)


def test_a_run_whose_checkpoints_were_removed_starts_over_keeping_its_earlier_log(cnn, tmp_path):
    run = copy(cnn, tmp_path)
    before = (run / "metrics.jsonl").read_text()
    shutil.rmtree(run / "checkpoints")
    r = pillars("train", "--resume", str(run), "--no-progress")
    assert "has no checkpoint to continue from" in one_line(r) and "metrics-earlier-1.jsonl" in one_line(r)
    assert (run / "metrics-earlier-1.jsonl").read_text() == before and runs.is_finished(run)


def test_a_signal_during_the_final_evaluation_keeps_the_checkpoint_and_says_how_to_finish(cnn, tmp_path,
                                                                                       monkeypatch):
    import signal

    from pillars.train import loop
    run = copy(cnn, tmp_path)
    (run / "summary.json").unlink()
    (run / "model.safetensors").unlink()
    evaluate = loop.evaluate

    def stopped_in_the_test_evaluation(t, split, whole=False):
        if split == "test":
            raise KeyboardInterrupt(signal.SIGTERM)   # what the handler raises for SIGTERM
        return evaluate(t, split, whole)

    monkeypatch.setattr(loop, "evaluate", stopped_in_the_test_evaluation)
    r = pillars("train", "--resume", str(run), "--no-progress", "--max-steps", "3", check=False)
    assert r.returncode == 143 and "stopped during the final evaluation" in one_line(r), r.stderr[-2000:]
    assert "pillars train --resume" in one_line(r) and (run / "checkpoints" / "step-00000003").is_dir()
    monkeypatch.undo()
    pillars("train", "--resume", str(run), "--no-progress", "--max-steps", "3")
    assert runs.is_finished(run)


def test_a_damaged_partial_or_reshaped_run_is_named_never_a_traceback(cnn, tmp_path):
    import json
    import wave

    from pillars.data.audio import read_wav
    from pillars.data.registry import InputFileError
    run = copy(cnn, tmp_path)
    (run / "summary.json").write_text('{"status": "fini')   # cut short: the last checkpoint is evaluated again
    r = pillars("train", "--resume", str(run), "--no-progress")
    assert "summary.json is damaged: evaluating step 2 again" in one_line(r)
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    r = pillars("train", "--resume", str(run), "--set", "width=8", check=False)
    assert r.returncode == 2 and "does not fit the model built with {'width': 8}" in one_line(r)
    assert "drop those keys" in one_line(r)
    edit(run / "config.toml", "width = 16", "width = 8")
    from PIL import Image
    Image.new("L", (8, 8)).save(tmp_path / "x.png")
    r = pillars("predict", str(run), str(tmp_path / "x.png"), check=False)
    assert r.returncode == 2 and "config.toml was edited since the run trained" in one_line(r)
    r = pillars("train", "--resume", str(run), "--max-steps", "3", check=False)   # the edit is the cause
    assert r.returncode == 2 and "config.toml was edited since the run trained (width 16 -> 8)" in one_line(r)
    edit(run / "config.toml", "width = 8", "width = 16")
    with (run / "metrics.jsonl").open("a") as f:   # killed while writing a line
        f.write('{"step": 3, "split": "tr')
    assert runs.read_metrics(run)[-1]["step"] == 2
    for name in ("model.safetensors", "summary.json", "checkpoints/step-00000002/model.safetensors"):
        (run / name).unlink()   # a partial copy of the run
    r = pillars("evaluate", str(run), check=False)
    assert r.returncode == 2 and "step-00000002/model.safetensors is missing" in one_line(r)
    r = pillars("demo", str(cnn), "--max-upload", "nan", check=False)
    assert r.returncode == 2 and "--max-upload must be a positive number" in one_line(r)
    with wave.open(str(tmp_path / "ok.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000), w.writeframes(bytes(1600))
    (tmp_path / "cut.wav").write_bytes((tmp_path / "ok.wav").read_bytes()[:30])   # the header cut short
    with pytest.raises(InputFileError, match="cut.wav is .*convert it to 16-bit PCM WAV"):
        read_wav(tmp_path / "cut.wav")


def test_a_folder_with_a_config_toml_of_its_own_is_not_taken_for_a_run(tmp_path):
    (tmp_path / "config.toml").write_text('title = "my project"\n')
    r = pillars("train", "digits-cnn", "--out", str(tmp_path), "--max-steps", "1", check=False)
    assert r.returncode == 2 and "holds a config.toml that is not a pillars run's" in one_line(r)
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]


def test_a_run_whose_data_has_moved_says_which_file_it_needs(tr, tmp_path):
    run = copy(tr, tmp_path)
    moved = tmp_path / "moved.tsv"
    shutil.copy(tr.parent / "pairs.tsv", moved)
    edit(run / "config.toml", str(tr.parent / "pairs.tsv"), str(tmp_path / "gone.tsv"))   # as if it had moved
    r = pillars("evaluate", str(run), check=False)
    assert r.returncode == 2 and f"was trained on data={tmp_path / 'gone.tsv'}, and the run is rebuilt" in one_line(r)
    assert pillars("evaluate", str(run), "--set", f"data={moved}").returncode == 0
    r = pillars("translate", str(run), "uno dos")   # the saved vocabulary is all translating needs
    assert "are no longer there: translating with the vocabulary the run saved" in one_line(r)
    assert r.stdout.strip() == pillars("translate", str(tr), "uno dos").stdout.strip()
