"""The ``captum-semiring`` command line, run in-process through ``main``.

The default model is trained once on first use (~15 s) and cached in the user cache
(``~/.cache/captum-semiring``), which these tests share with real use.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import textwrap
from pathlib import Path

import pytest

from captum_semiring import cli
from captum_semiring.analysis.explain import DEMO_TOKENS
from captum_semiring.cli import main


def _minilm() -> str:
    pytest.importorskip("all_minilm_l6_v2")
    from captum_semiring.reproductions.tasks import minilm_dir

    return str(minilm_dir())


def _one_line_error(capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    err = capsys.readouterr().err
    # warnings (--allow-random-head's) may precede the error line
    lines = [
        line for line in err.splitlines() if line.strip() and ": warning: " not in line
    ]
    assert len(lines) == 1, err
    assert lines[0].startswith("captum-semiring: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_explain_default_demo_writes_a_self_contained_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert main(["explain", "--out", str(out), "--ig-steps", "8", "--debug"]) == 0
    stdout = capsys.readouterr().out
    assert f"report:  {(out / 'report.html').resolve()}" in stdout
    assert "path 1 [TopK(3), ranked by |g|] (" in stdout
    assert "bert.encoder.layer.0" in stdout and "entropy / log #paths" in stdout

    html = (out / "report.html").read_text()
    images = re.findall(
        r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html
    )
    assert len(images) == 10  # per input: per-token scores and branch flow
    assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    assert not re.search(r'(src|href)="(https?:|file:|/)', html)  # nothing external

    summary = _summary(out)
    assert {
        "tool",
        "version",
        "model",
        "layer",
        "encoder_layers",
        "semirings",
        "inputs",
        "files",
    } <= set(summary)
    assert summary["layer"] == "bert.embeddings"
    assert (
        summary["model"]["kind"] == "default"
        and summary["model"]["val_accuracy"] == 1.0
    )
    assert len(summary["inputs"]) == len(DEMO_TOKENS)
    for item in summary["inputs"]:
        assert {
            "tokens",
            "target",
            "output",
            "prediction",
            "label",
            "top_path_per_token",
            "entropy_per_token",
            "top_paths",
            "branch_flow",
            "integrated_gradients",
            "plots",
        } <= set(item)
        assert item["prediction"] == item["label"] == item["target"]["class"]
        assert len(item["top_path_per_token"]) == len(item["entropy_per_token"]) == 10
        assert all(e >= 0 for e in item["entropy_per_token"])
        assert 1 <= len(item["top_paths"]) <= 3
        path = item["top_paths"][0]
        assert path["modules"][-1] == "" and "classifier" in path["modules"]
        [flow] = item["branch_flow"]
        assert flow["name"] == "bert.encoder.layer.0"
        assert (
            set(flow["top_branch"])
            == set(flow["branch_max"])
            == {"skip", "query", "key", "value"}
        )
        # the top-branch aggregation puts each token's top path into exactly one branch
        for t in range(10):
            assert (
                sum(1 for b in flow["top_branch"] if flow["top_branch"][b][t] != 0) <= 1
            )
        ig = item["integrated_gradients"]
        assert len(ig["per_token"]) == 10 and -1 <= ig["spearman"] <= 1
        for name in item["plots"].values():
            assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert sorted(summary["files"]["plots"]) == sorted(
        p.name for p in out.glob("*.png")
    )


def test_explain_tokens_with_a_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r"
    rc = main(
        [
            "explain",
            "--tokens",
            "4 9 2 4 7 1 3 8 5 6",
            "--tokens",
            "1,2,3",
            "--target",
            "0",
            "--top-k",
            "1",
            "--ig-steps",
            "0",
            "--out",
            str(out),
            "--debug",
        ]
    )
    assert rc == 0
    items = _summary(out)["inputs"]
    assert [i["label"] for i in items] == [1, 0]
    assert all(
        i["target"]["class"] == 0 and i["integrated_gradients"] is None for i in items
    )
    assert [len(i["top_paths"]) for i in items] == [1, 1]
    assert len(items[1]["tokens"]) == 3


BAD_DEFAULT_MODEL_INPUTS = [
    (["--hf-model", "{tmp}/no-such-dir"], "does not exist"),
    (["--hf-model", "{tmp}"], "no config.json"),
    (["--layer", "bert.no_such_layer"], "has no layer 'bert.no_such_layer'"),
    (["--tokens", "1 2 3 4 5 6 7 8 9 10 11"], "at most 10 positions"),
    (["--tokens", "1 2 99"], "outside the model's vocabulary"),
    (["--tokens", "one two"], "integer token ids"),
    (["--text", "hello world"], "use --tokens"),
    (["--tokens", "1 2 1", "--target", "7"], "out of range"),
    (["--target-pair", "are,is"], "needs a masked language model"),
    (["--model", "no_such_module_xyz:build"], "cannot import module"),
    (["--model", "nocolon"], "package.module:callable"),
    (["--top-k", "0"], "--top-k"),
    (["--no-such-option"], "unrecognized arguments"),
    (["--target", "1", "--target-pair", "a,b"], "not allowed with"),
]


@pytest.mark.parametrize(
    "extra,message",
    BAD_DEFAULT_MODEL_INPUTS,
    ids=[m for _, m in BAD_DEFAULT_MODEL_INPUTS],
)
def test_bad_input_is_one_line_and_exit_code_2(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["explain", "--out", str(tmp_path / "out")] + [
        a.format(tmp=tmp_path) for a in extra
    ]
    assert main(argv) == 2
    _one_line_error(capsys, message)
    assert not (tmp_path / "out" / "report.html").exists()


def test_unknown_reproduction(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["reproduce", "no-such-figure", "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "unknown reproduction 'no-such-figure'; available: ")


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "explain" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["--help"], ["explain", "--help"], ["reproduce", "--help"]]
)
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "usage: captum-semiring" in text
    if argv[0] != "reproduce":
        assert "examples:" in text and "captum-semiring explain --hf-model" in text
    if argv[0] == "explain":
        for option in (
            "--hf-model",
            "--model",
            "--text",
            "--tokens",
            "--target",
            "--target-pair",
            "--layer",
            "--out",
        ):
            assert option in text


def test_unexpected_errors_are_one_line_unless_debug(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("kaput\nsecond line")

    monkeypatch.setattr(cli, "explain_inputs", boom)
    argv = ["explain", "--tokens", "1 2 1", "--out", str(tmp_path)]
    assert main(argv) == 1
    _one_line_error(capsys, "unexpected RuntimeError: kaput", "--debug")
    with pytest.raises(RuntimeError, match="kaput"):
        main(argv + ["--debug"])


def test_module_callable_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tiny_cli_models.py").write_text(
        textwrap.dedent("""
        import torch
        from torch import nn

        class Bag(nn.Module):
            def __init__(self):
                super().__init__()
                torch.manual_seed(0)
                self.embed = nn.Embedding(12, 6)
                self.head = nn.Linear(6, 3)

            def forward(self, ids):
                return self.head(torch.tanh(self.embed(ids)).mean(1))

        def build():
            return Bag()
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    rc = main(
        [
            "explain",
            "--model",
            "tiny_cli_models:build",
            "--tokens",
            "1 5 7",
            "--target",
            "2",
            "--ig-steps",
            "8",
            "--out",
            str(out),
            "--debug",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    summary = _summary(out)
    assert summary["layer"] == "embed" and summary["encoder_layers"] == []
    [item] = summary["inputs"]
    assert (
        item["branch_flow"] == []
        and "no transformer layers" in item["branch_flow_note"]
    )
    assert len(item["top_path_per_token"]) == 3
    assert (
        main(
            [
                "explain",
                "--model",
                "tiny_cli_models:build",
                "--tokens",
                "1 5 12",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    _one_line_error(capsys, "token id 12")
    assert main(["explain", "--model", "tiny_cli_models:build", "--out", str(out)]) == 2
    _one_line_error(capsys, "--tokens")


def test_hf_model_directory_minilm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """MiniLM is a BertModel without a head: AutoModelForSequenceClassification adds a
    randomly initialized (seeded) classifier, which is fine for exercising the CLI."""
    directory = _minilm()
    out = tmp_path / "minilm"
    argv = [
        "explain",
        "--hf-model",
        directory,
        "--text",
        "a short test",
        "--top-k",
        "1",
        "--ig-steps",
        "4",
        "--out",
        str(out),
    ]
    # refused by default: the head is random, so the outputs are noise
    assert main(argv) == 2
    _one_line_error(capsys, "initialized randomly")
    assert not out.exists()
    assert main([*argv, "--allow-random-head", "--debug"]) == 0
    captured = capsys.readouterr()
    assert "randomly initialized weights" in captured.err  # the warning
    assert "Warning: this model has" in (out / "report.html").read_text()
    assert "Loading weights" not in captured.err
    summary = _summary(out)
    assert summary["layer"] == "bert.embeddings"
    assert len(summary["encoder_layers"]) == 6
    assert any("initialized randomly" in note for note in summary["model"]["notes"])
    [item] = summary["inputs"]
    assert item["tokens"] == ["[CLS]", "a", "short", "test", "[SEP]"]
    assert len(item["branch_flow"]) == 6
    assert (out / "report.html").exists()


def test_hf_model_bad_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _minilm()
    out = str(tmp_path / "out")
    # an MLM target pair with a word that is not one token of the vocabulary
    argv = [
        "explain",
        "--hf-model",
        directory,
        "--text",
        "the keys [MASK] here",
        "--target-pair",
        "qzxqzxqzx,is",
        "--out",
        out,
        "--allow-random-head",
    ]
    assert main(argv) == 2
    _one_line_error(capsys, "unknown target token 'qzxqzxqzx'")
    # a text longer than the 512 positions
    assert (
        main(
            ["explain", "--hf-model", directory, "--text", "word " * 600, "--out", out]
            + ["--allow-random-head"]
        )
        == 2
    )
    _one_line_error(capsys, "text 1 has 602 tokens", "at most 512 positions")
    # a layer the model does not have
    assert (
        main(
            [
                "explain",
                "--hf-model",
                directory,
                "--layer",
                "bert.encoder.layer.9",
                "--out",
                out,
            ]
        )
        == 2
    )
    _one_line_error(capsys, "has no layer 'bert.encoder.layer.9'")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--text", "  "], "--text got an empty text"),
        (
            ["--text", "[MASK] and [MASK]", "--target-pair", "is,are"],
            "has 2",
        ),
        (["--target-pair", "is"], "--target-pair takes 'correct,wrong'"),
    ],
)
def test_argument_checks_come_before_the_model_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    # The directory does not exist: an argument error must come first.
    argv = ["explain", "--hf-model", str(tmp_path / "none"), "--out", str(tmp_path)]
    assert main(argv + extra) == 2
    _one_line_error(capsys, message)


def test_explain_decompose_is_recorded_in_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "d"
    argv = ["explain", "--tokens", "3 7 12 5", "--ig-steps", "0", "--top-k", "1"]
    assert main([*argv, "--out", str(out), "--decompose", "softmax"]) == 0
    decomposed = _summary(out)
    assert decomposed["decompose"] == ["softmax"]
    assert main([*argv, "--out", str(tmp_path / "p")]) == 0
    plain = _summary(tmp_path / "p")
    assert plain["decompose"] == []
    # a finer graph has other paths: the top path values differ
    assert (
        decomposed["inputs"][0]["top_path_per_token"]
        != plain["inputs"][0]["top_path_per_token"]
    )


def test_explain_shows_its_bar_only_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["explain", "--tokens", "3 7 12 5", "--ig-steps", "0", "--top-k", "1"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    piped = capsys.readouterr()
    assert "explaining" not in piped.err and "1/1" not in piped.err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    tty = capsys.readouterr()
    assert "explaining" in tty.err and "1/1" in tty.err
    assert "explaining" not in tty.out  # the bar stays off the results


def test_reproduce_fig4_refuses_a_random_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["reproduce", "fig4", "--hf-model", _minilm(), "--out", str(tmp_path)]
    assert main([*argv, "--max-sentences", "4"]) == 2
    _one_line_error(capsys, "initialized randomly", "--allow-random-head")


def test_console_script_entry_point() -> None:
    import configparser

    config = configparser.ConfigParser()
    config.read(Path(__file__).resolve().parent.parent / "setup.cfg")
    assert (
        "captum-semiring = captum_semiring.cli:main"
        in config["options.entry_points"]["console_scripts"]
    )
    assert sys.modules["captum_semiring.cli"].main is main
