"""`pillars demo`: the page served on a free port for tiny real runs, used in headless Chromium (a Fashion-MNIST
test image classified, a prompt continued, a text file refused as an image, no request leaving 127.0.0.1)
and through gradio_client (each endpoint, the text streamed, a sentence translated as the Python API does)."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from importlib.util import find_spec

import pytest

from tests.conftest import ROOT, headless_chromium, in_process, needs_chromium

if find_spec("gradio") is None or find_spec("gradio_client") is None:   # found, not imported: the server imports it
    pytest.skip("the demo extra: pip install 'dl-pillars[demo]' (and gradio_client, in the test extra)",
                allow_module_level=True)

LM = {"max_steps": 4, "context": 32, "batch_size": 8, "eval_batch_size": 64, "eval_batches": 1, "ngram": False,
      "precision": "32"}
TRAINED = {   # tiny runs of each kind that has a tab here, on their real data; adding-problem has no tab
    "fashion-cnn": {"width": 4, "hidden": 16, "train_samples": 512, "max_steps": 4, "eval_batches": 1,
                    "eval_batch_size": 500},
    "sotu-char-lstm": {**LM, "embed": 16, "hidden": 16, "layers": 1},
    "adding-problem": {"max_steps": 2, "eval_batches": 1, "hidden": 8, "test_sequences": 100},
    "bible-translate": {"model": "lstm", "width": 32, "encoder_layers": 1, "decoder_layers": 1, "vocab_size": 100,
                        "max_tokens": 16, "batch_size": 16, "max_steps": 4, "eval_batches": 1,
                        "eval_batch_size": 64, "precision": "32"},   # on digit words (data= set in `served`)
}
PROMPT = "The Congress"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The demo of the tiny runs, served by `pillars demo` in its own process: (address, folder of the runs)."""
    import pillars
    base = tmp_path_factory.mktemp("demo")
    from tests.test_translation import digits_tsv
    pairs = digits_tsv(base / "pairs.tsv", 400)
    for task, keys in TRAINED.items():
        pillars.fit(task, out=base / task, **keys, **({"data": str(pairs)} if task == "bible-translate" else {}))
    port = free_port()
    log = open(base / "server.log", "w")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "pillars", "demo", *(str(base / t) for t in TRAINED), "--port", str(port),
               "--max-upload", "1"]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    address = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                urllib.request.urlopen(address, timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the demo did not start:\n{(base / 'server.log').read_text()[-3000:]}")
                time.sleep(0.2)
        yield address, base
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    assert "Traceback" not in (base / "server.log").read_text()


@pytest.fixture(scope="module")
def test_image(served, fashion):
    """The first Fashion-MNIST test image as a PNG file, and the class the run's Python API gives it."""
    from PIL import Image

    import pillars
    _, base = served
    pixels = fashion["test_x"][0]
    path = base / "test-image.png"
    Image.fromarray(pixels).save(path)
    return path, next(iter(pillars.load(base / "fashion-cnn").predict(pixels)))


def test_cli_refuses_a_missing_folder_and_finds_runs(tmp_path):
    from pillars import demo
    from pillars.config import ConfigError
    with pytest.raises(ConfigError, match="is not a folder"):
        demo.serve([tmp_path / "nothing"])
    r = in_process(["demo", str(tmp_path), "--port", "99999"])
    assert r.returncode == 2 and "--port must be between 1 and 65535, not 99999" in r.stderr
    (tmp_path / "runs" / "a" / "checkpoints" / "step-1").mkdir(parents=True)
    for p in ("runs/a/config.toml", "runs/a/checkpoints/step-1/config.toml", "runs/tour/cnn/config.toml"):
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p).write_text("")
    assert demo.found_runs(tmp_path / "runs") == [tmp_path / "runs/a", tmp_path / "runs/tour/cnn"]


def test_without_gradio_the_command_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)   # `import gradio` then fails, as where it is not installed
    result = in_process(["demo"])
    assert result.returncode == 2 and "pip install 'dl-pillars[demo]'" in result.stderr, result.stderr


def test_every_endpoint_answers_through_gradio_client(served, test_image, tmp_path):
    import httpx
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    from PIL import Image

    import pillars
    address, base = served
    image, expected = test_image
    client = Client(address, verbose=False)
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == {
        "/classify", "/classify_drawing", "/generate", "/translate"}
    label, cam = client.predict(handle_file(str(image)), api_name="/classify")
    assert label["label"] == expected and len(label["confidences"]) == 5
    assert Image.open(cam).size == (224, 224)
    drawing = tmp_path / "drawing.png"   # a dark stroke on a transparent sketchpad
    Image.new("RGBA", (64, 64)).save(drawing)
    stroke = Image.open(drawing)
    stroke.paste((0, 0, 0, 255), (20, 10, 44, 54))
    stroke.save(drawing)
    label, _ = client.predict({"background": None, "layers": [], "composite": handle_file(str(drawing))},
                              api_name="/classify_drawing")
    assert label["label"] in json.loads((base / "fashion-cnn" / "inputs.json").read_text())["classes"]
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    with pytest.raises(AppError, match="notes.txt is not a readable image .* Give a PNG or JPEG file"):
        client.predict(handle_file(str(text)), api_name="/classify")
    big = tmp_path / "big.png"   # over the 1 MB the server takes (--max-upload 1)
    big.write_bytes(image.read_bytes() + bytes(2**20))
    with pytest.raises(ValueError, match=f"exceeds the maximum file size of {2**20} bytes"):   # the page says so
        client.predict(handle_file(str(big)), api_name="/classify")
    refused = httpx.post(client.upload_url, files=[("files", ("big.png", big.read_bytes()))])   # and the server
    assert refused.status_code == 413
    job = client.submit(PROMPT, 40, 0.8, 0, api_name="/generate")
    final = job.result()
    steps = job.outputs()
    assert len(steps) == 3 and steps[-1] == final   # 40 characters, 16 at a time: streamed in three parts
    assert [len(s) for s in steps] == [len(PROMPT) + n for n in (16, 32, 40)]
    assert all(later.startswith(earlier) for earlier, later in zip(steps, steps[1:]))
    assert final == pillars.load(base / "sotu-char-lstm").generate(PROMPT, 40, 0.8, seed=0)   # one call's draws
    sentence = "uno dos tres"
    translated = client.predict(sentence, 2, api_name="/translate")
    assert isinstance(translated, str) and translated == pillars.load(base / "bible-translate").translate(sentence, 2)


@needs_chromium
def test_the_page_in_headless_chromium(served, test_image, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    address, base = served
    image, expected = test_image
    driver = headless_chromium(("browser", "performance"))
    wait = WebDriverWait(driver, 30)

    def tab(name: str) -> None:
        button = next(b for b in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text == name)
        button.click()
        driver.save_screenshot(str(tmp_path / f"tab-{name}.png"))

    def upload(path) -> None:
        driver.find_element(By.CSS_SELECTOR, "#photo input[type=file]").send_keys(str(path))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"#photo td.filename[aria-label='{path.name}']"))
        driver.find_element(By.ID, "classify-photo").click()

    try:
        driver.get(address)
        wait.until(lambda d: d.find_elements(By.ID, "photo"))
        tab("fashion-cnn")
        upload(image)
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#classes h2").text == expected)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#gradcam img"))
        driver.save_screenshot(str(tmp_path / "tab-fashion-cnn-classified.png"))
        driver.find_element(By.CSS_SELECTOR, "#photo button[aria-label='Clear']").click()
        text = tmp_path / "notes.txt"
        text.write_text("not an image\n")
        upload(text)
        wait.until(lambda d: "notes.txt is not a readable image" in d.find_element(By.TAG_NAME, "body").text)
        driver.save_screenshot(str(tmp_path / "tab-fashion-cnn-bad-upload.png"))
        tab("sotu-char-lstm")
        driver.find_element(By.ID, "continue").click()
        written = lambda d: d.find_element(By.CSS_SELECTOR, "#continuation textarea").get_attribute("value")
        wait.until(lambda d: len(written(d)) == len(PROMPT) + 300)
        assert written(driver).startswith(PROMPT)
        driver.save_screenshot(str(tmp_path / "tab-sotu-char-lstm-written.png"))
        tab("adding-problem")
        assert "the demo has no tab for this kind of run" in driver.find_element(By.TAG_NAME, "body").text
        requests = [json.loads(e["message"])["message"] for e in driver.get_log("performance")]
    finally:
        driver.quit()
    urls = {m["params"]["request"]["url"] for m in requests if m["method"] == "Network.requestWillBeSent"}
    outside = sorted(u for u in urls if not u.startswith((address, "data:", "blob:")))
    assert len(urls) > 10 and not outside, f"requests that left 127.0.0.1: {outside}"
    for name in ("fashion-cnn", "sotu-char-lstm", "adding-problem"):
        assert (tmp_path / f"tab-{name}.png").stat().st_size > 10_000
