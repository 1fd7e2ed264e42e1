"""The README's tour must run as written."""
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(capsys):
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "the README has no python block"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})
    assert "largest equivariance error" in capsys.readouterr().out


def test_readme_names_the_two_setup_commands():
    text = README.read_text()
    assert "bash scripts/quickstart.sh" in text and "bash scripts/test.sh" in text
    for script in ("scripts/quickstart.sh", "scripts/test.sh"):
        assert (README.parent / script).is_file()


def test_readme_cli_commands_name_real_configs_and_subcommands():
    from gdl_pyg.lightning.cli import list_configs
    text = README.read_text()
    lines = [line.split("#")[0].split() for line in text.splitlines()
             if line.startswith("gdl-pyg ")]
    assert len(lines) >= 5
    for words in lines:
        assert words[1] in {"fit", "validate", "test", "predict", "configs", "--version"}, words
        if "--config" in words:
            assert words[words.index("--config") + 1] in list_configs(), words
        if "--ckpt_path" in words:
            assert words[words.index("--ckpt_path") + 1] in {"best", "last"}, words
