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
